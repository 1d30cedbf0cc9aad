//! Typed indices, one per index space, so a module handle, an absolute table slot and a
//! memory address can never be mixed up. Conversions between spaces live in `layout.rs`.

use core::fmt;
use core::marker::PhantomData;

use crate::prelude::*;

/// An id type that counts up from zero: its raw index, and the id of an index.
pub trait Entity: Copy {
    /// The raw index.
    fn index(self) -> usize;
    /// The entity with raw index `i`.
    fn new(i: usize) -> Self;
}

macro_rules! entity {
    ($(#[$doc:meta])* $name:ident($repr:ty), $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub $repr);

        impl $name {
            /// The raw index.
            #[inline]
            pub const fn index(self) -> usize {
                self.0 as usize
            }
            /// The entity with raw index `i`.
            #[inline]
            pub const fn new(i: usize) -> Self {
                Self(i as $repr)
            }
        }

        impl Entity for $name {
            #[inline]
            fn index(self) -> usize {
                self.0 as usize
            }
            #[inline]
            fn new(i: usize) -> Self {
                Self(i as $repr)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self, f)
            }
        }
    };
}

entity!(
    /// A loaded module. Never reused: a handle to a closed module stays invalid.
    ModuleId(u32),
    "m"
);
entity!(
    /// A global the linker creates (stack pointer, memory/table bases, GOT entries). The same
    /// id names the corresponding global in every instance group.
    GlobalId(u32),
    "g"
);
entity!(
    /// A module the core generated (lazy-binding trampolines).
    GenId(u32),
    "gen"
);
entity!(
    /// An exception tag the linker creates (`__cpp_exception`, `__c_longjmp`).
    TagId(u32),
    "tag"
);
entity!(
    /// An instance group: one store with its own table, globals and instances, sharing the
    /// linear memory with every other group. A thread is a group.
    GroupId(u32),
    "grp"
);

/// An absolute slot in the shared function table: a C function pointer value.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot(pub u64);

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "slot {}", self.0)
    }
}
impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// An absolute address in the shared linear memory: a C data pointer value.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Addr(pub u64);

impl fmt::Debug for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}
impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Values by id, stored at the id's index: a lookup is a bounds check, no hashing. For ids
/// the core hands out counting up (modules, generated modules, globals, tags), which an
/// adapter keeps its engine handles by; a removed id's place stays empty (ids are never
/// reused).
pub struct IdMap<K, V> {
    slots: Vec<Option<V>>,
    len: usize,
    key: PhantomData<fn(K) -> K>,
}

impl<K, V> Default for IdMap<K, V> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            len: 0,
            key: PhantomData,
        }
    }
}

impl<K: Entity, V: fmt::Debug> fmt::Debug for IdMap<K, V>
where
    K: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Entity, V: Clone> Clone for IdMap<K, V> {
    fn clone(&self) -> Self {
        Self {
            slots: self.slots.clone(),
            len: self.len,
            key: PhantomData,
        }
    }
}

impl<K: Entity, V> IdMap<K, V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `id`.
    #[inline]
    pub fn get(&self, id: K) -> Option<&V> {
        self.slots.get(id.index())?.as_ref()
    }

    /// The value of `id`, to change.
    #[inline]
    pub fn get_mut(&mut self, id: K) -> Option<&mut V> {
        self.slots.get_mut(id.index())?.as_mut()
    }

    /// Whether `id` has a value.
    #[inline]
    pub fn contains_key(&self, id: K) -> bool {
        self.get(id).is_some()
    }

    /// Set the value of `id`, returning the one it had.
    pub fn insert(&mut self, id: K, value: V) -> Option<V> {
        let i = id.index();
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, || None);
        }
        let old = self.slots[i].replace(value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Take the value of `id` out.
    pub fn remove(&mut self, id: K) -> Option<V> {
        let old = self.slots.get_mut(id.index())?.take();
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// Keep only the values `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(K, &mut V) -> bool) {
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if let Some(v) = slot
                && !keep(K::new(i), v)
            {
                *slot = None;
                self.len -= 1;
            }
        }
    }

    /// How many ids have a value.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no id has a value.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The ids with values and their values, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (K, &V)> + '_ {
        (self.slots.iter().enumerate()).filter_map(|(i, v)| Some((K::new(i), v.as_ref()?)))
    }

    /// The values, in id order.
    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.slots.iter().filter_map(Option::as_ref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_map_keeps_values_by_id() {
        let mut m: IdMap<ModuleId, &str> = IdMap::new();
        assert!(m.is_empty());
        assert_eq!(m.insert(ModuleId(3), "c"), None);
        assert_eq!(m.insert(ModuleId(0), "a"), None);
        assert_eq!(m.insert(ModuleId(3), "C"), Some("c"));
        assert_eq!(m.len(), 2);
        assert_eq!(m.get(ModuleId(3)), Some(&"C"));
        assert_eq!(m.get(ModuleId(1)), None, "an id between two values");
        assert_eq!(m.get(ModuleId(99)), None, "an id past the end");
        assert_eq!(
            m.iter().collect::<Vec<_>>(),
            [(ModuleId(0), &"a"), (ModuleId(3), &"C")]
        );
        assert_eq!(m.remove(ModuleId(3)), Some("C"));
        assert_eq!(m.remove(ModuleId(3)), None, "removed twice");
        assert_eq!(m.remove(ModuleId(50)), None, "never inserted");
        assert_eq!(m.len(), 1);
        assert!(!m.contains_key(ModuleId(3)));
        *m.get_mut(ModuleId(0)).unwrap() = "A";
        assert_eq!(m.values().collect::<Vec<_>>(), [&"A"]);
        m.insert(ModuleId(7), "g");
        m.retain(|id, _| id != ModuleId(0));
        assert_eq!(m.iter().collect::<Vec<_>>(), [(ModuleId(7), &"g")]);
        assert_eq!(m.len(), 1);
    }
}
