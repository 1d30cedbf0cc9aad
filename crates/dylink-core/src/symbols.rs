//! The symbol table: definitions by name, each name's in the order they were entered.
//!
//! Its hash table holds only 4-byte positions into a vector of entries that grows at the
//! end. A program of 100,000 symbols then has a half-megabyte table that stays in a core's
//! cache while the entries are written one after another; with the name and definitions
//! stored in the table itself (48 bytes a bucket, 6 MB), entering each symbol was a cache
//! miss at a random place, a third of reading 1,000 modules' symbols.
//!
//! An entry's name is a range of one of the shared name buffers ([`Name`]'s), and the
//! table holds each buffer once, with a count of the entries using it. Holding a [`Name`]
//! per entry took a reference count per symbol entered and another per symbol removed,
//! each an atomic read-modify-write: two thirds of entering a symbol, a twentieth of a
//! `dlopen` and `dlclose` of a 50-symbol library.

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
    /// The buffers the entries' names are ranges of.
    texts: Texts,
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
    /// The name: `texts.slots[text]`'s bytes `start..end`.
    text: u32,
    start: u32,
    end: u32,
    defs: SmallVec<[V; 1]>,
}

/// Name buffers, each held once with the number of entries whose names it holds.
#[derive(Clone, Default)]
struct Texts {
    slots: Vec<Text>,
    /// Slots whose buffer was let go, for the next buffer.
    free: Vec<u32>,
    /// Slots by the buffer's address (stable while the slot holds it).
    by_address: HashMap<usize, u32>,
    /// The last buffer looked up, and its slot: a module's names are entered together.
    last: Option<(usize, u32)>,
}

#[derive(Clone)]
struct Text {
    buf: Option<Arc<String>>,
    names: u32,
}

impl Texts {
    /// The slot holding `buf`, taken for one more name (`buf` is cloned once per slot).
    fn take(&mut self, buf: &Arc<String>) -> u32 {
        let address = Arc::as_ptr(buf) as usize;
        let slot = match self.last {
            Some((a, slot)) if a == address => slot,
            _ => match self.by_address.get(&address) {
                Some(&slot) => slot,
                None => {
                    let text = Text {
                        buf: Some(buf.clone()),
                        names: 0,
                    };
                    let slot = match self.free.pop() {
                        Some(slot) => {
                            self.slots[slot as usize] = text;
                            slot
                        }
                        None => {
                            self.slots.push(text);
                            (self.slots.len() - 1) as u32
                        }
                    };
                    self.by_address.insert(address, slot);
                    slot
                }
            },
        };
        self.last = Some((address, slot));
        self.slots[slot as usize].names += 1;
        slot
    }

    /// One name fewer from `slot`; the buffer is let go with its last name.
    fn put(&mut self, slot: u32) {
        let text = &mut self.slots[slot as usize];
        text.names -= 1;
        if text.names > 0 {
            return;
        }
        if let Some(buf) = text.buf.take() {
            let address = Arc::as_ptr(&buf) as usize;
            self.by_address.remove(&address);
            if self.last.is_some_and(|(a, _)| a == address) {
                self.last = None;
            }
        }
        self.free.push(slot);
    }

    /// Bytes `start..end` of `slot`'s buffer.
    #[inline]
    fn str(&self, slot: u32, start: u32, end: u32) -> &str {
        (self.slots.get(slot as usize))
            .and_then(|t| t.buf.as_deref())
            .and_then(|b| b.get(start as usize..end as usize))
            .unwrap_or("")
    }
}

impl<V> Default for SymbolTable<V> {
    fn default() -> Self {
        Self {
            index: HashTable::new(),
            entries: Vec::new(),
            texts: Texts::default(),
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

    fn name(&self, e: &Entry<V>) -> &str {
        self.texts.str(e.text, e.start, e.end)
    }

    fn position(&self, hash: u64, name: &str) -> Option<usize> {
        let (entries, texts) = (&self.entries, &self.texts);
        self.index
            .find(hash, |&i| {
                let e = &entries[i as usize];
                e.hash == hash && texts.str(e.text, e.start, e.end) == name
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
        let (entries, texts) = (&self.entries, &self.texts);
        let at = self.index.entry(
            hash,
            |&i| {
                let e = &entries[i as usize];
                e.hash == hash && texts.str(e.text, e.start, e.end) == &**name
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
                let (buf, start, end) = name.parts();
                let text = self.texts.take(buf);
                self.entries.push(Entry {
                    hash,
                    text,
                    start,
                    end,
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
        // `other`'s text slots as this table's (taken at their first entry kept).
        let mut slots = vec![None; other.texts.slots.len()];
        for mut e in other.entries {
            match self.position(e.hash, other.texts.str(e.text, e.start, e.end)) {
                Some(i) => self.entries[i].defs.extend(e.defs),
                None => {
                    let Some(buf) = other.texts.slots[e.text as usize].buf.as_ref() else {
                        continue;
                    };
                    e.text = match slots[e.text as usize] {
                        Some(mine) => {
                            self.texts.slots[mine as usize].names += 1;
                            mine
                        }
                        None => {
                            let mine = self.texts.take(buf);
                            slots[e.text as usize] = Some(mine);
                            mine
                        }
                    };
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
        let gone = self.entries.swap_remove(i);
        self.texts.put(gone.text);
    }

    /// Every name with its definitions, in the order the names were first entered (until a
    /// removal moves the last one into its place).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &[V])> {
        self.entries
            .iter()
            .map(|e| (self.name(e), e.defs.as_slice()))
    }
}

impl<V: Copy + PartialEq> PartialEq for SymbolTable<V> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(n, d)| other.get(n) == Some(d))
    }
}

impl<V: Copy + fmt::Debug> fmt::Debug for SymbolTable<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
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

    #[test]
    fn a_name_buffer_is_held_once_and_let_go_with_its_last_name() {
        let buf = Arc::new(String::from("alphabetagamma"));
        let names: Vec<Name> = [0..5, 5..9, 9..14]
            .into_iter()
            .map(|r| Name::slice(&buf, r).unwrap())
            .collect();
        let held = Arc::strong_count(&buf);
        let mut t = SymbolTable::default();
        for (i, n) in names.iter().enumerate() {
            t.push(n, i as u32);
        }
        t.push(&names[0], 9);
        assert_eq!(
            Arc::strong_count(&buf),
            held + 1,
            "one hold for three names"
        );
        assert_eq!(t.get("beta"), Some(&[1][..]));
        assert_eq!(t.get("alpha"), Some(&[0, 9][..]));
        // Another table's entries of the same buffer, appended: still one hold.
        let other_buf = Arc::new(String::from("deltaalpha"));
        let mut u = SymbolTable::default();
        u.push(&Name::slice(&buf, 9..14).unwrap(), 20u32);
        u.push(&Name::slice(&other_buf, 0..5).unwrap(), 21);
        u.push(&Name::slice(&other_buf, 5..10).unwrap(), 22);
        t.append(u);
        assert_eq!(Arc::strong_count(&buf), held + 1);
        assert_eq!(
            Arc::strong_count(&other_buf),
            2,
            "delta's buffer, held by t"
        );
        assert_eq!(t.get("gamma"), Some(&[2, 20][..]));
        assert_eq!(t.get("alpha"), Some(&[0, 9, 22][..]));
        assert_eq!(t.get("delta"), Some(&[21][..]));
        // Removing every name of a buffer lets it go; the slot serves the next buffer.
        t.retain("delta", |_| false);
        assert_eq!(Arc::strong_count(&other_buf), 1);
        for n in ["alpha", "beta", "gamma"] {
            t.retain(n, |_| false);
        }
        assert!(t.is_empty());
        assert_eq!(Arc::strong_count(&buf), held);
        let again = Arc::new(String::from("epsilon"));
        t.push(&Name::slice(&again, 0..7).unwrap(), 7);
        assert_eq!(t.get("epsilon"), Some(&[7][..]));
        assert_eq!(t.texts.slots.len(), 2, "freed slots are reused");
        // A clone holds each buffer once more and answers the same.
        let c = t.clone();
        assert_eq!(Arc::strong_count(&again), 3);
        assert_eq!(c, t);
    }
}
