//! Run clang/wasm-ld `dylink.0` programs — a main module and its shared libraries — on
//! [wasmtime].
//!
//! Every decision (where each library's data goes, which slot a function pointer gets, what
//! each import binds to, in which order constructors run) is made by [`dylink_core`]; this
//! crate only applies its plans to wasmtime stores and serves the guest's `dlopen` family.
//!
//! # Adding dynamic linking to an embedding
//!
//! ```no_run
//! use dylink_wasmtime::{DirSource, Options, Program};
//! use wasmtime::{Engine, Linker, Store};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::default();
//! let mut store = Store::new(&engine, ());
//! let linker = Linker::new(&engine); // your WASI and host functions go here, as usual
//!
//! let mut libs = DirSource::new();
//! libs.mount("/lib", "path/to/libs")?;
//! let mut options = Options::new(libs);
//! options.config.search.library_path.push("/lib".into());
//!
//! let main = std::fs::read("path/to/main.wasm")?;
//! let program = Program::load(&mut store, &linker, options, "/main.wasm", &main)?;
//! let run = program.main_func(&mut store, "run").expect("main exports run");
//! run.call(&mut store, &[], &mut [])?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod apply;
#[cfg(feature = "conformance")]
pub mod conformance;
mod dl;
mod mem;
mod threads;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use dylink_core::drive::{Applier, ApplyCtx, Phase};
use dylink_core::{
    BoundedBytesMap, Config, Facts, GenId, GlobalId, GroupId, Handle, HostSet, IdMap,
    Linker as Core, ModuleId, ModuleSource, NewModule, Op, Outcome, Plan, PlanKind, SymbolValue,
    TagId,
};
use wasmtime::{
    AsContextMut, Engine, Extern, Func, Global, Instance, Module, ModuleExport, Table, Tag, Val,
};

pub use dylink_core::{self as core, AddrInfo, BindMode, MemorySource, SlotValue, rtld};
pub use dylink_fs::DirSource;
pub use mem::Mem;

/// An error a user can act on: the core's (which module, which symbol, what to do) or the
/// engine's, with what dylink was doing when it happened.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The linker refused: missing library, undefined symbol, type mismatch, bad module, …
    Core(dylink_core::Error),
    /// wasmtime failed while dylink applied a plan.
    Engine {
        /// What dylink was doing.
        context: String,
        /// wasmtime's error.
        source: wasmtime::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Core(e) => write!(f, "{e}"),
            // One line: what dylink was doing and the root cause (a trap message, say); the
            // wasm backtrace stays available through `source`.
            Error::Engine { context, source } => {
                let root = source.root_cause().to_string();
                let root = root.lines().last().unwrap_or_default().trim().to_string();
                write!(f, "{context}: {root}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Core(e) => Some(e),
            Error::Engine { source, .. } => Some(source.as_ref()),
        }
    }
}

impl From<dylink_core::Error> for Error {
    fn from(e: dylink_core::Error) -> Self {
        Error::Core(e)
    }
}

/// The program's memory, filled in as soon as it exists: host functions that constructors
/// call during [`Program::load`] (output, say) read guest memory through it.
pub type MemoryCell = Arc<std::sync::OnceLock<Mem>>;

/// How a program is loaded.
pub struct Options {
    /// Search paths, roots, bind mode, stack and heap sizes, preloads.
    pub config: Config,
    /// Where library bytes come from.
    pub source: Arc<dyn ModuleSource + Send + Sync>,
    /// Filled with the memory once it is created (clone it before loading).
    pub memory: MemoryCell,
}

impl Options {
    /// Default configuration reading from `source` (library roots: every path the source
    /// knows). Modules are read through the process-wide [`dylink_core::ModuleCache`], as
    /// their compiled code is kept in a process-wide cache: set `config.module_cache` to
    /// `None` to read every module afresh. The same cache keeps each startup plan, so a
    /// program started again in this process is not planned again while every file and
    /// host name it depended on reads the same (`config.reuse_startup_plans`). The modules
    /// of a large NEEDED tree are read on the machine's threads (`config.workers`,
    /// [`dylink_fs::Threads`]); the plan is the same as read on one.
    pub fn new(source: impl ModuleSource + Send + Sync + 'static) -> Self {
        Self {
            config: Config {
                module_cache: Some(dylink_core::ModuleCache::process().clone()),
                workers: Some(dylink_fs::Threads::available().workers()),
                ..Config::default()
            },
            source: Arc::new(source),
            memory: MemoryCell::default(),
        }
    }

    /// Read libraries from mounted host directories, and confine library names to them.
    pub fn dirs(dirs: DirSource) -> Self {
        let roots = dirs.roots();
        Self::new(dirs).roots(roots)
    }

    /// Confine library names to `roots` (virtual directories).
    pub fn roots(mut self, roots: Vec<String>) -> Self {
        self.config.search.roots = roots;
        self
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Makes the store data for a new thread's store.
type ThreadData<T> = Arc<dyn Fn() -> T + Send + Sync>;

/// Told how each spawned thread ended: its id and `wasi_thread_start`'s result.
type ThreadExit = Arc<dyn Fn(u32, Result<(), wasmtime::Error>) + Send + Sync>;

/// What every instance group of a program shares.
pub(crate) struct Shared<T: 'static> {
    engine: Engine,
    core: Mutex<Core>,
    source: Arc<dyn ModuleSource + Send + Sync>,
    host: wasmtime::Linker<T>,
    host_names: HostSet,
    /// Compiled modules by linker id.
    compiled: Mutex<IdMap<ModuleId, Compiled>>,
    /// The shared memory, when the program has one.
    shared_memory: Mutex<Option<wasmtime::SharedMemory>>,
    memory_cell: MemoryCell,
    /// The linker's warnings from every committed plan.
    warnings: Mutex<Vec<dylink_core::Diagnostic>>,
    /// Makes the store data of a thread `wasi.thread-spawn` starts (see `enable_threads`).
    thread_data: Mutex<Option<ThreadData<T>>>,
    /// Told how each spawned thread ended (see `on_thread_exit`).
    thread_exit: Mutex<Option<ThreadExit>>,
    /// Plans committed through this program (bumped right after each commit, before any
    /// guest call): a group whose `Group::seen` equals it has nothing to catch up.
    pub(crate) commits: AtomicU64,
    /// The commit counter's address in the shared memory, once the startup plan set it.
    counter: std::sync::OnceLock<u64>,
    /// The next wasi-threads thread id.
    next_tid: std::sync::atomic::AtomicU32,
    /// Calls into dylink's own host functions (dlfcn and trap stubs), for tests that prove
    /// a lazily bound call never leaves wasm after it is resolved.
    host_calls: AtomicU64,
}

/// A compiled module and its exports by position (the core's export index), so an import
/// bound to an export is fetched without looking its name up.
#[derive(Clone)]
pub(crate) struct Compiled {
    pub(crate) module: Module,
    pub(crate) exports: Arc<Exports>,
}

/// A compiled module's exports as wasmtime indexes them, so an instance's export is fetched
/// with `Instance::get_module_export`, without wasmtime's lookup by name (interning the name,
/// then its own table: several times the cost, most of a table slot's write).
pub(crate) struct Exports {
    /// By position in the export section (a binding's `index`).
    pub(crate) at: Box<[Option<ModuleExport>]>,
    /// Positions by name (a table slot's export).
    by_name: hashbrown::HashMap<Box<str>, u32>,
}

impl Exports {
    /// The export called `name`.
    pub(crate) fn named(&self, name: &str) -> Option<ModuleExport> {
        self.at[*self.by_name.get(name)? as usize]
    }
}

impl Compiled {
    fn new(module: Module) -> Self {
        let at = module
            .exports()
            .map(|e| module.get_export_index(e.name()))
            .collect();
        let by_name = (module.exports().enumerate())
            .map(|(i, e)| (e.name().into(), i as u32))
            .collect();
        let exports = Arc::new(Exports { at, by_name });
        Self { module, exports }
    }
}

/// Compiled modules by the bytes compiled, shared by every program (each entry's module
/// names its engine). Modules read through the core's module cache arrive as the same
/// allocation every time and are found without hashing their bytes. Bounded
/// ([`BoundedBytesMap`]'s default: 256 MiB of module bytes, 4,096 modules), the oldest
/// leaving first; a compiled module keeps its engine alive while it is held here.
fn compile_cache() -> &'static Mutex<BoundedBytesMap<Compiled>> {
    static CACHE: std::sync::OnceLock<Mutex<BoundedBytesMap<Compiled>>> =
        std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Drop every module compiled and kept for reuse, on every engine: after dropping an
/// engine, say, to release its code at once. Loaded programs keep what they use.
pub fn clear_compiled_modules() {
    lock(compile_cache()).clear();
}

static COMPILATIONS: AtomicU64 = AtomicU64::new(0);

/// How many modules this process has compiled (each distinct module once per engine:
/// loading the same library again, or in a second program, reuses the compiled code).
pub fn compilations() -> u64 {
    COMPILATIONS.load(Ordering::Relaxed)
}

/// How many distinct modules are compiled on `engine` and kept for reuse.
pub fn compiled_modules(engine: &Engine) -> usize {
    lock(compile_cache())
        .values()
        .filter(|c| Engine::same(c.module.engine(), engine))
        .count()
}

/// Whether `bytes` are compiled on `engine` and kept for reuse.
pub(crate) fn is_compiled(engine: &Engine, bytes: &Arc<[u8]>) -> bool {
    (lock(compile_cache()).get(bytes, |c| Engine::same(c.module.engine(), engine))).is_some()
}

/// Compile `bytes`, or return the module compiled earlier from the same bytes on `engine`.
/// The cache is not locked while compiling (a large module takes seconds): a thread loading
/// something compiled already does not wait for another's compilation. Two threads
/// compiling the same bytes at once both compile; the first to finish is kept and both get
/// it, so a module has one compiled copy per engine.
pub(crate) fn compile(engine: &Engine, bytes: &Arc<[u8]>, what: &str) -> Result<Compiled, Error> {
    let same = |c: &Compiled| Engine::same(c.module.engine(), engine);
    if let Some(c) = lock(compile_cache()).get(bytes, same) {
        return Ok(c.clone());
    }
    let module = Module::new(engine, &bytes[..]).map_err(|source| Error::Engine {
        context: format!("compiling {what}"),
        source,
    })?;
    COMPILATIONS.fetch_add(1, Ordering::Relaxed);
    let mut cache = lock(compile_cache());
    if let Some(c) = cache.get(bytes, same) {
        return Ok(c.clone());
    }
    let compiled = Compiled::new(module);
    cache.insert(bytes.clone(), compiled.clone());
    Ok(compiled)
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves consistent data (plans are applied then
    // committed, never half-recorded), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One instance group's handles: its store's memory, table, globals, tags and instances.
#[derive(Default)]
pub(crate) struct Group {
    memory: Option<Mem>,
    table: Option<Table>,
    globals: Vec<Option<Global>>,
    tags: Vec<Option<Tag>>,
    /// Instances by module id (found by position: a module's import list looks one up per
    /// import).
    instances: IdMap<ModuleId, Loaded>,
    /// Generated modules, each with the trampoline table it owns.
    generated: IdMap<GenId, (Instance, Option<Table>)>,
    /// The message `dlerror` returns next.
    dl_error: Option<String>,
    /// A dl operation is being applied (constructors may run guest code that calls back).
    busy: bool,
    /// `Shared::commits` when this group last caught up from a wait.
    seen: u64,
    /// The group's `dylink.seen` global, made when a module first imports it.
    seen_global: Option<Global>,
}

/// A module's instance in a group, with its exports by position (see [`Compiled`]).
pub(crate) struct Loaded {
    pub(crate) instance: Instance,
    pub(crate) exports: Arc<Exports>,
}

impl Group {
    /// The instance of `module`, or an error saying which module is missing.
    pub(crate) fn instance(&self, module: ModuleId) -> Result<Instance, Error> {
        match self.instances.get(module) {
            Some(l) => Ok(l.instance),
            None => Err(Error::Engine {
                context: "looking up an instance".into(),
                source: wasmtime::format_err!("{module} is not instantiated in this group"),
            }),
        }
    }
    fn global(&self, g: GlobalId) -> Option<Global> {
        self.globals.get(g.index()).copied().flatten()
    }
    fn tag(&self, t: TagId) -> Option<Tag> {
        self.tags.get(t.index()).copied().flatten()
    }
}

/// A loaded program: its main module, libraries, and the state `dlopen` works on.
pub struct Program<T: 'static> {
    shared: Arc<Shared<T>>,
    group: Arc<Mutex<Group>>,
    /// The group's id (also in `group`, kept here so hot paths take no lock for it).
    id: GroupId,
}

impl<T: 'static> Clone for Program<T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            group: self.group.clone(),
            id: self.id,
        }
    }
}

impl<T: 'static> fmt::Debug for Program<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Program")
            .field("group", &self.id)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Program<T> {
    /// Load the main module `main` (its path, used for `$ORIGIN` and messages, is `path`),
    /// the preloads and its NEEDED tree into `store`. Imports no module defines come from
    /// `host` (WASI, your functions). Runs relocations and constructors; a command's `_start`
    /// is left for you to call.
    pub fn load(
        mut store: impl AsContextMut<Data = T>,
        host: &wasmtime::Linker<T>,
        options: Options,
        path: &str,
        main: &[u8],
    ) -> Result<Self, Error> {
        let mut host_names = HostSet::new();
        for (module, name, _) in host.iter(&mut store) {
            host_names.insert(module, name);
        }
        let engine = store.as_context().engine().clone();
        let shared = Arc::new(Shared {
            engine,
            core: Mutex::new(Core::new(options.config)),
            source: options.source,
            host: host.clone(),
            host_names,
            compiled: Mutex::new(IdMap::new()),
            shared_memory: Mutex::new(None),
            memory_cell: options.memory,
            warnings: Mutex::new(Vec::new()),
            thread_data: Mutex::new(None),
            thread_exit: Mutex::new(None),
            commits: AtomicU64::new(0),
            counter: std::sync::OnceLock::new(),
            next_tid: std::sync::atomic::AtomicU32::new(1),
            host_calls: AtomicU64::new(0),
        });
        let group = Arc::new(Mutex::new(Group::default()));
        let program = Program {
            shared,
            group,
            id: dylink_core::MAIN_GROUP,
        };
        let core = lock(&program.shared.core);
        let plan = core.plan_startup(
            path,
            main.into(),
            &*program.shared.source,
            &program.shared.host_names,
        )?;
        program.run_plan(&mut store, core, plan)?;
        if let Some(addr) = lock(&program.shared.core).commit_counter() {
            let _ = program.shared.counter.set(addr);
        }
        Ok(program)
    }

    /// Tell every group that a plan was committed: the count the wait safe points read,
    /// and the commit counter in shared memory the indirect-call safe points read.
    fn committed(&self) {
        self.shared.commits.fetch_add(1, Ordering::Release);
        if let Some(addr) = self.shared.counter.get()
            && let Some(m) = lock(&self.shared.shared_memory).as_ref()
        {
            mem::counter_add(m, *addr);
        }
    }

    /// The commit counter's value (0 before the program has one).
    pub(crate) fn counter(&self) -> u32 {
        match (
            self.shared.counter.get(),
            lock(&self.shared.shared_memory).as_ref(),
        ) {
            (Some(addr), Some(m)) => mem::counter_load(m, *addr).unwrap_or(0),
            _ => 0,
        }
    }

    /// Apply a plan in this program's group and commit it (see [`dylink_core::drive`]): on
    /// failure the plan is aborted and what was applied undone; a load's constructors run
    /// after the commit without the linker lock, so they may `dlopen`.
    pub(crate) fn run_plan(
        &self,
        store: impl AsContextMut<Data = T>,
        core: MutexGuard<'_, Core>,
        plan: Plan,
    ) -> Result<Outcome, Error> {
        let mut driver = Driver {
            program: self,
            store,
            undo: apply::Undo::default(),
        };
        dylink_core::drive::drive(core, || lock(&self.shared.core), plan, &mut driver)
    }

    /// A new instance group for another thread: every loaded module instantiated in `store`
    /// (a fresh store on the same engine) over the same shared memory, with the same table
    /// slots and globals, relocations and constructors not re-run, and its own TLS blocks.
    /// The program must use a shared memory (built with `-pthread`).
    pub fn new_group(&self, mut store: impl AsContextMut<Data = T>) -> Result<Program<T>, Error> {
        let core = lock(&self.shared.core);
        let memory_bytes = lock(&self.shared.shared_memory)
            .as_ref()
            .map_or(0, |m| m.data_size() as u64);
        let plan = core.plan_group(Facts { memory_bytes })?;
        let id = plan.group();
        let group = Arc::new(Mutex::new(Group::default()));
        let program = Program {
            shared: self.shared.clone(),
            group,
            id,
        };
        program.run_plan(&mut store, core, plan)?;
        Ok(program)
    }

    /// Let the program start threads through `wasi.thread-spawn` (wasi-threads): each new
    /// thread gets a store with data from `make`, its own instance group, and runs the main
    /// module's `wasi_thread_start(tid, arg)`. Without this, `thread-spawn` returns -1.
    pub fn enable_threads(&self, make: impl Fn() -> T + Send + Sync + 'static) {
        *lock(&self.shared.thread_data) = Some(Arc::new(make));
    }

    /// Be told how each thread started by `wasi.thread-spawn` ended: its thread id and the
    /// result of its `wasi_thread_start` (a trap, or a WASI exit the embedder recognises,
    /// such as wasmtime-wasi's `I32Exit`). Without this, a thread that traps is logged
    /// (`dylink::threads`) and the others go on.
    pub fn on_thread_exit(
        &self,
        f: impl Fn(u32, Result<(), wasmtime::Error>) + Send + Sync + 'static,
    ) {
        *lock(&self.shared.thread_exit) = Some(Arc::new(f));
    }

    /// Apply, in this group's `store`, what other groups committed since this group last
    /// caught up (libraries loaded or unloaded, function-pointer slots written). Call it
    /// before running code another thread may have loaded.
    pub fn catch_up(&self, store: impl AsContextMut<Data = T>) -> Result<(), Error> {
        let mut core = lock(&self.shared.core);
        self.catch_up_locked(store, &mut core)
    }

    /// [`Program::catch_up`] with the core lock already held. Every dl operation starts
    /// with it, so a group plans and commits against a state it has applied.
    fn catch_up_locked(
        &self,
        store: impl AsContextMut<Data = T>,
        core: &mut MutexGuard<'_, Core>,
    ) -> Result<(), Error> {
        let mut driver = Driver {
            program: self,
            store,
            undo: apply::Undo::default(),
        };
        let behind = core.is_behind(self.id);
        dylink_core::drive::catch_up(core, &mut driver)?;
        if behind {
            self.forget_unloaded(core);
        }
        Ok(())
    }

    /// Drop the compiled code of modules no group can instantiate any more (unloaded, and
    /// every group past their load in the log), so loading and unloading libraries for ever
    /// keeps a bounded cache.
    fn forget_unloaded(&self, core: &mut Core) {
        for m in core.take_uninstantiable() {
            lock(&self.shared.compiled).remove(m);
        }
    }

    /// This instance group's id in the core (for [`Program::with_core`] queries such as
    /// `pending_ops`).
    pub fn group_id(&self) -> dylink_core::GroupId {
        self.id
    }

    /// End this instance group (its thread is done): its TLS blocks and dlerror buffer are
    /// reclaimed. The main group cannot exit.
    pub fn exit_group(self) -> Result<(), Error> {
        let mut core = lock(&self.shared.core);
        let group = self.id;
        let plan = core.plan_group_exit(group)?;
        core.commit(plan)?;
        Ok(())
    }

    /// The engine's facts the core plans against.
    pub(crate) fn facts(&self, store: impl AsContextMut<Data = T>) -> Facts {
        let g = lock(&self.group);
        Facts {
            memory_bytes: g.memory.as_ref().map_or(0, |m| m.size_bytes(&store)),
        }
    }

    /// The main module's instance.
    pub fn main_instance(&self) -> Instance {
        let main = lock(&self.shared.core)
            .main()
            .expect("a loaded program has a main module");
        lock(&self.group)
            .instance(main)
            .expect("a loaded program's main module is instantiated")
    }

    /// An export of the main module.
    pub fn main_export(&self, store: impl AsContextMut<Data = T>, name: &str) -> Option<Extern> {
        self.main_instance().get_export(store, name)
    }

    /// A function exported by the main module.
    pub fn main_func(&self, store: impl AsContextMut<Data = T>, name: &str) -> Option<Func> {
        self.main_instance().get_func(store, name)
    }

    /// The instance of a loaded module.
    pub fn instance(&self, module: ModuleId) -> Option<Instance> {
        lock(&self.group).instances.get(module).map(|l| l.instance)
    }

    /// The program's linear memory.
    pub fn memory(&self) -> Mem {
        lock(&self.group)
            .memory
            .clone()
            .expect("a loaded program has a memory")
    }

    /// The function table of this group.
    pub fn table(&self) -> Table {
        lock(&self.group)
            .table
            .expect("a loaded program has a table")
    }

    /// Run `f` with the linker core (for reports: layout, modules, `ldd`-style listings).
    pub fn with_core<R>(&self, f: impl FnOnce(&Core) -> R) -> R {
        f(&lock(&self.shared.core))
    }

    /// The linker's warnings so far: duplicate definitions (the first in scope order won),
    /// weak symbols left undefined, functions bound lazily because nothing defines them yet.
    pub fn warnings(&self) -> Vec<String> {
        (lock(&self.shared.warnings).iter())
            .map(|d| d.to_string())
            .collect()
    }

    /// The same findings as values, to pick some by kind (the `dylink` command prints the
    /// ones about how a module was built: [`dylink_core::Diagnostic::is_build_warning`]).
    pub fn diagnostics(&self) -> Vec<dylink_core::Diagnostic> {
        lock(&self.shared.warnings).clone()
    }

    /// How many times guest code called into dylink's host functions (dlfcn and the trap
    /// stubs of undefined functions).
    pub fn host_calls(&self) -> u64 {
        self.shared.host_calls.load(Ordering::Relaxed)
    }

    /// `dlopen(name, flags)` from the host. `None` is the program itself.
    pub fn dlopen(
        &self,
        store: impl AsContextMut<Data = T>,
        name: Option<&str>,
        flags: i32,
    ) -> Result<ModuleId, Error> {
        self.dlopen_as(store, name, flags, None)
    }

    /// `dlopen` on behalf of module `caller` (its RUNTIME_PATH and directory count).
    ///
    /// Compiling a library can take seconds; the linker's lock is not held meanwhile, so the
    /// program's other threads keep making dl calls. A plan that needs a module not compiled
    /// yet is dropped, the modules are compiled without the lock, and the `dlopen` is planned
    /// again, finding them compiled (unless another thread changed what it needs or the
    /// bounded compile cache let them go; after
    /// [`UNLOCKED_COMPILES`](dylink_core::drive::UNLOCKED_COMPILES) tries, what is left is
    /// compiled under the lock, as any plan's modules are).
    pub(crate) fn dlopen_as(
        &self,
        mut store: impl AsContextMut<Data = T>,
        name: Option<&str>,
        flags: i32,
        caller: Option<ModuleId>,
    ) -> Result<ModuleId, Error> {
        let engine = &self.shared.engine;
        let mut tries = 0;
        loop {
            let mut core = lock(&self.shared.core);
            self.catch_up_locked(&mut store, &mut core)?;
            let group = self.id;
            // A library already loaded: a reference more, no plan to run.
            if let Some(m) = name.and_then(|n| core.dlopen_loaded(n, flags, group)) {
                return Ok(m);
            }
            let facts = self.facts(&mut store);
            let plan = core.plan_dlopen(
                name,
                flags,
                caller,
                group,
                facts,
                &*self.shared.source,
                &self.shared.host_names,
            )?;
            let uncompiled: Vec<NewModule> = (plan.modules.iter())
                .filter(|m| !is_compiled(engine, &m.bytes))
                .cloned()
                .collect();
            if uncompiled.is_empty() || tries == dylink_core::drive::UNLOCKED_COMPILES {
                return match self.run_plan(&mut store, core, plan)? {
                    Outcome::Loaded(m) => Ok(m),
                    other => unreachable!("dlopen yields a module, not {other:?}"),
                };
            }
            core.abort(plan);
            drop(core);
            for m in &uncompiled {
                compile(engine, &m.bytes, &m.path)?;
            }
            tries += 1;
        }
    }

    /// `dlsym(handle, name)` from the host (`caller` matters for `RTLD_NEXT`).
    pub fn dlsym(
        &self,
        mut store: impl AsContextMut<Data = T>,
        handle: Handle,
        name: &str,
        caller: Option<ModuleId>,
    ) -> Result<SymbolValue, Error> {
        let mut core = lock(&self.shared.core);
        self.catch_up_locked(&mut store, &mut core)?;
        let group = self.id;
        match core.plan_dlsym(handle, name, caller, group)? {
            dylink_core::DlsymAnswer::Ready(v) => Ok(v),
            dylink_core::DlsymAnswer::Plan(plan) => match self.run_plan(&mut store, core, plan)? {
                Outcome::Symbol(v) => Ok(v),
                other => unreachable!("dlsym yields a symbol, not {other:?}"),
            },
        }
    }

    /// `dlclose(handle)` from the host: runs destructors and unloads what nothing else needs.
    pub fn dlclose(
        &self,
        mut store: impl AsContextMut<Data = T>,
        handle: ModuleId,
    ) -> Result<(), Error> {
        // Destructors first, in a plan of their own run like constructors (they may call the
        // dl functions); then the dlclose is planned again and unloads.
        loop {
            let mut destructors = false;
            self.plan_and_run(&mut store, |core, group| {
                let plan = core.plan_dlclose(handle, group)?;
                destructors = plan.kind() == PlanKind::Destructors;
                Ok(plan)
            })?;
            if !destructors {
                break;
            }
        }
        self.forget_unloaded(&mut lock(&self.shared.core));
        Ok(())
    }

    /// Allocate `count` consecutive function-pointer slots (table slots) for closures made
    /// at run time, as libffi-style callers do; returns the first. The slots are the same in
    /// every thread; they hold `ref.null` (calling one traps) until [`Program::set_closure`].
    pub fn alloc_closures(
        &self,
        mut store: impl AsContextMut<Data = T>,
        count: u64,
    ) -> Result<u64, Error> {
        match self.plan_and_run(&mut store, |core, group| core.plan_closures(count, group))? {
            Outcome::Slots(first, _) => Ok(first.0),
            other => unreachable!("allocating closures yields slots, not {other:?}"),
        }
    }

    /// Point closure slot `slot` at `target`: a loaded module's export
    /// (`SlotValue::Export`, with a handle from [`Program::dlopen`]), one of the embedder's
    /// host functions (`SlotValue::Host`), or nothing (`SlotValue::Null`). Other threads see
    /// it once they catch up (at their next dl call, wait, or [`Program::catch_up`]). A slot
    /// that is not a live closure slot is an error, and nothing changes.
    pub fn set_closure(
        &self,
        mut store: impl AsContextMut<Data = T>,
        slot: u64,
        target: SlotValue,
    ) -> Result<(), Error> {
        self.plan_and_run(&mut store, |core, group| {
            core.plan_set_closure(dylink_core::Slot(slot), target, group)
        })
        .map(|_| ())
    }

    /// Free closure slots `[first, first + count)`: they are nulled in every thread and
    /// reused by later allocations. Freeing a slot that is not a live closure slot is an
    /// error, and nothing changes.
    pub fn free_closures(
        &self,
        mut store: impl AsContextMut<Data = T>,
        first: u64,
        count: u64,
    ) -> Result<(), Error> {
        self.plan_and_run(&mut store, |core, group| {
            core.plan_free_closures(dylink_core::Slot(first), count, group)
        })
        .map(|_| ())
    }

    /// A host dl operation: under the core lock, catch this group up, plan with `plan`, and
    /// apply and commit the plan (or roll it back).
    fn plan_and_run(
        &self,
        mut store: impl AsContextMut<Data = T>,
        plan: impl FnOnce(&Core, dylink_core::GroupId) -> Result<dylink_core::Plan, dylink_core::Error>,
    ) -> Result<Outcome, Error> {
        let mut core = lock(&self.shared.core);
        self.catch_up_locked(&mut store, &mut core)?;
        let plan = plan(&core, self.id)?;
        self.run_plan(&mut store, core, plan)
    }

    /// `dladdr(value)`: the module and nearest symbol of a data address or function pointer.
    pub fn dladdr(&self, value: u64) -> Option<AddrInfo> {
        lock(&self.shared.core).dladdr(value)
    }

    /// The function a function pointer (table slot) designates.
    pub fn func_at(&self, mut store: impl AsContextMut<Data = T>, slot: u64) -> Option<Func> {
        let table = self.table();
        table.get(&mut store, slot)?.as_func().flatten().copied()
    }

    /// Read an integer global of the main module, or the value a data symbol holds.
    pub fn read_memory(
        &self,
        store: impl AsContextMut<Data = T>,
        addr: u64,
        buf: &mut [u8],
    ) -> Result<(), String> {
        self.memory().read(store, addr, buf)
    }
}

/// One plan's application in one store: what [`dylink_core::drive::drive`] drives.
struct Driver<'p, T: 'static, S> {
    program: &'p Program<T>,
    store: S,
    undo: apply::Undo,
}

impl<T: Send + 'static, S: AsContextMut<Data = T>> Applier for Driver<'_, T, S> {
    type Error = Error;

    fn group(&self) -> GroupId {
        self.program.id
    }

    fn compile(&mut self, m: &NewModule) -> Result<(), Error> {
        tracing::debug!(target: "dylink::libs", "{} => {} ({} bytes)", m.name, m.path, m.bytes.len());
        let module = compile(&self.program.shared.engine, &m.bytes, &m.path)?;
        lock(&self.program.shared.compiled).insert(m.id, module);
        Ok(())
    }

    fn apply(&mut self, ops: &[Op], ctx: &ApplyCtx<'_>) -> Result<(), Error> {
        if ctx.phase != Phase::Structural {
            return apply::apply(
                self.program,
                &mut self.store,
                ops,
                ctx,
                &mut apply::Undo::default(),
            );
        }
        // Guest code run by these ops (none but a non-load plan's calls) may not re-enter.
        lock(&self.program.group).busy = true;
        let applied = apply::apply(self.program, &mut self.store, ops, ctx, &mut self.undo);
        lock(&self.program.group).busy = false;
        applied
    }

    fn committed(&mut self) {
        // A thread woken from a wait or about to call indirectly must catch up.
        self.program.committed();
    }

    fn rollback(&mut self) {
        apply::rollback(
            self.program,
            &mut self.store,
            std::mem::take(&mut self.undo),
        );
    }

    fn warnings(&mut self, diagnostics: &[dylink_core::Diagnostic]) {
        lock(&self.program.shared.warnings).extend_from_slice(diagnostics);
    }
}

/// Integer bits of a value.
pub(crate) fn val_bits(v: &Val) -> u64 {
    match v {
        Val::I32(x) => *x as u32 as u64,
        Val::I64(x) => *x as u64,
        _ => 0,
    }
}
