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
//!
//! It also keeps **startup plans** (when [`Config::reuse_startup_plans`](crate::Config) is
//! set, the default): a startup plan depends only on the linker's configuration, the main
//! module's path and bytes, the files the library search read (and the paths it found
//! empty) and the host names it asked about, since the planner is a function of these. With
//! each plan the cache records that trace; a later startup with the same configuration,
//! path and main bytes reads the same paths again and asks the same host names, and when
//! every answer is the same (each file equal in content), it gets a copy of the stored plan
//! instead of planning again — what a program started again costs, as a launch closure
//! does for a native loader. A changed, added or removed library, a changed host, a changed
//! configuration: the trace differs, the plan is made afresh and replaces the stored one.
//! At most [`ModuleCache::STARTUP_PLANS`] plans are kept, the oldest leaving first; the
//! bytes they hold stay alive with them, beyond the budget above.

use core::fmt;
use core::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

use core::cell::RefCell;

use crate::config::{Config, HostNames, ModuleSource};
use crate::error::ParseError;
use crate::module::ModuleInfo;
use crate::plan::Plan;
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

/// A [`BytesMap`] that holds at most `budget` bytes of content and `max_entries` entries,
/// the oldest leaving first: what the adapters keep their process-wide compiled modules in,
/// so a process that compiles new modules for ever (new libraries, new versions of them, a
/// new engine per store) keeps a bounded cache. A value handed out stays valid when its
/// entry leaves: its holder has its own clone.
pub struct BoundedBytesMap<T> {
    map: BytesMap<(u64, T)>,
    budget: usize,
    max_entries: usize,
    bytes: usize,
    next: u64,
}

impl<T> BoundedBytesMap<T> {
    /// An empty map holding at most `budget` bytes of content in at most `max_entries`
    /// entries.
    pub fn new(budget: usize, max_entries: usize) -> Self {
        Self {
            map: BytesMap::new(),
            budget,
            max_entries,
            bytes: 0,
            next: 0,
        }
    }

    /// The value stored for these bytes that `want` accepts ([`BytesMap::get`]).
    pub fn get(&self, bytes: &Arc<[u8]>, want: impl Fn(&T) -> bool) -> Option<&T> {
        self.map.get(bytes, |(_, v)| want(v)).map(|(_, v)| v)
    }

    /// Store `value` for `bytes`, making room first by removing the oldest entries; bytes
    /// larger than the whole budget are not stored.
    pub fn insert(&mut self, bytes: Arc<[u8]>, value: T) {
        let size = bytes.len();
        if size > self.budget || self.max_entries == 0 {
            return;
        }
        while self.bytes + size > self.budget || self.map.len() >= self.max_entries {
            let Some(oldest) = self.map.values().map(|(stamp, _)| *stamp).min() else {
                break;
            };
            let mut freed = 0;
            self.map.retain(|b, (stamp, _)| {
                let gone = *stamp == oldest;
                freed += if gone { b.len() } else { 0 };
                !gone
            });
            self.bytes -= freed;
        }
        self.map.insert(bytes, (self.next, value));
        self.next += 1;
        self.bytes += size;
    }

    /// Every stored value.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.map.values().map(|(_, v)| v)
    }

    /// Entries stored.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bytes of content held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Forget every entry.
    pub fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
    }
}

impl<T> Default for BoundedBytesMap<T> {
    /// [`ModuleCache::DEFAULT_BUDGET`] bytes in at most [`Self::DEFAULT_ENTRIES`] entries.
    fn default() -> Self {
        Self::new(ModuleCache::DEFAULT_BUDGET, Self::DEFAULT_ENTRIES)
    }
}

impl<T> BoundedBytesMap<T> {
    /// The entry cap of [`Default`]: room for a program of thousands of libraries, few
    /// enough that engines dropped by the embedder and kept alive by their compiled modules
    /// here do not pile up.
    pub const DEFAULT_ENTRIES: usize = 4096;
}

impl<T> fmt::Debug for BoundedBytesMap<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedBytesMap")
            .field("entries", &self.map.len())
            .field("bytes", &self.bytes)
            .field("budget", &self.budget)
            .field("max_entries", &self.max_entries)
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
    /// Startup plans, oldest first.
    startups: Vec<Arc<Startup>>,
    startup_hits: u64,
}

/// A startup plan and everything it was made from.
struct Startup {
    /// The configuration, without its module cache (which holds this entry).
    config: Config,
    path: String,
    main: Arc<[u8]>,
    trace: Trace,
    plan: Plan,
}

/// What planning a startup asked of its embedder, in order.
#[derive(Default)]
pub(crate) struct Trace {
    /// Every path read, with the file found (`None`: no file there).
    reads: Vec<(String, Option<Arc<[u8]>>)>,
    /// Every host name asked about, with the answer (once each: the planner asks for a
    /// name once per module importing it).
    host: HashMap<(String, String), bool>,
}

/// A [`ModuleSource`] and [`HostNames`] that record what the planner asks of the embedder's.
pub(crate) struct Recorder<'a> {
    source: &'a dyn ModuleSource,
    host: &'a dyn HostNames,
    trace: RefCell<Trace>,
}

impl<'a> Recorder<'a> {
    pub(crate) fn new(source: &'a dyn ModuleSource, host: &'a dyn HostNames) -> Self {
        Self {
            source,
            host,
            trace: RefCell::default(),
        }
    }

    pub(crate) fn into_trace(self) -> Trace {
        self.trace.into_inner()
    }
}

impl ModuleSource for Recorder<'_> {
    fn read(&self, path: &str) -> Result<Option<Arc<[u8]>>, String> {
        let read = self.source.read(path);
        if let Ok(found) = &read {
            (self.trace.borrow_mut().reads).push((path.into(), found.clone()));
        }
        read
    }
}

impl HostNames for Recorder<'_> {
    fn defines(&self, module: &str, name: &str) -> bool {
        let answer = self.host.defines(module, name);
        (self.trace.borrow_mut().host).insert((module.into(), name.into()), answer);
        answer
    }
}

/// Whether two configurations plan alike: every field but the module cache and the workers.
fn plans_alike(a: &Config, b: &Config) -> bool {
    let Config {
        search,
        bind,
        stack_size,
        initial_heap,
        global_base,
        preload,
        dlerror_size,
        dladdr_size,
        direct_lazy_calls,
        reuse_startup_plans,
        module_cache: _,
        workers: _,
    } = a;
    *search == b.search
        && *bind == b.bind
        && *stack_size == b.stack_size
        && *initial_heap == b.initial_heap
        && *global_base == b.global_base
        && *preload == b.preload
        && *dlerror_size == b.dlerror_size
        && *dladdr_size == b.dladdr_size
        && *direct_lazy_calls == b.direct_lazy_calls
        && *reuse_startup_plans == b.reuse_startup_plans
}

impl Startup {
    /// Whether this plan was made for `config`, `path` and `main` (its trace not checked).
    fn made_for(&self, config: &Config, path: &str, main: &Arc<[u8]>) -> bool {
        self.path == path && plans_alike(&self.config, config) && same_content(&self.main, main)
    }
}

fn same_content(a: &Arc<[u8]>, b: &Arc<[u8]>) -> bool {
    Arc::ptr_eq(a, b) || a[..] == b[..]
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

    /// Startup plans kept (module docs).
    pub const STARTUP_PLANS: usize = 16;

    /// An empty cache holding at most `budget` bytes of modules.
    pub fn new(budget: usize) -> Self {
        Self {
            inner: Arc::new(spin::Mutex::new(Inner {
                readings: BytesMap::new(),
                bytes: 0,
                budget,
                next: 0,
                hits: 0,
                startups: Vec::new(),
                startup_hits: 0,
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

    /// Startup plans held.
    pub fn startup_plans(&self) -> usize {
        self.inner.lock().startups.len()
    }

    /// Startups answered with a stored plan so far.
    pub fn startup_hits(&self) -> u64 {
        self.inner.lock().startup_hits
    }

    /// Forget every reading and startup plan.
    pub fn clear(&self) {
        let mut inner = self.inner.lock();
        inner.readings.clear();
        inner.bytes = 0;
        inner.startups.clear();
    }

    /// A copy of the startup plan stored for this configuration, path and main module, if
    /// the embedder answers every question its planning asked as it did then (the
    /// module docs). The source is read without the lock held.
    pub(crate) fn startup(
        &self,
        config: &Config,
        path: &str,
        main: &Arc<[u8]>,
        source: &dyn ModuleSource,
        host: &dyn HostNames,
    ) -> Option<Plan> {
        let entry = (self.inner.lock().startups.iter())
            .find(|e| e.made_for(config, path, main))
            .cloned()?;
        for (path, was) in &entry.trace.reads {
            let same = match (source.read(path), was) {
                (Ok(None), None) => true,
                (Ok(Some(now)), Some(was)) => same_content(&now, was),
                _ => false,
            };
            if !same {
                return None;
            }
        }
        if (entry.trace.host.iter()).any(|((m, n), was)| host.defines(m, n) != *was) {
            return None;
        }
        self.inner.lock().startup_hits += 1;
        Some(entry.plan.duplicate())
    }

    /// Keep a startup plan made from `trace`, replacing one made for the same configuration,
    /// path and main module.
    pub(crate) fn keep_startup(
        &self,
        config: &Config,
        path: &str,
        main: Arc<[u8]>,
        trace: Trace,
        plan: &Plan,
    ) {
        let entry = Arc::new(Startup {
            config: Config {
                module_cache: None,
                workers: None,
                ..config.clone()
            },
            path: path.into(),
            main,
            trace,
            plan: plan.duplicate(),
        });
        let mut inner = self.inner.lock();
        (inner.startups).retain(|e| !e.made_for(&entry.config, &entry.path, &entry.main));
        if inner.startups.len() >= Self::STARTUP_PLANS {
            inner.startups.remove(0);
        }
        inner.startups.push(entry);
    }

    /// The reading of these bytes, if the cache holds one (counted as a hit).
    pub(crate) fn get(&self, bytes: &Arc<[u8]>) -> Option<(Arc<[u8]>, Arc<ModuleInfo>)> {
        let mut inner = self.inner.lock();
        let found =
            (inner.readings.get(bytes, |_| true)).map(|r| (r.prepared.clone(), r.info.clone()));
        if found.is_some() {
            inner.hits += 1;
        }
        found
    }

    /// [`crate::safepoints::prepare`], answered from the cache when these bytes were read
    /// before.
    pub fn prepare(&self, bytes: Arc<[u8]>) -> Result<(Arc<[u8]>, Arc<ModuleInfo>), ParseError> {
        if let Some(found) = self.get(&bytes) {
            return Ok(found);
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
            alloc::format!(
                "{:?}",
                (
                    &i.dylink,
                    &i.imports,
                    &i.namespaces,
                    &i.exports,
                    &i.code_range
                )
            )
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
    fn a_bounded_map_keeps_its_budget_and_entry_cap_oldest_leaving_first() {
        let (a, b, c) = (side("a"), side("b"), side("c"));
        let mut m = BoundedBytesMap::new(a.len() + b.len(), 10);
        m.insert(a.clone(), 1);
        m.insert(b.clone(), 2);
        m.insert(c.clone(), 3);
        assert_eq!(m.len(), 2);
        assert_eq!(m.bytes(), b.len() + c.len());
        assert_eq!(m.get(&a, |_| true), None);
        assert_eq!(m.get(&b, |_| true), Some(&2));
        assert_eq!(m.get(&c, |_| true), Some(&3));
        // Two values for one content (two engines): both count, and both can leave.
        let mut m = BoundedBytesMap::new(usize::MAX, 2);
        m.insert(a.clone(), 1);
        m.insert(a.clone(), 2);
        assert_eq!(m.get(&a, |v| *v == 2), Some(&2));
        m.insert(b.clone(), 3);
        assert_eq!((m.len(), m.bytes()), (2, a.len() + b.len()));
        assert_eq!(m.get(&a, |v| *v == 1), None);
        let mut too_small = BoundedBytesMap::new(4, 10);
        too_small.insert(a.clone(), 1);
        assert!(too_small.is_empty());
        m.clear();
        assert_eq!((m.len(), m.bytes()), (0, 0));
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
