//! Typed indices, one per index space, so a module handle, an absolute table slot and a
//! memory address can never be mixed up. Conversions between spaces live in `layout.rs`.

use core::fmt;

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
