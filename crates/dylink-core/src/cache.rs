//! Modules already read, by content.
//!
//! Reading a module (its `dylink.0` section, imports, exports and, in a shared-memory
//! program, the safe-point rewrite) depends on its bytes alone, so two loads of the same
//! bytes — a program started again, one library in two programs, a library loaded again
//! after `dlclose` — can share one reading, as they share compiled code in the adapters'
//! caches. A [`ModuleCache`] keeps, per distinct content, the bytes to instantiate and their
//! [`ModuleInfo`]; a linker uses it when [`Config::module_cache`](crate::Config) names one.
//!
//! Both it and the adapters' compile caches keep values by the content of a byte string in
//! a [`BytesMap`]: entries are found by a hash of the bytes and confirmed by comparing
//! them whole (or by being the very allocation stored), so a hit is exactly the reading the
//! bytes would give. The cache holds at most its byte
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

/// Values by the content of a byte string (a module's bytes), several per content if the
/// caller wants (one per engine, say). An entry is found by a hash of the bytes and
/// confirmed by comparing them whole; bytes handed in again as the very allocation stored
/// are found by their address, without hashing them. The map holds each stored
/// allocation, so an address is not reused while its entry lives.
pub struct BytesMap<T> {
    table: HashTable<Keyed<T>>,
    /// A stored allocation's address → its content hash.
    by_address: hashbrown::HashMap<usize, u64>,
    hasher: DefaultHashBuilder,
}

struct Keyed<T> {
    hash: u64,
    bytes: Arc<[u8]>,
    value: T,
}

impl<T> Default for BytesMap<T> {
    fn default() -> Self {
        Self {
            table: HashTable::new(),
            by_address: hashbrown::HashMap::new(),
            hasher: DefaultHashBuilder::default(),
        }
    }
}

impl<T> BytesMap<T> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value stored for these bytes (equal content, or the same allocation) that `want`
    /// accepts.
    pub fn get(&self, bytes: &Arc<[u8]>, want: impl Fn(&T) -> bool) -> Option<&T> {
        if let Some(&hash) = self.by_address.get(&address(bytes)) {
            let same = self.table.find(hash, |k| {
                k.hash == hash && Arc::ptr_eq(&k.bytes, bytes) && want(&k.value)
            });
            if let Some(k) = same {
                return Some(&k.value);
            }
        }
        let hash = self.hasher.hash_one(&**bytes);
        self.table
            .find(hash, |k| {
                k.hash == hash
                    && (Arc::ptr_eq(&k.bytes, bytes) || k.bytes == *bytes)
                    && want(&k.value)
            })
            .map(|k| &k.value)
    }

    /// Store `value` for `bytes` (beside any value stored for the same content).
    pub fn insert(&mut self, bytes: Arc<[u8]>, value: T) {
        let hash = self.hasher.hash_one(&*bytes);
        self.by_address.insert(address(&bytes), hash);
        self.table
            .insert_unique(hash, Keyed { hash, bytes, value }, |k| k.hash);
    }

    /// Keep only the entries `keep` accepts (it sees each entry's bytes and value).
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8], &T) -> bool) {
        self.table.retain(|k| keep(&k.bytes, &k.value));
        let table = &self.table;
        self.by_address.retain(|&a, &mut hash| {
            table
                .find(hash, |k| k.hash == hash && address(&k.bytes) == a)
                .is_some()
        });
    }

    /// Every stored value.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.table.iter().map(|k| &k.value)
    }

    /// Entries stored.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Forget every entry.
    pub fn clear(&mut self) {
        self.table.clear();
        self.by_address.clear();
    }
}

impl<T> fmt::Debug for BytesMap<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BytesMap")
            .field("entries", &self.table.len())
            .finish()
    }
}

fn address(bytes: &Arc<[u8]>) -> usize {
    Arc::as_ptr(bytes) as *const u8 as usize
}

/// Readings of modules by content, shared by every linker given a clone of it.
#[derive(Clone)]
pub struct ModuleCache {
    inner: Arc<spin::Mutex<Inner>>,
}

struct Inner {
    readings: BytesMap<Reading>,
    /// Input and rewritten bytes held.
    bytes: usize,
    budget: usize,
    /// Stamp of the next entry (older entries have smaller ones).
    next: u64,
    hits: u64,
}

#[derive(Clone)]
struct Reading {
    prepared: Arc<[u8]>,
    info: Arc<ModuleInfo>,
    /// Input plus rewritten bytes (the input alone when nothing was rewritten).
    size: usize,
    stamp: u64,
}

impl ModuleCache {
    /// The budget [`ModuleCache::process`] uses: 256 MiB of module bytes.
    pub const DEFAULT_BUDGET: usize = 256 << 20;

    /// An empty cache holding at most `budget` bytes of modules.
    pub fn new(budget: usize) -> Self {
        Self {
            inner: Arc::new(spin::Mutex::new(Inner {
                readings: BytesMap::new(),
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
        self.inner.lock().readings.len()
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
        inner.readings.clear();
        inner.bytes = 0;
    }

    /// [`crate::safepoints::prepare`], answered from the cache when these bytes were read
    /// before.
    pub fn prepare(&self, bytes: Arc<[u8]>) -> Result<(Arc<[u8]>, Arc<ModuleInfo>), ParseError> {
        {
            let mut inner = self.inner.lock();
            let found = (inner.readings.get(&bytes, |_| true))
                .map(|r| (r.prepared.clone(), r.info.clone()));
            if let Some(found) = found {
                inner.hits += 1;
                return Ok(found);
            }
        }
        // Read without the lock: other linkers go on meanwhile (two may read the same new
        // module at once; the second finds the first's reading stored and keeps it).
        let (prepared, info) = crate::safepoints::prepare(bytes.clone())?;
        let info = Arc::new(info);
        let size = bytes.len()
            + if Arc::ptr_eq(&bytes, &prepared) {
                0
            } else {
                prepared.len()
            };
        let reading = Reading {
            prepared: prepared.clone(),
            info: info.clone(),
            size,
            stamp: 0,
        };
        self.inner.lock().insert(bytes, reading);
        Ok((prepared, info))
    }
}

impl Inner {
    fn insert(&mut self, bytes: Arc<[u8]>, mut reading: Reading) {
        if reading.size > self.budget || self.readings.get(&bytes, |_| true).is_some() {
            return;
        }
        while self.bytes + reading.size > self.budget {
            let Some(oldest) = self.readings.values().map(|r| r.stamp).min() else {
                break;
            };
            let mut freed = 0;
            self.readings.retain(|_, r| {
                let gone = r.stamp == oldest;
                freed += if gone { r.size } else { 0 };
                !gone
            });
            self.bytes -= freed;
        }
        reading.stamp = self.next;
        self.next += 1;
        self.bytes += reading.size;
        self.readings.insert(bytes, reading);
    }
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
            .field("modules", &inner.readings.len())
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
    fn bytes_map_finds_by_content_and_by_allocation() {
        let mut map: BytesMap<u32> = BytesMap::new();
        let a = side("a");
        map.insert(a.clone(), 1);
        map.insert(a.clone(), 2); // a second value for the same content
        let copy: Arc<[u8]> = a.to_vec().into();
        assert_eq!(map.get(&a, |&v| v == 2), Some(&2));
        assert_eq!(map.get(&copy, |&v| v == 1), Some(&1));
        assert_eq!(map.get(&side("b"), |_| true), None);
        map.retain(|_, &v| v != 1);
        assert_eq!((map.len(), map.get(&copy, |&v| v == 1)), (1, None));
        map.retain(|_, _| false);
        assert!(map.is_empty() && map.by_address.is_empty());
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
