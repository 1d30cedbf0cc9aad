//! The symbol table: definitions by name, each name's in the order they were entered.
//!
//! Its hash table holds only 4-byte positions into a vector of entries that grows at the
//! end. A program of 100,000 symbols then has a half-megabyte table that stays in a core's
//! cache while the entries are written one after another; with the name and definitions
//! stored in the table itself (48 bytes a bucket, 6 MB), entering each symbol was a cache
//! miss at a random place, a third of reading 1,000 modules' symbols.

use core::fmt;
use core::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};
use smallvec::SmallVec;

use crate::name::Name;
use crate::prelude::*;

/// Definitions (`V`) by name.
#[derive(Clone)]
pub(crate) struct SymbolTable<V> {
    /// Positions in `entries`, hashed by the entry's name with [`hasher`].
    index: HashTable<u32>,
    entries: Vec<Entry<V>>,
}

/// The one hasher of every symbol table in the process (its seed is random per process):
/// an entry's hash is valid in any table, so appending a plan's table to the linker's
/// hashes no name again.
fn hasher() -> &'static DefaultHashBuilder {
    static HASHER: spin::Once<DefaultHashBuilder> = spin::Once::new();
    HASHER.call_once(DefaultHashBuilder::default)
}

#[derive(Clone)]
struct Entry<V> {
    hash: u64,
    name: Name,
    defs: SmallVec<[V; 1]>,
}

impl<V> Default for SymbolTable<V> {
    fn default() -> Self {
        Self {
            index: HashTable::new(),
            entries: Vec::new(),
        }
    }
}

impl<V: Copy> SymbolTable<V> {
    /// Number of names.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn position(&self, hash: u64, name: &str) -> Option<usize> {
        let entries = &self.entries;
        self.index
            .find(hash, |&i| {
                let e = &entries[i as usize];
                e.hash == hash && *e.name == *name
            })
            .map(|&i| i as usize)
    }

    /// The definitions of `name`, oldest first.
    pub(crate) fn get(&self, name: &str) -> Option<&[V]> {
        if self.entries.is_empty() {
            return None;
        }
        let hash = hasher().hash_one(name);
        self.position(hash, name)
            .map(|i| self.entries[i].defs.as_slice())
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Room for `additional` more names without growing. Growing rebuilds the index from
    /// the entries in order (sequential reads) rather than rehashing it bucket by bucket.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.entries.reserve(additional);
        let want = self.entries.len() + additional;
        if want > self.index.capacity() {
            let mut index = HashTable::with_capacity(want);
            let entries = &self.entries;
            for (i, e) in entries.iter().enumerate() {
                index.insert_unique(e.hash, i as u32, |&j| entries[j as usize].hash);
            }
            self.index = index;
        }
    }

    /// Add `def` after the definitions `name` has.
    pub(crate) fn push(&mut self, name: &Name, def: V) {
        let hash = hasher().hash_one(&**name);
        if self.index.len() == self.index.capacity() {
            self.reserve(self.entries.len().max(16));
        }
        // One probe finds the name or the place for it (`reserve` above left room, so the
        // index does not rehash here).
        let entries = &self.entries;
        let at = self.index.entry(
            hash,
            |&i| {
                let e = &entries[i as usize];
                e.hash == hash && *e.name == **name
            },
            |&j| entries[j as usize].hash,
        );
        match at {
            hashbrown::hash_table::Entry::Occupied(e) => {
                let i = *e.get() as usize;
                self.entries[i].defs.push(def);
            }
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(self.entries.len() as u32);
                self.entries.push(Entry {
                    hash,
                    name: name.clone(),
                    defs: SmallVec::from_buf([def]),
                });
            }
        }
    }

    /// Every definition of `other` after this table's, name by name, in `other`'s order.
    pub(crate) fn append(&mut self, other: Self) {
        if self.is_empty() {
            *self = other;
            return;
        }
        self.reserve(other.len());
        for e in other.entries {
            match self.position(e.hash, &e.name) {
                Some(i) => self.entries[i].defs.extend(e.defs),
                None => {
                    let i = self.entries.len() as u32;
                    self.entries.push(e);
                    let entries = &self.entries;
                    self.index
                        .insert_unique(entries[i as usize].hash, i, |&j| entries[j as usize].hash);
                }
            }
        }
    }

    /// Keep only the definitions of `name` that `keep` accepts; a name left with none
    /// leaves the table.
    pub(crate) fn retain(&mut self, name: &str, keep: impl Fn(&V) -> bool) {
        let hash = hasher().hash_one(name);
        let Some(i) = self.position(hash, name) else {
            return;
        };
        self.entries[i].defs.retain(|d| keep(d));
        if !self.entries[i].defs.is_empty() {
            return;
        }
        // Swap the last entry into the hole and repoint its index slot.
        let last = self.entries.len() - 1;
        if let Ok(slot) = self.index.find_entry(hash, |&j| j as usize == i) {
            slot.remove();
        }
        if i != last {
            let moved = self.entries[last].hash;
            if let Some(slot) = self.index.find_mut(moved, |&j| j as usize == last) {
                *slot = i as u32;
            }
        }
        self.entries.swap_remove(i);
    }

    /// Every name with its definitions, in the order the names were first entered (until a
    /// removal moves the last one into its place).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Name, &[V])> {
        self.entries.iter().map(|e| (&e.name, e.defs.as_slice()))
    }
}

impl<V: Copy + PartialEq> PartialEq for SymbolTable<V> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(n, d)| other.get(n) == Some(d))
    }
}

impl<V: Copy + fmt::Debug> fmt::Debug for SymbolTable<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(n, d)| (&**n, d)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::from(s)
    }

    #[test]
    fn definitions_keep_their_order_per_name() {
        let mut t = SymbolTable::default();
        t.push(&name("f"), 1u32);
        t.push(&name("g"), 2);
        t.push(&name("f"), 3);
        assert_eq!(t.get("f"), Some(&[1, 3][..]));
        assert_eq!(t.get("g"), Some(&[2][..]));
        assert_eq!(t.get("h"), None);
        assert_eq!(t.len(), 2);
        assert!(t.contains("g") && !t.contains("h"));
    }

    #[test]
    fn grows_past_any_reservation() {
        let mut t = SymbolTable::default();
        for i in 0..10_000u32 {
            t.push(&name(&format!("s{i}")), i);
        }
        t.reserve(3);
        for i in 0..10_000u32 {
            t.push(&name(&format!("s{}", i % 7)), i);
        }
        assert_eq!(t.len(), 10_000);
        assert_eq!(t.get("s9999"), Some(&[9999][..]));
        assert_eq!(t.get("s3").map(|d| d.len()), Some(1 + 10_000 / 7 + 1));
    }

    #[test]
    fn removing_the_last_definition_removes_the_name_and_keeps_the_rest() {
        let mut t = SymbolTable::default();
        for i in 0..100u32 {
            t.push(&name(&format!("s{i}")), i);
        }
        t.push(&name("s5"), 500);
        t.retain("s5", |&d| d != 5);
        assert_eq!(t.get("s5"), Some(&[500][..]));
        // Removing a name from the middle moves the last entry into its place.
        t.retain("s10", |_| false);
        t.retain("s0", |_| false);
        t.retain("absent", |_| false);
        assert_eq!(t.len(), 98);
        assert_eq!(t.get("s10"), None);
        assert_eq!(t.get("s0"), None);
        for i in (1..100u32).filter(|&i| i != 10 && i != 5) {
            assert_eq!(t.get(&format!("s{i}")), Some(&[i][..]), "s{i}");
        }
        // Emptied to nothing and filled again.
        for i in 0..100u32 {
            t.retain(&format!("s{i}"), |_| false);
        }
        assert!(t.is_empty());
        t.push(&name("again"), 1);
        assert_eq!(t.get("again"), Some(&[1][..]));
    }

    #[test]
    fn append_puts_definitions_after_existing_ones_and_equality_ignores_order() {
        let mut a = SymbolTable::default();
        a.push(&name("x"), 1u32);
        a.push(&name("y"), 2);
        let mut b = SymbolTable::default();
        b.push(&name("y"), 3);
        b.push(&name("z"), 4);
        a.append(b);
        assert_eq!(a.get("y"), Some(&[2, 3][..]));
        assert_eq!(a.get("z"), Some(&[4][..]));
        let mut c = SymbolTable::default();
        c.push(&name("z"), 4);
        c.push(&name("y"), 2);
        c.push(&name("x"), 1);
        c.push(&name("y"), 3);
        assert_eq!(a, c);
        c.push(&name("x"), 9);
        assert_ne!(a, c);
        let mut empty = SymbolTable::default();
        empty.append(c.clone());
        assert_eq!(empty, c);
    }
}
