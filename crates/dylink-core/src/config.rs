//! Configuration, the embedder's two traits, and small public value types.

use crate::index::{Addr, ModuleId, Slot};
use crate::path::SearchConfig;
use crate::prelude::*;

/// When function imports are bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BindMode {
    /// A function nothing defines yet is bound to a trampoline whose slot traps naming the
    /// symbol until a library loaded later with `RTLD_GLOBAL` defines it (glibc's default).
    #[default]
    Lazy,
    /// Every function must be defined at load time (`LD_BIND_NOW`, `RTLD_NOW`).
    Now,
}

/// Linker configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Library search.
    pub search: SearchConfig,
    /// Binding mode for the startup load; `dlopen` flags can ask for `Now` per call.
    pub bind: BindMode,
    /// Bytes of stack for a PIE main (16-byte aligned).
    pub stack_size: u64,
    /// Bytes of heap the initial memory holds after `__heap_base` (PIE main).
    pub initial_heap: u64,
    /// Lowest address the main module's data may use: addresses below stay unused, so a
    /// null-pointer dereference does not hit data. Must be non-zero.
    pub global_base: u64,
    /// Libraries loaded right after the main module, before its NEEDED (`LD_PRELOAD`).
    pub preload: Vec<String>,
    /// Bytes reserved per instance group for the text `dlerror` returns.
    pub dlerror_size: u64,
    /// Bytes reserved per instance group for the names `dladdr` returns.
    pub dladdr_size: u64,
    /// Rewrite a module's calls to a lazily bound import into one indirect call through the
    /// function's table slot, instead of a call to its trampoline (see [`crate::direct`]).
    pub direct_lazy_calls: bool,
    /// Keep each startup plan in the [`module_cache`](Self::module_cache) with what it was
    /// made from, and hand a later startup of the same program a copy of it once every file
    /// and host name it depended on reads the same ([`ModuleCache`](crate::ModuleCache)).
    pub reuse_startup_plans: bool,
    /// Where readings of modules are kept by content, so the same bytes are read once
    /// ([`ModuleCache`](crate::ModuleCache)); `None` reads every module it is handed. The
    /// adapters set [`ModuleCache::process`](crate::ModuleCache::process).
    pub module_cache: Option<crate::ModuleCache>,
    /// Threads that read (parse) the files of one level of a NEEDED tree at once
    /// ([`crate::workers`]); `None` reads them on the planning thread. The plan is the same
    /// either way. The adapters set `dylink-fs`'s `Threads`.
    pub workers: Option<crate::Workers>,
}

impl Config {
    /// Bytes of linker text (dlerror then dladdr) each instance group reserves.
    pub fn dl_text_size(&self) -> u64 {
        self.dlerror_size + self.dladdr_size
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            search: SearchConfig::default(),
            bind: BindMode::Lazy,
            stack_size: 1 << 20,
            initial_heap: 1 << 20,
            global_base: 1024,
            preload: Vec::new(),
            dlerror_size: 256,
            dladdr_size: 1024,
            direct_lazy_calls: true,
            reuse_startup_plans: true,
            module_cache: None,
            workers: None,
        }
    }
}

/// Where module bytes come from. The embedder implements it: a confined host directory, an
/// in-memory map, a package. Paths are normalised virtual paths inside the configured roots.
pub trait ModuleSource {
    /// The bytes of the file at `path`; `Ok(None)` when there is none; `Err` with a message
    /// when it exists but cannot be read (or is refused, such as a symlink leaving the root).
    fn read(&self, path: &str) -> Result<Option<Arc<[u8]>>, String>;
}

/// An in-memory module source: path → bytes.
#[derive(Clone, Debug, Default)]
pub struct MemorySource {
    files: HashMap<String, Arc<[u8]>>,
}

impl MemorySource {
    /// An empty source.
    pub fn new() -> Self {
        Self::default()
    }
    /// Add a file at a path (normalised against `/`).
    pub fn insert(&mut self, path: &str, bytes: impl Into<Arc<[u8]>>) {
        let path = crate::path::normalize("/", path).unwrap_or_else(|| path.into());
        self.files.insert(path, bytes.into());
    }
}

/// A shared source reads as the source it shares (so an embedder can hand the same source to
/// every program it loads without copying it).
impl<S: ModuleSource + ?Sized> ModuleSource for Arc<S> {
    fn read(&self, path: &str) -> Result<Option<Arc<[u8]>>, String> {
        (**self).read(path)
    }
}

impl ModuleSource for MemorySource {
    fn read(&self, path: &str) -> Result<Option<Arc<[u8]>>, String> {
        Ok(self.files.get(path).cloned())
    }
}

/// Which `(namespace, name)` imports the embedder's host defines (its WASI, its own
/// functions). The core binds an import to the host only when no loaded module defines it.
pub trait HostNames {
    /// Whether the host defines `module.name`.
    fn defines(&self, module: &str, name: &str) -> bool;
}

/// A host that defines nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHost;

impl HostNames for NoHost {
    fn defines(&self, _: &str, _: &str) -> bool {
        false
    }
}

/// A host that defines exactly the listed names.
#[derive(Clone, Debug, Default)]
pub struct HostSet {
    names: HashSet<(String, String)>,
}

impl HostSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }
    /// Declare `module.name`.
    pub fn insert(&mut self, module: &str, name: &str) {
        self.names.insert((module.into(), name.into()));
    }
}

impl HostNames for HostSet {
    fn defines(&self, module: &str, name: &str) -> bool {
        self.names.contains(&(module.to_string(), name.to_string()))
    }
}

/// What the adapter reports about the engine's current state when asking for a run-time plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    /// Current linear memory size in bytes (the guest may have grown it).
    pub memory_bytes: u64,
}

/// `dlopen` flags with the values of wasi-libc's `<dlfcn.h>`.
pub mod rtld {
    /// Bind lazily.
    pub const LAZY: i32 = 1;
    /// Bind every function now.
    pub const NOW: i32 = 2;
    /// Only return a handle if already loaded.
    pub const NOLOAD: i32 = 4;
    /// Add the library and its dependencies to the global scope.
    pub const GLOBAL: i32 = 256;
    /// Keep the library's symbols out of the global scope (also the default when neither
    /// GLOBAL nor LOCAL is given, as glibc does).
    pub const LOCAL: i32 = 8;
    /// Never unload.
    pub const NODELETE: i32 = 4096;
}

/// The handle argument of `dlsym`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handle {
    /// `RTLD_DEFAULT` (0): the global scope, then the caller's own scope.
    Default,
    /// `RTLD_NEXT` (-1): the global scope after the caller.
    Next,
    /// A handle `dlopen` returned.
    Module(ModuleId),
}

impl Handle {
    /// The guest-visible value of a module handle: never 0 or -1.
    pub fn value(id: ModuleId) -> u64 {
        id.0 as u64 + 1
    }

    /// Decode a guest value (`ptr_bits` 32 or 64).
    pub fn from_value(v: u64, memory64: bool) -> Self {
        let all_ones = if memory64 { u64::MAX } else { u32::MAX as u64 };
        match v {
            0 => Self::Default,
            v if v == all_ones => Self::Next,
            v => Self::Module(ModuleId((v - 1).min(u32::MAX as u64) as u32)),
        }
    }
}

/// What `dlsym` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymbolValue {
    /// A function: its canonical table slot (the C function pointer).
    Func(Slot),
    /// A data symbol's absolute address.
    Data(Addr),
    /// A thread-local symbol's address in the asking group's TLS block.
    Tls(Addr),
}

impl SymbolValue {
    /// The pointer value the guest sees.
    pub fn as_u64(self) -> u64 {
        match self {
            Self::Func(s) => s.0,
            Self::Data(a) | Self::Tls(a) => a.0,
        }
    }
}
