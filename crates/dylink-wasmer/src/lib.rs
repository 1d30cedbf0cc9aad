//! Run clang/wasm-ld `dylink.0` programs — a main module and its shared libraries — on plain
//! [wasmer] (no WASIX, no LLVM fork): the same programs and the same results as
//! `dylink-wasmtime`, because every decision is made by [`dylink_core`] and this crate only
//! applies its plans.
//!
//! # Adding dynamic linking to an embedding
//!
//! ```no_run
//! use dylink_wasmer::{DirSource, Options, Program};
//! use wasmer::{Imports, Store};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut store = Store::default();
//! let imports = Imports::new(); // your WASI and host functions go here, as usual
//!
//! let mut libs = DirSource::new();
//! libs.mount("/lib", "path/to/libs")?;
//! let options = Options::dirs(libs);
//!
//! let main = std::fs::read("path/to/main.wasm")?;
//! let program = Program::load(&mut store, &imports, options, "/main.wasm", &main)?;
//! let run = program.main_func(&mut store, "run").expect("main exports run");
//! run.call(&mut store, &[])?;
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
use wasmer::{
    AsStoreMut, AsStoreRef, Engine, Extern, Function, Global, Imports, Instance, Module,
    RuntimeError, Store, Table, Tag, Value,
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
    /// wasmer failed while dylink applied a plan.
    Engine {
        /// What dylink was doing.
        context: String,
        /// wasmer's message.
        message: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Core(e) => write!(f, "{e}"),
            Error::Engine { context, message } => write!(f, "{context}: {message}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Core(e) => Some(e),
            Error::Engine { .. } => None,
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
    /// Called once, when every module of the program is instantiated and relocated but
    /// before any constructor runs: set up host state that guest code needs from its first
    /// instruction (wasmer-wasix's `WasiEnv::initialize` with the main instance).
    pub before_init: Option<BeforeInit>,
    /// Compiles a library's bytes in place of `Module::new` (which it should call for bytes
    /// it has not seen): a cache of compiled code on disk, say (wasmer-wasix's
    /// `FileSystemCache`, as the `dylink` command uses it). The process-wide cache of
    /// compiled modules stays in front of it: each distinct module reaches it once per
    /// engine. Its error is reported as the compilation's.
    pub compile_with: Option<CompileWith>,
}

/// See [`Options::compile_with`].
pub type CompileWith = Arc<dyn Fn(&Engine, &[u8]) -> Result<Module, String> + Send + Sync>;

/// See [`Options::before_init`].
pub type BeforeInit =
    Box<dyn FnOnce(&mut wasmer::StoreMut<'_>, &Program) -> Result<(), String> + Send>;

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
            before_init: None,
            compile_with: None,
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

/// A thread's own host side, made on that thread by the function given to
/// [`Program::enable_threads_with`]: wasmer host functions belong to one store, so a thread
/// whose modules import from the host (WASI, say) needs imports made in its store.
pub struct ThreadHost {
    /// Serves the thread's `Binding::Host` imports in place of the program's.
    pub imports: Imports,
    /// Runs once the thread's group is built, before `wasi_thread_start` (a WASI
    /// environment learning the thread's memory, say).
    pub before_start: Option<BeforeStart>,
}

/// See [`ThreadHost::before_start`].
pub type BeforeStart = Box<dyn FnOnce(&mut Store, &Program) -> Result<(), String>>;

impl fmt::Debug for ThreadHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadHost")
            .field("before_start", &self.before_start.is_some())
            .finish_non_exhaustive()
    }
}

/// Makes a thread's host side in its new store.
type MakeThreadHost = Arc<dyn Fn(&mut Store) -> Result<ThreadHost, String> + Send + Sync>;

/// Told how each spawned thread ended: its id and `wasi_thread_start`'s result.
type ThreadExit = Arc<dyn Fn(u32, Result<(), RuntimeError>) + Send + Sync>;

/// What every instance group of a program shares.
pub(crate) struct Shared {
    engine: Engine,
    core: Mutex<Core>,
    source: Arc<dyn ModuleSource + Send + Sync>,
    host: Imports,
    host_names: HostSet,
    compiled: Mutex<IdMap<ModuleId, Module>>,
    /// The shared memory, when the program has one, for other groups' stores.
    shared_memory: Mutex<Option<wasmer::SharedMemory>>,
    memory_cell: MemoryCell,
    warnings: Mutex<Vec<dylink_core::Diagnostic>>,
    host_calls: AtomicU64,
    before_init: Mutex<Option<BeforeInit>>,
    /// [`Options::compile_with`].
    compile_with: Option<CompileWith>,
    /// `wasi.thread-spawn` starts threads (see `enable_threads`).
    threads: std::sync::atomic::AtomicBool,
    /// Makes each spawned thread's host imports (see `enable_threads_with`).
    thread_host: Mutex<Option<MakeThreadHost>>,
    /// Told how each spawned thread ended (see `on_thread_exit`).
    thread_exit: Mutex<Option<ThreadExit>>,
    /// Plans committed through this program (bumped right after each commit, before any
    /// guest call): a group whose `Group::seen` equals it has nothing to catch up.
    pub(crate) commits: AtomicU64,
    /// The commit counter's address in the shared memory, once the startup plan set it.
    counter: std::sync::OnceLock<u64>,
    /// The next wasi-threads thread id.
    next_tid: std::sync::atomic::AtomicU32,
}

static COMPILATIONS: AtomicU64 = AtomicU64::new(0);

/// How many modules this process has compiled, or had [`Options::compile_with`] make (each
/// distinct module once per engine).
pub fn compilations() -> u64 {
    COMPILATIONS.load(Ordering::Relaxed)
}

/// Compiled modules by the bytes compiled, with the engine each was compiled on, shared
/// by every program. Modules read through the core's module cache arrive as the same
/// allocation every time and are found without hashing their bytes. Bounded
/// ([`BoundedBytesMap`]'s default: 256 MiB of module bytes, 4,096 modules), the oldest
/// leaving first; an entry keeps its engine alive while it is held here.
fn compile_cache() -> &'static Mutex<BoundedBytesMap<(Engine, Module)>> {
    static CACHE: std::sync::OnceLock<Mutex<BoundedBytesMap<(Engine, Module)>>> =
        std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Drop every module compiled and kept for reuse, on every engine: after dropping an
/// engine, say, to release its code at once. Loaded programs keep what they use.
pub fn clear_compiled_modules() {
    lock(compile_cache()).clear();
}

/// How many distinct modules are compiled on `engine` and kept for reuse.
pub fn compiled_modules(engine: &Engine) -> usize {
    lock(compile_cache())
        .values()
        .filter(|(e, _)| e.id() == engine.id())
        .count()
}

/// Whether `bytes` are compiled on `engine` and kept for reuse.
pub(crate) fn is_compiled(engine: &Engine, bytes: &Arc<[u8]>) -> bool {
    (lock(compile_cache()).get(bytes, |(e, _)| e.id() == engine.id())).is_some()
}

/// Compile `bytes`, or return the module compiled earlier from the same bytes on `engine`.
/// The cache is not locked while compiling (a large module takes seconds): a thread loading
/// something compiled already does not wait for another's compilation. Two threads
/// compiling the same bytes at once both compile; the first to finish is kept and both get
/// it, so a module has one compiled copy per engine.
/// `with` compiles in place of `Module::new` ([`Options::compile_with`]).
pub(crate) fn compile(
    engine: &Engine,
    bytes: &Arc<[u8]>,
    what: &str,
    with: Option<&CompileWith>,
) -> Result<Module, Error> {
    let same = |(e, _): &(Engine, Module)| e.id() == engine.id();
    if let Some((_, m)) = lock(compile_cache()).get(bytes, same) {
        return Ok(m.clone());
    }
    let compiled = match with {
        Some(with) => with(engine, bytes),
        None => Module::new(engine, &bytes[..]).map_err(|e| e.to_string()),
    };
    let module = compiled.map_err(|message| Error::Engine {
        context: format!("compiling {what}"),
        message,
    })?;
    COMPILATIONS.fetch_add(1, Ordering::Relaxed);
    let mut cache = lock(compile_cache());
    if let Some((_, m)) = cache.get(bytes, same) {
        return Ok(m.clone());
    }
    cache.insert(bytes.clone(), (engine.clone(), module.clone()));
    Ok(module)
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
    instances: IdMap<ModuleId, Instance>,
    /// Generated modules, each with the trampoline table it owns.
    generated: IdMap<GenId, (Instance, Option<Table>)>,
    dl_error: Option<String>,
    busy: bool,
    /// `Shared::commits` when this group last caught up from a wait.
    seen: u64,
    /// The group's `dylink.seen` global, made when a module first imports it.
    seen_global: Option<Global>,
    /// This group's host imports, when they are not the program's (another store's).
    host: Option<Imports>,
}

impl Group {
    /// The instance of `module`, or an error saying which module is missing.
    pub(crate) fn instance(&self, module: ModuleId) -> Result<&Instance, Error> {
        self.instances.get(module).ok_or_else(|| Error::Engine {
            context: "looking up an instance".into(),
            message: format!("{module} is not instantiated in this group"),
        })
    }
    fn global(&self, g: GlobalId) -> Option<Global> {
        self.globals.get(g.index()).cloned().flatten()
    }
    fn tag(&self, t: TagId) -> Option<Tag> {
        self.tags.get(t.index()).cloned().flatten()
    }
}

/// A loaded program: its main module, libraries, and the state `dlopen` works on.
#[derive(Clone)]
pub struct Program {
    shared: Arc<Shared>,
    group: Arc<Mutex<Group>>,
    /// The group's id (also in `group`, kept here so hot paths take no lock for it).
    id: GroupId,
}

impl fmt::Debug for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Program")
            .field("group", &self.id)
            .finish_non_exhaustive()
    }
}

impl Program {
    /// Load the main module `main` (its path, used for `$ORIGIN` and messages, is `path`),
    /// the preloads and its NEEDED tree into `store`. Imports no module defines come from
    /// `host` (WASI, your functions). Runs relocations and constructors; a command's `_start`
    /// is left for you to call.
    pub fn load(
        store: &mut impl AsStoreMut,
        host: &Imports,
        options: Options,
        path: &str,
        main: &[u8],
    ) -> Result<Self, Error> {
        let mut host_names = HostSet::new();
        for (module, name, _) in host.iter() {
            host_names.insert(module, name);
        }
        let engine = store.as_store_ref().engine().clone();
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
            host_calls: AtomicU64::new(0),
            before_init: Mutex::new(options.before_init),
            compile_with: options.compile_with,
            threads: std::sync::atomic::AtomicBool::new(false),
            thread_host: Mutex::new(None),
            thread_exit: Mutex::new(None),
            commits: AtomicU64::new(0),
            counter: std::sync::OnceLock::new(),
            next_tid: std::sync::atomic::AtomicU32::new(1),
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
        program.run_plan(store, core, plan)?;
        if let Some(addr) = lock(&program.shared.core).commit_counter() {
            let _ = program.shared.counter.set(addr);
        }
        Ok(program)
    }

    /// Tell every group that a plan was committed: the count the wait safe points read,
    /// and the commit counter in shared memory the indirect-call safe points read.
    fn committed(&self, store: &impl AsStoreRef) {
        self.shared.commits.fetch_add(1, Ordering::Release);
        if let Some(addr) = self.shared.counter.get() {
            let memory = lock(&self.group).memory.clone();
            if let Some(m) = memory {
                m.counter_add(store, *addr);
            }
        }
    }

    /// The commit counter's value (0 before the program has one).
    pub(crate) fn counter(&self, store: &impl AsStoreRef) -> u32 {
        let memory = lock(&self.group).memory.clone();
        match (self.shared.counter.get(), memory) {
            (Some(addr), Some(m)) => m.counter_load(store, *addr).unwrap_or(0),
            _ => 0,
        }
    }

    /// Apply a plan in this program's group and commit it (see [`dylink_core::drive`]): on
    /// failure the plan is aborted and what was applied undone; a load's constructors run
    /// after the commit without the linker lock, so they may `dlopen`.
    pub(crate) fn run_plan(
        &self,
        store: &mut impl AsStoreMut,
        core: MutexGuard<'_, Core>,
        plan: Plan,
    ) -> Result<Outcome, Error> {
        let mut driver = Driver {
            program: self,
            store: store.as_store_mut(),
            undo: apply::Undo::default(),
        };
        dylink_core::drive::drive(core, || lock(&self.shared.core), plan, &mut driver)
    }

    /// A new instance group for another thread: every loaded module instantiated in `store`
    /// (a fresh store on the same engine) over the same shared memory, with the same table
    /// slots and globals, relocations and constructors not re-run, and its own TLS blocks.
    /// The program must use a shared memory (built with `-pthread`).
    pub fn new_group(&self, store: &mut impl AsStoreMut) -> Result<Program, Error> {
        self.new_group_inner(store, None)
    }

    /// [`Program::new_group`] for a group whose modules' host imports come from `imports`,
    /// made in `store` (wasmer host functions cannot cross stores; without this, a group
    /// in another store can only bind host imports that need no store of their own).
    pub fn new_group_with_imports(
        &self,
        store: &mut impl AsStoreMut,
        imports: Imports,
    ) -> Result<Program, Error> {
        self.new_group_inner(store, Some(imports))
    }

    fn new_group_inner(
        &self,
        store: &mut impl AsStoreMut,
        imports: Option<Imports>,
    ) -> Result<Program, Error> {
        let core = lock(&self.shared.core);
        let facts = Facts {
            memory_bytes: core.memory_bytes(),
        };
        let plan = core.plan_group(facts)?;
        let id = plan.group();
        let group = Arc::new(Mutex::new(Group {
            host: imports,
            ..Group::default()
        }));
        let program = Program {
            shared: self.shared.clone(),
            group,
            id,
        };
        program.run_plan(store, core, plan)?;
        Ok(program)
    }

    /// Let the program start threads through `wasi.thread-spawn` (wasi-threads): each new
    /// thread gets a store on the program's engine, its own instance group, and runs the
    /// main module's `wasi_thread_start(tid, arg)`. Without this, `thread-spawn` returns -1.
    pub fn enable_threads(&self) {
        self.shared.threads.store(true, Ordering::Relaxed);
    }

    /// [`Program::enable_threads`] for programs whose modules import from the host: `make`
    /// runs on each new thread, in its new store, and returns that thread's imports (and
    /// what to run before `wasi_thread_start`). An error ends that thread before it starts.
    pub fn enable_threads_with(
        &self,
        make: impl Fn(&mut Store) -> Result<ThreadHost, String> + Send + Sync + 'static,
    ) {
        *lock(&self.shared.thread_host) = Some(Arc::new(make));
        self.enable_threads();
    }

    /// Be told how each thread started by `wasi.thread-spawn` ended: its thread id and the
    /// result of its `wasi_thread_start` (a trap, or a WASI exit the embedder recognises).
    /// Without this, a thread that traps is logged (`dylink::threads`) and the others go on.
    pub fn on_thread_exit(
        &self,
        f: impl Fn(u32, Result<(), RuntimeError>) + Send + Sync + 'static,
    ) {
        *lock(&self.shared.thread_exit) = Some(Arc::new(f));
    }

    /// Apply, in this group's `store`, what other groups committed since this group last
    /// caught up (libraries loaded or unloaded, function-pointer slots written). Call it
    /// before running code another thread may have loaded.
    pub fn catch_up(&self, store: &mut impl AsStoreMut) -> Result<(), Error> {
        let mut core = lock(&self.shared.core);
        self.catch_up_locked(store, &mut core)
    }

    /// [`Program::catch_up`] with the core lock already held. Every dl operation starts
    /// with it, so a group plans and commits against a state it has applied.
    fn catch_up_locked(
        &self,
        store: &mut impl AsStoreMut,
        core: &mut MutexGuard<'_, Core>,
    ) -> Result<(), Error> {
        let mut driver = Driver {
            program: self,
            store: store.as_store_mut(),
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

    pub(crate) fn facts(&self, store: &impl AsStoreRef) -> Facts {
        let g = lock(&self.group);
        Facts {
            memory_bytes: g.memory.as_ref().map_or(0, |m| m.size_bytes(store)),
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
            .clone()
    }

    /// An export of the main module.
    pub fn main_export(&self, name: &str) -> Option<Extern> {
        self.main_instance().exports.get_extern(name).cloned()
    }

    /// A function exported by the main module.
    pub fn main_func(&self, _store: &mut impl AsStoreMut, name: &str) -> Option<Function> {
        self.main_instance()
            .exports
            .get_function(name)
            .ok()
            .cloned()
    }

    /// The instance of a loaded module.
    pub fn instance(&self, module: ModuleId) -> Option<Instance> {
        lock(&self.group).instances.get(module).cloned()
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
            .clone()
            .expect("a loaded program has a table")
    }

    /// Run `f` with the linker core (for reports: layout, modules).
    pub fn with_core<R>(&self, f: impl FnOnce(&Core) -> R) -> R {
        f(&lock(&self.shared.core))
    }

    /// The linker's warnings so far (duplicate definitions, weak symbols left undefined, …).
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
        store: &mut impl AsStoreMut,
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
        store: &mut impl AsStoreMut,
        name: Option<&str>,
        flags: i32,
        caller: Option<ModuleId>,
    ) -> Result<ModuleId, Error> {
        let mut tries = 0;
        loop {
            let mut core = lock(&self.shared.core);
            self.catch_up_locked(store, &mut core)?;
            let group = self.id;
            // A library already loaded: a reference more, no plan to run.
            if let Some(m) = name.and_then(|n| core.dlopen_loaded(n, flags, group)) {
                return Ok(m);
            }
            let facts = self.facts(store);
            let plan = core.plan_dlopen(
                name,
                flags,
                caller,
                group,
                facts,
                &*self.shared.source,
                &self.shared.host_names,
            )?;
            let engine = store.as_store_ref().engine().clone();
            let uncompiled: Vec<NewModule> = (plan.modules.iter())
                .filter(|m| !is_compiled(&engine, &m.bytes))
                .cloned()
                .collect();
            if uncompiled.is_empty() || tries == dylink_core::drive::UNLOCKED_COMPILES {
                return match self.run_plan(store, core, plan)? {
                    Outcome::Loaded(m) => Ok(m),
                    other => unreachable!("dlopen yields a module, not {other:?}"),
                };
            }
            core.abort(plan);
            drop(core);
            for m in &uncompiled {
                compile(
                    &engine,
                    &m.bytes,
                    &m.path,
                    self.shared.compile_with.as_ref(),
                )?;
            }
            tries += 1;
        }
    }

    /// `dlsym(handle, name)` from the host (`caller` matters for `RTLD_NEXT`).
    pub fn dlsym(
        &self,
        store: &mut impl AsStoreMut,
        handle: Handle,
        name: &str,
        caller: Option<ModuleId>,
    ) -> Result<SymbolValue, Error> {
        let mut core = lock(&self.shared.core);
        self.catch_up_locked(store, &mut core)?;
        let group = self.id;
        match core.plan_dlsym(handle, name, caller, group)? {
            dylink_core::DlsymAnswer::Ready(v) => Ok(v),
            dylink_core::DlsymAnswer::Plan(plan) => match self.run_plan(store, core, plan)? {
                Outcome::Symbol(v) => Ok(v),
                other => unreachable!("dlsym yields a symbol, not {other:?}"),
            },
        }
    }

    /// `dlclose(handle)` from the host: runs destructors and unloads what nothing else needs.
    pub fn dlclose(&self, store: &mut impl AsStoreMut, handle: ModuleId) -> Result<(), Error> {
        // Destructors first, in a plan of their own run like constructors (they may call the
        // dl functions); then the dlclose is planned again and unloads.
        loop {
            let mut destructors = false;
            self.plan_and_run(store, |core, group| {
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
    pub fn alloc_closures(&self, store: &mut impl AsStoreMut, count: u64) -> Result<u64, Error> {
        match self.plan_and_run(store, |core, group| core.plan_closures(count, group))? {
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
        store: &mut impl AsStoreMut,
        slot: u64,
        target: SlotValue,
    ) -> Result<(), Error> {
        self.plan_and_run(store, |core, group| {
            core.plan_set_closure(dylink_core::Slot(slot), target, group)
        })
        .map(|_| ())
    }

    /// Free closure slots `[first, first + count)`: they are nulled in every thread and
    /// reused by later allocations. Freeing a slot that is not a live closure slot is an
    /// error, and nothing changes.
    pub fn free_closures(
        &self,
        store: &mut impl AsStoreMut,
        first: u64,
        count: u64,
    ) -> Result<(), Error> {
        self.plan_and_run(store, |core, group| {
            core.plan_free_closures(dylink_core::Slot(first), count, group)
        })
        .map(|_| ())
    }

    /// A host dl operation: under the core lock, catch this group up, plan with `plan`, and
    /// apply and commit the plan (or roll it back).
    fn plan_and_run(
        &self,
        store: &mut impl AsStoreMut,
        plan: impl FnOnce(&Core, dylink_core::GroupId) -> Result<dylink_core::Plan, dylink_core::Error>,
    ) -> Result<Outcome, Error> {
        let mut core = lock(&self.shared.core);
        self.catch_up_locked(store, &mut core)?;
        let plan = plan(&core, self.id)?;
        self.run_plan(store, core, plan)
    }

    /// `dladdr(value)`: the module and nearest symbol of a data address or function pointer.
    pub fn dladdr(&self, value: u64) -> Option<AddrInfo> {
        lock(&self.shared.core).dladdr(value)
    }

    /// The function a function pointer (table slot) designates.
    pub fn func_at(&self, store: &mut impl AsStoreMut, slot: u64) -> Option<Function> {
        let table = self.table();
        match table.get(store, u32::try_from(slot).ok()?)? {
            Value::FuncRef(f) => f,
            _ => None,
        }
    }

    /// Copy bytes out of linear memory.
    pub fn read_memory(
        &self,
        store: &impl AsStoreRef,
        addr: u64,
        buf: &mut [u8],
    ) -> Result<(), String> {
        self.memory().read(store, addr, buf)
    }
}

/// One plan's application in one store: what [`dylink_core::drive::drive`] drives.
struct Driver<'p, 's> {
    program: &'p Program,
    store: wasmer::StoreMut<'s>,
    undo: apply::Undo,
}

impl Applier for Driver<'_, '_> {
    type Error = Error;

    fn group(&self) -> GroupId {
        self.program.id
    }

    fn compile(&mut self, m: &NewModule) -> Result<(), Error> {
        tracing::debug!(target: "dylink::libs", "{} => {} ({} bytes)", m.name, m.path, m.bytes.len());
        let shared = &self.program.shared;
        let module = compile(
            &shared.engine,
            &m.bytes,
            &m.path,
            shared.compile_with.as_ref(),
        )?;
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
        lock(&self.program.group).busy = true;
        let applied = apply::apply(self.program, &mut self.store, ops, ctx, &mut self.undo);
        lock(&self.program.group).busy = false;
        applied
    }

    fn rollback(&mut self) {
        apply::rollback(
            self.program,
            &mut self.store,
            std::mem::take(&mut self.undo),
        );
    }

    fn committed(&mut self) {
        // A thread woken from a wait or about to call indirectly must catch up.
        self.program.committed(&self.store);
    }

    fn before_guest_calls(&mut self) -> Result<(), Error> {
        let Some(hook) = lock(&self.program.shared.before_init).take() else {
            return Ok(());
        };
        hook(&mut self.store, self.program).map_err(|message| Error::Engine {
            context: "preparing the host before constructors run".into(),
            message,
        })
    }

    fn warnings(&mut self, diagnostics: &[dylink_core::Diagnostic]) {
        lock(&self.program.shared.warnings).extend_from_slice(diagnostics);
    }
}

/// Integer bits of a value.
pub(crate) fn val_bits(v: &Value) -> u64 {
    match v {
        Value::I32(x) => *x as u32 as u64,
        Value::I64(x) => *x as u64,
        _ => 0,
    }
}
