//! Modules already read, by content.
//!
//! Reading a module (its `dylink.0` section, imports, exports and, in a shared-memory
//! program, the safe-point rewrite) depends on its bytes alone, so two loads of the same
//! bytes — a program started again, one library in two programs, a library loaded again
//! after `dlclose` — can share one reading, as they share compiled code in the adapters'
//! caches. A [`ModuleCache`] keeps, per distinct content, the bytes to instantiate and their
//! [`ModuleInfo`]; a linker uses it when [`Config::module_cache`](crate::Config) names one.
//!
//! Entries are found by a hash of the bytes and confirmed by comparing them whole, so a
//! hit is exactly the reading the bytes would give. The cache holds at most its byte
//! budget of module bytes (input plus rewritten bytes); past it the oldest entries leave
//! first. The readings held alongside are not counted, and one may take several times
//! its module's bytes (the plan bench's 200-symbol module's reading is about 19 KB).
//! Readings that fail are not kept.

use core::fmt;
use core::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

use crate::error::ParseError;
use crate::module::ModuleInfo;
use crate::prelude::*;

/// Readings of modules by content, shared by every linker given a clone of it.
#[derive(Clone)]
pub struct ModuleCache {
    inner: Arc<spin::Mutex<Inner>>,
}

struct Inner {
    table: HashTable<Entry>,
    /// The address of each entry's input bytes → the entry's hash: a source that hands out
    /// the same allocation again (an in-memory source) is answered without hashing the
    /// bytes. The entry holds the allocation, so its address is not reused meanwhile.
    by_address: hashbrown::HashMap<usize, u64>,
    hasher: DefaultHashBuilder,
    /// Input and rewritten bytes held.
    bytes: usize,
    budget: usize,
    /// Stamp of the next entry (older entries have smaller ones).
    next: u64,
    hits: u64,
}

struct Entry {
    hash: u64,
    stamp: u64,
    input: Arc<[u8]>,
    prepared: Arc<[u8]>,
    info: Arc<ModuleInfo>,
}

impl Entry {
    fn size(&self) -> usize {
        self.input.len()
            + if Arc::ptr_eq(&self.input, &self.prepared) {
                0
            } else {
                self.prepared.len()
            }
    }
}

impl ModuleCache {
    /// The budget [`ModuleCache::process`] uses: 256 MiB of module bytes.
    pub const DEFAULT_BUDGET: usize = 256 << 20;

    /// An empty cache holding at most `budget` bytes of modules.
    pub fn new(budget: usize) -> Self {
        Self {
            inner: Arc::new(spin::Mutex::new(Inner {
                table: HashTable::new(),
                by_address: hashbrown::HashMap::new(),
                hasher: DefaultHashBuilder::default(),
                bytes: 0,
                budget,
                next: 0,
                hits: 0,
            })),
        }
    }

    /// One cache for the whole process, made on first use (what the adapters use unless
    /// told otherwise).
    pub fn process() -> &'static ModuleCache {
        static PROCESS: spin::Once<ModuleCache> = spin::Once::new();
        PROCESS.call_once(|| ModuleCache::new(Self::DEFAULT_BUDGET))
    }

    /// Distinct modules held.
    pub fn len(&self) -> usize {
        self.inner.lock().table.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held (inputs plus rewritten modules).
    pub fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }

    /// Readings answered from the cache so far.
    pub fn hits(&self) -> u64 {
        self.inner.lock().hits
    }

    /// Forget every reading.
    pub fn clear(&self) {
        let mut inner = self.inner.lock();
        inner.table.clear();
        inner.by_address.clear();
        inner.bytes = 0;
    }

    /// [`crate::safepoints::prepare`], answered from the cache when these bytes were read
    /// before.
    pub fn prepare(&self, bytes: Arc<[u8]>) -> Result<(Arc<[u8]>, Arc<ModuleInfo>), ParseError> {
        let hash = {
            let mut inner = self.inner.lock();
            let known = inner.by_address.get(&address(&bytes)).copied();
            let same_allocation = known.and_then(|hash| {
                (inner.table)
                    .find(hash, |e| e.hash == hash && Arc::ptr_eq(&e.input, &bytes))
                    .map(|e| (e.prepared.clone(), e.info.clone()))
            });
            if let Some(found) = same_allocation {
                inner.hits += 1;
                return Ok(found);
            }
            let hash = inner.hasher.hash_one(&*bytes);
            let found = inner
                .table
                .find(hash, |e| {
                    e.hash == hash && (Arc::ptr_eq(&e.input, &bytes) || e.input == bytes)
                })
                .map(|e| (e.prepared.clone(), e.info.clone()));
            if let Some(found) = found {
                inner.hits += 1;
                return Ok(found);
            }
            hash
        };
        // Read without the lock: other linkers go on meanwhile (two may read the same new
        // module at once; the second insert finds the first and keeps it).
        let (prepared, info) = crate::safepoints::prepare(bytes.clone())?;
        let info = Arc::new(info);
        let entry = Entry {
            hash,
            stamp: 0,
            input: bytes,
            prepared: prepared.clone(),
            info: info.clone(),
        };
        self.inner.lock().insert(entry);
        Ok((prepared, info))
    }
}

impl Inner {
    fn insert(&mut self, mut entry: Entry) {
        let size = entry.size();
        if size > self.budget {
            return;
        }
        let hash = entry.hash;
        let input = entry.input.clone();
        if self
            .table
            .find(hash, |e| e.hash == hash && e.input == input)
            .is_some()
        {
            return;
        }
        while self.bytes + size > self.budget {
            let Some(oldest) = self.table.iter().map(|e| (e.stamp, e.hash)).min() else {
                break;
            };
            if let Ok(e) = self.table.find_entry(oldest.1, |e| e.stamp == oldest.0) {
                let (gone, _) = e.remove();
                self.bytes -= gone.size();
                self.by_address.remove(&address(&gone.input));
            }
        }
        entry.stamp = self.next;
        self.next += 1;
        self.bytes += size;
        self.by_address.insert(address(&entry.input), hash);
        self.table.insert_unique(hash, entry, |e| e.hash);
    }
}

fn address(bytes: &Arc<[u8]>) -> usize {
    Arc::as_ptr(bytes) as *const u8 as usize
}

impl PartialEq for ModuleCache {
    /// The same cache (not equal contents).
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for ModuleCache {}

impl fmt::Debug for ModuleCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.lock();
        f.debug_struct("ModuleCache")
            .field("modules", &inner.table.len())
            .field("bytes", &inner.bytes)
            .field("budget", &inner.budget)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(name: &str) -> Arc<[u8]> {
        let wat = alloc::format!(
            r#"(module (@dylink.0 (mem-info (memory 16 2)))
                 (import "env" "memory" (memory 1))
                 (func (export "{name}") (result i32) i32.const 7))"#
        );
        wat::parse_str(wat).unwrap().into()
    }

    #[test]
    fn same_bytes_share_one_reading() {
        let cache = ModuleCache::new(1 << 20);
        let a = side("f");
        let (pa, ia) = cache.prepare(a.clone()).unwrap();
        // Equal content in a different allocation: the same reading.
        let copy: Arc<[u8]> = a.to_vec().into();
        let (pb, ib) = cache.prepare(copy).unwrap();
        assert!(Arc::ptr_eq(&ia, &ib) && Arc::ptr_eq(&pa, &pb));
        assert_eq!((cache.len(), cache.hits()), (1, 1));
        // What it holds is what reading gives.
        let (_, fresh) = crate::safepoints::prepare(a).unwrap();
        let parts = |i: &ModuleInfo| {
            alloc::format!("{:?}", (&i.dylink, &i.imports, &i.exports, &i.code_range))
        };
        assert_eq!(parts(&ia), parts(&fresh));
        let (_, ic) = cache.prepare(side("g")).unwrap();
        assert_eq!(&*ic.exports[0].name, "g");
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn failed_readings_are_not_kept() {
        let cache = ModuleCache::new(1 << 20);
        let bad: Arc<[u8]> = (*b"\0asm\x01\0\0\0\x01\xff").into();
        assert!(cache.prepare(bad.clone()).is_err());
        assert!(cache.prepare(bad).is_err());
        assert!(cache.is_empty());
    }

    #[test]
    fn budget_evicts_oldest_first() {
        let (a, b, c) = (side("a"), side("b"), side("c"));
        let cache = ModuleCache::new(a.len() + b.len());
        cache.prepare(a.clone()).unwrap();
        cache.prepare(b.clone()).unwrap();
        cache.prepare(c.clone()).unwrap();
        assert_eq!(cache.len(), 2);
        assert!(cache.bytes() <= a.len() + b.len());
        // `a` left, `b` and `c` stayed.
        cache.prepare(b).unwrap();
        cache.prepare(c).unwrap();
        assert_eq!(cache.hits(), 2);
        let too_big = ModuleCache::new(4);
        too_big.prepare(a).unwrap();
        assert!(too_big.is_empty());
        cache.clear();
        assert_eq!((cache.len(), cache.bytes()), (0, 0));
    }
}
