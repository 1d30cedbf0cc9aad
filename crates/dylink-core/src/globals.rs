//! The constant globals a program has, by value: a `GOT.mem` entry, a `GOT.func` entry or a
//! base with the same type, mutability and value is one global, made once.
//!
//! Built like the symbol table ([`crate::symbols`]): the hash table holds only 4-byte
//! positions into a vector of globals that grows at the end. Most lookups while planning are
//! of values not seen before (each data address and function slot is asked for by its few
//! importers), so a probe reads only the index's control bytes and the new global is
//! appended. A hash map holding the 24-byte entries themselves was a 3 MB table for 1,000
//! modules, written at a random place per global: a tenth of planning them.

use core::fmt;
use core::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

use crate::index::GlobalId;
use crate::module::ValType;
use crate::prelude::*;

/// What makes two constant globals the same.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct ConstKey {
    pub(crate) value: u64,
    pub(crate) ty: ValType,
    pub(crate) mutable: bool,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    key: ConstKey,
    global: GlobalId,
}

/// Constant globals by [`ConstKey`], hashed by value alone (globals of one value and
/// another type or mutability are rare, and hashing the whole key cost more than they do).
#[derive(Clone, Default)]
pub(crate) struct ConstGlobals {
    /// Positions in `entries`, hashed by the entry's key.
    index: HashTable<u32>,
    entries: Vec<Entry>,
    hasher: DefaultHashBuilder,
}

impl ConstGlobals {
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The global made for `key`, if there is one.
    pub(crate) fn get(&self, key: &ConstKey) -> Option<GlobalId> {
        if self.entries.is_empty() {
            return None;
        }
        let entries = &self.entries;
        self.index
            .find(self.hasher.hash_one(key.value), |&i| {
                entries[i as usize].key == *key
            })
            .map(|&i| entries[i as usize].global)
    }

    /// The global made for `key`, or the one `make` makes, entered for it; one probe.
    pub(crate) fn get_or_insert_with(
        &mut self,
        key: ConstKey,
        make: impl FnOnce() -> GlobalId,
    ) -> GlobalId {
        if self.index.len() == self.index.capacity() {
            self.reserve(self.entries.len().max(16));
        }
        let hash = self.hasher.hash_one(key.value);
        let (entries, hasher) = (&self.entries, &self.hasher);
        match self.index.entry(
            hash,
            |&i| entries[i as usize].key == key,
            |&i| hasher.hash_one(entries[i as usize].key.value),
        ) {
            hashbrown::hash_table::Entry::Occupied(e) => self.entries[*e.get() as usize].global,
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(self.entries.len() as u32);
                let global = make();
                self.entries.push(Entry { key, global });
                global
            }
        }
    }

    /// Room for `additional` more globals without growing. Growing rebuilds the index from
    /// the entries in order rather than rehashing it bucket by bucket.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.entries.reserve(additional);
        let want = self.entries.len() + additional;
        if want > self.index.capacity() {
            let mut index = HashTable::with_capacity(want);
            let (entries, hasher) = (&self.entries, &self.hasher);
            for (i, e) in entries.iter().enumerate() {
                index.insert_unique(hasher.hash_one(e.key.value), i as u32, |&j| {
                    hasher.hash_one(entries[j as usize].key.value)
                });
            }
            self.index = index;
        }
    }

    /// Every global of `other` this table does not have (a key already here keeps its own).
    pub(crate) fn append(&mut self, other: Self) {
        if self.is_empty() {
            *self = other;
            return;
        }
        self.reserve(other.len());
        for e in other.entries {
            self.get_or_insert_with(e.key, || e.global);
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&ConstKey, GlobalId)> {
        self.entries.iter().map(|e| (&e.key, e.global))
    }
}

impl PartialEq for ConstGlobals {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(k, g)| other.get(k) == Some(g))
    }
}

impl fmt::Debug for ConstGlobals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(value: u64) -> ConstKey {
        ConstKey {
            value,
            ty: ValType::I32,
            mutable: false,
        }
    }

    #[test]
    fn a_value_is_made_once_and_found_after_growing() {
        let mut t = ConstGlobals::default();
        let mut made = 0;
        for round in 0..2 {
            for v in 0..1000u64 {
                let g = t.get_or_insert_with(key(v * 8), || {
                    made += 1;
                    GlobalId(v as u32)
                });
                assert_eq!(g, GlobalId(v as u32), "round {round}");
            }
        }
        assert_eq!(made, 1000);
        assert_eq!(t.get(&key(8 * 999)), Some(GlobalId(999)));
        assert_eq!(t.get(&key(1)), None);
        // Type and mutability tell globals of one value apart.
        let mutable = ConstKey {
            mutable: true,
            ..key(8)
        };
        let wide = ConstKey {
            ty: ValType::I64,
            ..key(8)
        };
        assert_eq!(
            t.get_or_insert_with(mutable, || GlobalId(5000)),
            GlobalId(5000)
        );
        assert_eq!(
            t.get_or_insert_with(wide, || GlobalId(5001)),
            GlobalId(5001)
        );
        assert_eq!(t.get(&key(8)), Some(GlobalId(1)));
    }

    #[test]
    fn appending_keeps_the_globals_already_there() {
        let mut base = ConstGlobals::default();
        base.get_or_insert_with(key(1), || GlobalId(1));
        let mut new = ConstGlobals::default();
        new.get_or_insert_with(key(1), || GlobalId(7));
        new.get_or_insert_with(key(2), || GlobalId(2));
        base.append(new);
        assert_eq!(base.len(), 2);
        assert_eq!(base.get(&key(1)), Some(GlobalId(1)));
        assert_eq!(base.get(&key(2)), Some(GlobalId(2)));
        let mut empty = ConstGlobals::default();
        empty.append(base.clone());
        assert_eq!(empty, base);
    }
}
