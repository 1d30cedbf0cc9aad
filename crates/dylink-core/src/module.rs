//! Reading a module: the `dylink.0` section, every import classified by the role the linker
//! plays for it, every export with its type or unrelocated constant value, and the init
//! functions the linker must call. Malformed input of any kind is an [`Error`], never a panic.

use core::fmt;
use core::hash::BuildHasher;

use smallvec::SmallVec;
use wasmparser::{
    BinaryReader, Chunk, CompositeInnerType, Dylink0Subsection, ExternalKind, KnownCustom,
    Operator, Parser, Payload, TypeRef,
};

use crate::error::{ParseError as Error, Warning};
use crate::prelude::*;

pub use crate::name::Name;

/// A value type, as far as the linker needs to tell types apart.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ValType {
    /// `i32`
    I32,
    /// `i64`
    I64,
    /// `f32`
    F32,
    /// `f64`
    F64,
    /// `v128`
    V128,
    /// `funcref`
    FuncRef,
    /// `externref`
    ExternRef,
    /// `exnref`
    ExnRef,
    /// Any other reference type (GC proposal); compared only by kind.
    OtherRef,
}

impl ValType {
    fn from_wasm(ty: wasmparser::ValType) -> Self {
        use wasmparser::ValType as W;
        match ty {
            W::I32 => Self::I32,
            W::I64 => Self::I64,
            W::F32 => Self::F32,
            W::F64 => Self::F64,
            W::V128 => Self::V128,
            W::Ref(r) if r == wasmparser::RefType::FUNCREF => Self::FuncRef,
            W::Ref(r) if r == wasmparser::RefType::EXTERNREF => Self::ExternRef,
            W::Ref(r) if r == wasmparser::RefType::EXNREF => Self::ExnRef,
            W::Ref(_) => Self::OtherRef,
        }
    }

    /// The pointer-sized integer type for a memory of this kind.
    pub fn pointer(memory64: bool) -> Self {
        if memory64 { Self::I64 } else { Self::I32 }
    }
}

impl fmt::Display for ValType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::I32 => "i32",
            Self::I64 => "i64",
            Self::F32 => "f32",
            Self::F64 => "f64",
            Self::V128 => "v128",
            Self::FuncRef => "funcref",
            Self::ExternRef => "externref",
            Self::ExnRef => "exnref",
            Self::OtherRef => "ref",
        })
    }
}

/// A function signature.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct FuncType {
    /// Parameter types.
    pub params: SmallVec<[ValType; 6]>,
    /// Result types.
    pub results: SmallVec<[ValType; 2]>,
}

impl FuncType {
    /// A signature from parameter and result slices.
    pub fn new(params: &[ValType], results: &[ValType]) -> Self {
        Self {
            params: params.iter().copied().collect(),
            results: results.iter().copied().collect(),
        }
    }
    fn from_wasm(ty: &wasmparser::FuncType) -> Self {
        Self {
            params: ty.params().iter().map(|t| ValType::from_wasm(*t)).collect(),
            results: ty
                .results()
                .iter()
                .map(|t| ValType::from_wasm(*t))
                .collect(),
        }
    }
}

impl fmt::Display for FuncType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(")?;
        for (i, p) in self.params.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{p}")?;
        }
        f.write_str(") -> ")?;
        match self.results.as_slice() {
            [] => f.write_str("()"),
            [one] => write!(f, "{one}"),
            many => {
                f.write_str("(")?;
                for (i, r) in many.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{r}")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// A linear memory's type.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MemoryType {
    /// Minimum size in 64 KiB pages.
    pub min_pages: u64,
    /// Maximum size in pages, if bounded.
    pub max_pages: Option<u64>,
    /// Shared between threads.
    pub shared: bool,
    /// Indexed by i64 (memory64).
    pub memory64: bool,
}

/// A table's type (the linker only deals with `funcref` tables).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TableType {
    /// Minimum number of elements.
    pub min: u64,
    /// Maximum number of elements, if bounded.
    pub max: Option<u64>,
    /// Indexed by i64 (table64).
    pub table64: bool,
    /// Holds `funcref`s.
    pub funcref: bool,
}

/// What kind of item an import asks for.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ImportType {
    /// A function of the given type index.
    Func(u32),
    /// A global.
    Global {
        /// Its value type.
        ty: ValType,
        /// Whether it is mutable.
        mutable: bool,
    },
    /// A memory (boxed, as tables are: a module imports one or two of them among hundreds of
    /// functions and globals, whose records stay small).
    Memory(Box<MemoryType>),
    /// A table.
    Table(Box<TableType>),
    /// An exception tag whose parameters are given by the type index.
    Tag(u32),
}

/// The four layout globals a PIE main imports as `GOT.mem.*`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum LayoutGlobal {
    /// `__heap_base`: where `malloc` may start.
    HeapBase,
    /// `__heap_end`: the end of the initial heap.
    HeapEnd,
    /// `__stack_low`: lowest stack address.
    StackLow,
    /// `__stack_high`: initial stack pointer.
    StackHigh,
}

impl LayoutGlobal {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "__heap_base" => Self::HeapBase,
            "__heap_end" => Self::HeapEnd,
            "__stack_low" => Self::StackLow,
            "__stack_high" => Self::StackHigh,
            _ => return None,
        })
    }
}

/// The guest dlfcn functions the adapter provides as `env.*` imports.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum DlFunc {
    /// `void *dlopen(const char *, int)`
    Open,
    /// `void *dlsym(void *, const char *)`
    Sym,
    /// `int dlclose(void *)`
    Close,
    /// `char *dlerror(void)`
    Error,
    /// `int dladdr(const void *, Dl_info *)`
    Addr,
}

impl DlFunc {
    /// All of them, in a fixed order.
    pub const ALL: [DlFunc; 5] = [Self::Open, Self::Sym, Self::Close, Self::Error, Self::Addr];

    /// The C name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Open => "dlopen",
            Self::Sym => "dlsym",
            Self::Close => "dlclose",
            Self::Error => "dlerror",
            Self::Addr => "dladdr",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The C prototype's wasm signature for the given pointer type.
    pub fn signature(self, memory64: bool) -> FuncType {
        let p = ValType::pointer(memory64);
        let i = ValType::I32;
        match self {
            Self::Open => FuncType::new(&[p, i], &[p]),
            Self::Sym => FuncType::new(&[p, p], &[p]),
            Self::Close => FuncType::new(&[p], &[i]),
            Self::Error => FuncType::new(&[], &[p]),
            Self::Addr => FuncType::new(&[p, p], &[i]),
        }
    }
}

/// The role the linker plays for an import: decided once, when the module is read.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ImportRole {
    /// `env.memory`
    Memory,
    /// `env.__indirect_function_table`
    Table,
    /// `env.__stack_pointer`
    StackPointer,
    /// `env.__memory_base`
    MemoryBase,
    /// `env.__table_base`
    TableBase,
    /// `env.__table_base32` (older wasm64 LLVM)
    TableBase32,
    /// `GOT.mem.<sym>`: absolute address of a data symbol (the import's name).
    GotMem,
    /// `GOT.mem.__heap_base` and the other layout globals.
    Layout(LayoutGlobal),
    /// `GOT.func.<sym>`: function pointer (table slot) of a function (the import's name).
    GotFunc,
    /// `env.__cpp_exception`, `env.__c_longjmp` or another `env` tag shared by all modules.
    Tag,
    /// `env.dlopen` and friends: served by the adapter.
    Dl(DlFunc),
    /// `wasi.thread-spawn: (i32) -> i32` (wasi-threads): served by the adapter, which starts
    /// a new instance group on a new thread and calls `wasi_thread_start(tid, arg)` there.
    ThreadSpawn,
    /// `env.<func>`: a function from another module or the host.
    Func,
    /// `env.<global>` that is none of the above: from another module's export or the host.
    Global,
    /// `dylink.after_wait: (i32) -> i32`, the safe point the core puts after every
    /// `memory.atomic.wait` (see [`crate::safepoints`]): the adapter catches the calling group up
    /// and returns the argument.
    AfterWait,
    /// `dylink.catch_up: () -> ()`, called by the check the core puts before every indirect
    /// call (see [`crate::safepoints`]) when the group's `seen` differs from the commit
    /// counter: the adapter catches the group up and stores the counter in `seen`.
    CatchUp,
    /// `dylink.seen: (mut i32)`: the group's own global holding the commit counter's value
    /// when it last caught up.
    Seen,
    /// `dylink.commit_counter`: an immutable pointer global holding the address of the
    /// commit counter in shared memory.
    CommitCounter,
    /// Any other namespace (`wasi_snapshot_preview1`, …): from the host only.
    Host,
}

/// One import of a module.
#[derive(Clone, Debug)]
pub struct Import {
    /// Module namespace: its position among the module's distinct namespaces, read with
    /// [`ModuleInfo::import_module`]. A module's hundreds of imports share two or three
    /// namespaces; a 4-byte position instead of a [`Name`] each kept an import at 40 bytes
    /// (from 56) and took no reference count per import.
    namespace: u32,
    /// Field name.
    pub name: Name,
    /// What it asks for.
    pub ty: ImportType,
    /// What the linker does for it.
    pub role: ImportRole,
    /// Marked `binding-weak` in IMPORT_INFO (for `env.X`, the mark covers `GOT.*.X` too).
    pub weak: bool,
}

/// What kind of item an export is.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ExportKind {
    /// A function: its index in the module's function space and its type index.
    Func {
        /// Function index.
        index: u32,
        /// Type index.
        ty: u32,
    },
    /// A global. For a data symbol this is an immutable pointer-typed global whose constant
    /// `value` is the symbol's unrelocated address.
    Global {
        /// Value type.
        ty: ValType,
        /// Mutable.
        mutable: bool,
        /// Constant initial value, when the initialiser is a plain constant.
        value: Option<u64>,
    },
    /// A memory.
    Memory,
    /// A table.
    Table,
    /// A tag with its type index.
    Tag(u32),
}

/// One export of a module.
#[derive(Clone, Debug)]
pub struct Export {
    /// Export name.
    pub name: Name,
    /// What it is.
    pub kind: ExportKind,
    /// EXPORT_INFO `tls` (0x100): the value is an offset from the module's `__tls_base`.
    pub tls: bool,
    /// EXPORT_INFO `visibility-hidden` (0x4): not visible to other modules or `dlsym`.
    pub hidden: bool,
    /// EXPORT_INFO `binding-weak` (0x1): a strong definition elsewhere wins.
    pub weak: bool,
}

impl Export {
    /// Whether this export is a symbol other modules may bind to: not hidden, and not one of
    /// the per-module names the linker itself uses (`__wasm_call_ctors`, `__tls_base`, …).
    pub fn is_symbol(&self) -> bool {
        !self.hidden && !is_linker_internal(&self.name)
    }
}

/// Names every PIC module defines for the linker's own use; they never take part in symbol
/// resolution (two modules both exporting `__wasm_call_ctors` is normal, not a duplicate).
pub fn is_linker_internal(name: &str) -> bool {
    matches!(
        name,
        "__wasm_call_ctors"
            | "__wasm_call_dtors"
            | "__wasm_apply_data_relocs"
            | "__wasm_apply_tls_relocs"
            | "__wasm_apply_global_relocs"
            | "__wasm_init_tls"
            | "__wasm_init_memory"
            | "__tls_base"
            | "__tls_size"
            | "__tls_align"
            | "__dso_handle"
            | "__memory_base"
            | "__table_base"
            | "__stack_pointer"
            | "_initialize"
            | "_start"
            | "memory"
            | "__indirect_function_table"
            | "__data_end"
            | "__heap_base"
            | "__heap_end"
            | "__global_base"
            | "__stack_low"
            | "__stack_high"
    )
}

/// The functions and globals the linker calls or reads after instantiation.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct InitExports {
    /// `__wasm_apply_data_relocs: () -> ()`
    pub apply_data_relocs: bool,
    /// `__wasm_apply_tls_relocs: () -> ()`
    pub apply_tls_relocs: bool,
    /// `__wasm_call_ctors: () -> ()`
    pub call_ctors: bool,
    /// `_initialize: () -> ()` (reactor entry)
    pub initialize: bool,
    /// `_start: () -> ()` (command entry)
    pub start: bool,
    /// `__wasm_call_dtors: () -> ()`
    pub call_dtors: bool,
    /// `__wasm_init_tls: (ptr) -> ()`
    pub init_tls: bool,
    /// `__tls_base` exported as a mutable global.
    pub tls_base: bool,
    /// `__tls_size` value.
    pub tls_size: Option<u64>,
    /// `__tls_align` value.
    pub tls_align: Option<u64>,
    /// The module has a start function (runs at every instantiation).
    pub has_start_function: bool,
}

/// The `dylink.0` section's content.
#[derive(Clone, Debug, Default)]
pub struct DylinkInfo {
    /// MEM_INFO memorysize: bytes of data + bss to reserve.
    pub memory_size: u32,
    /// MEM_INFO memoryalignment (log2 of bytes).
    pub memory_align_log2: u32,
    /// MEM_INFO tablesize: table slots to reserve.
    pub table_size: u32,
    /// MEM_INFO tablealignment (log2 of slots).
    pub table_align_log2: u32,
    /// NEEDED, in order.
    pub needed: Vec<String>,
    /// RUNTIME_PATH, in order, unexpanded.
    pub runtime_path: Vec<String>,
}

/// Everything the linker needs to know about one module, read from its bytes alone.
#[derive(Clone, Debug)]
pub struct ModuleInfo {
    /// The `dylink.0` section; `None` for a module that is not a dynamic library (a non-PIE main).
    pub dylink: Option<DylinkInfo>,
    /// Function types by type index (non-function types hold an empty placeholder).
    pub types: Vec<FuncType>,
    /// Imports in order.
    pub imports: Vec<Import>,
    /// The distinct namespaces of the imports, in order of first use.
    pub(crate) namespaces: Vec<Name>,
    /// Exports in order.
    pub exports: Vec<Export>,
    /// Indices into `exports`, hashed by name: [`ModuleInfo::export`]. Holding indices rather
    /// than names keeps the table small and costs no reference count per export.
    export_index: ExportIndex,
    /// The memory the module defines (a non-PIE main), if any.
    pub defined_memory: Option<MemoryType>,
    /// The table the module defines (a non-PIE main), if any.
    pub defined_table: Option<TableType>,
    /// Memory64: pointers, bases and GOT entries are i64.
    pub memory64: bool,
    /// Whether the module's memory (imported or defined) is shared.
    pub shared_memory: bool,
    /// Init functions and TLS exports.
    pub init: InitExports,
    /// Elements the module places in its own table region: (offset from `__table_base`,
    /// function index). Used by `dladdr` for function pointers that never went through a GOT.
    pub table_elems: Vec<(u32, u32)>,
    /// Names of functions from the `name` section, when present (for `dladdr` and traps).
    pub func_names: HashMap<u32, Name>,
    /// Number of imported functions (function index space offset).
    pub imported_funcs: u32,
    /// Things worth telling the user that do not stop the load.
    pub warnings: Vec<Warning>,
    /// Byte range of the code section, if any.
    pub(crate) code_range: Option<core::ops::Range<usize>>,
    /// [`ModuleInfo::needs_own_dso`], found while reading (asked once per module per plan).
    own_dso: bool,
}

/// Export indices hashed by export name.
#[derive(Clone, Debug, Default)]
struct ExportIndex {
    table: hashbrown::HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl ExportIndex {
    fn reserve(&mut self, more: usize, exports: &[Export]) {
        let hasher = &self.hasher;
        self.table
            .reserve(more, |&i| hasher.hash_one(&*exports[i as usize].name));
    }

    /// Index `name`, the export about to be pushed at `exports.len()`; `false` when an
    /// export of that name is already there.
    fn insert(&mut self, exports: &[Export], name: &str) -> bool {
        let hasher = &self.hasher;
        let hash = hasher.hash_one(name);
        match self.table.entry(
            hash,
            |&i| &*exports[i as usize].name == name,
            |&i| hasher.hash_one(&*exports[i as usize].name),
        ) {
            hashbrown::hash_table::Entry::Occupied(_) => false,
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(exports.len() as u32);
                true
            }
        }
    }

    fn find<'a>(&self, exports: &'a [Export], name: &str) -> Option<&'a Export> {
        exports.get(self.position(exports, name)? as usize)
    }

    fn position(&self, exports: &[Export], name: &str) -> Option<u32> {
        let i = self.table.find(self.hasher.hash_one(name), |&i| {
            &*exports[i as usize].name == name
        })?;
        Some(*i)
    }
}

const WASM_SYM_BINDING_WEAK: u32 = 0x1;
const WASM_SYM_VISIBILITY_HIDDEN: u32 = 0x4;
const WASM_SYM_TLS: u32 = 0x100;

impl ModuleInfo {
    /// Read a module. Fails on bytes that are not a well-formed core module, on a duplicated
    /// `dylink.0` section, or on an import whose type does not fit its role.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        parse(bytes)
    }

    /// The libraries its `dylink.0` section says it needs (none without the section).
    pub fn needed(&self) -> &[String] {
        self.dylink.as_ref().map_or(&[], |d| &d.needed)
    }

    /// Where the module's own element segments put function `func`, as an offset from its
    /// `__table_base` (absolute for a non-PIE main).
    pub fn elem_offset(&self, func: u32) -> Option<u32> {
        self.table_elems
            .iter()
            .find(|(_, f)| *f == func)
            .map(|(o, _)| *o)
    }

    /// Whether the module refers to a `__dso_handle` it does not define (it was linked
    /// against a library that exported one): the linker gives it its own, four bytes after
    /// its data, so each library's `atexit` handlers stay its own.
    pub fn needs_own_dso(&self) -> bool {
        self.own_dso
    }

    /// MEM_INFO's memory size and alignment (log2), zero for a module without `dylink.0`.
    pub fn memory_needs(&self) -> (u32, u32) {
        (self.dylink.as_ref()).map_or((0, 0), |d| (d.memory_size, d.memory_align_log2))
    }

    /// MEM_INFO's table size and alignment (log2), zero for a module without `dylink.0`.
    pub fn table_needs(&self) -> (u32, u32) {
        (self.dylink.as_ref()).map_or((0, 0), |d| (d.table_size, d.table_align_log2))
    }

    /// Bytes of memory the module's region takes: MEM_INFO's size, plus a `__dso_handle`
    /// when the linker must provide one.
    pub fn region_size(&self) -> u64 {
        let size = self.dylink.as_ref().map_or(0, |d| d.memory_size as u64);
        if self.needs_own_dso() {
            size.div_ceil(4) * 4 + 4
        } else {
            size
        }
    }

    /// Look an export up by name.
    pub fn export(&self, name: &str) -> Option<&Export> {
        self.export_index.find(&self.exports, name)
    }

    /// An export's index in [`ModuleInfo::exports`] (its position in the export section).
    pub fn export_position(&self, name: &str) -> Option<u32> {
        self.export_index.position(&self.exports, name)
    }

    /// Whether the module defines and exports `malloc: (ptr) -> ptr` and `free: (ptr) -> ()`,
    /// as a non-PIE main carrying libc does for its libraries ([`crate::Op::StartAllocator`]).
    /// An allocator it imports and exports again is not its own: calling it before the
    /// libraries exist would reach a trampoline with nothing behind it.
    pub fn exports_allocator(&self) -> bool {
        let ptr = self.ptr_type();
        let is = |name: &str, want: FuncType| {
            matches!(self.export(name), Some(Export { kind: ExportKind::Func { index, ty }, .. })
                if *index >= self.imported_funcs && self.types.get(*ty as usize) == Some(&want))
        };
        is("malloc", FuncType::new(&[ptr], &[ptr])) && is("free", FuncType::new(&[ptr], &[]))
    }

    /// An import's module namespace (`env`, `GOT.mem`, `wasi_snapshot_preview1`, …).
    /// `import` is one of [`ModuleInfo::imports`]; for an import of another module the
    /// result is meaningless (empty when out of range).
    pub fn import_module(&self, import: &Import) -> &str {
        self.namespaces
            .get(import.namespace as usize)
            .map_or("", |n| n.as_str())
    }

    /// [`ModuleInfo::import_module`] as a shared [`Name`].
    pub fn import_module_name(&self, import: &Import) -> Name {
        (self.namespaces.get(import.namespace as usize)).map_or_else(Name::default, Name::clone)
    }

    /// The type of a function export or import, by type index.
    pub fn func_type(&self, ty: u32) -> &FuncType {
        &self.types[ty as usize]
    }

    /// The pointer-sized value type of this module.
    pub fn ptr_type(&self) -> ValType {
        ValType::pointer(self.memory64)
    }

    /// Whether the module imports its linear memory (`env.memory`): a side module or a PIE
    /// main, whose memory the linker lays out. A main that defines its memory is a non-PIE
    /// main, with or without a `dylink.0` section.
    pub fn imports_memory(&self) -> bool {
        self.imports.iter().any(|i| i.role == ImportRole::Memory)
    }

    /// Whether this module can be loaded as a library: it has a `dylink.0` section and does
    /// not define its own memory (a non-PIE main linked with `--experimental-pic` has the
    /// section too, but owns its memory).
    pub fn is_side_module(&self) -> bool {
        self.dylink.is_some() && self.defined_memory.is_none()
    }

    /// Whether this module is a `dylink.0` dynamic library (a side module or a PIE main).
    pub fn is_dynamic(&self) -> bool {
        self.dylink.is_some()
    }

    /// A readable name for a function index: export name, then `name` section, then index.
    pub fn func_name(&self, index: u32) -> Name {
        if let Some(e) = self
            .exports
            .iter()
            .find(|e| matches!(e.kind, ExportKind::Func { index: i, .. } if i == index))
        {
            return e.name.clone();
        }
        match self.func_names.get(&index) {
            Some(n) => n.clone(),
            None => format!("func[{index}]").into(),
        }
    }
}

fn bad(offset: usize, message: impl Into<String>) -> Error {
    Error::Malformed {
        offset,
        message: message.into(),
    }
}

fn from_wasm(e: wasmparser::BinaryReaderError) -> Error {
    Error::Malformed {
        offset: e.offset(),
        message: e.message().to_string(),
    }
}

fn parse(bytes: &[u8]) -> Result<ModuleInfo, Error> {
    let mut info = ModuleInfo {
        dylink: None,
        types: Vec::new(),
        imports: Vec::new(),
        namespaces: Vec::new(),
        exports: Vec::new(),
        export_index: ExportIndex::default(),
        defined_memory: None,
        defined_table: None,
        memory64: false,
        shared_memory: false,
        init: InitExports::default(),
        table_elems: Vec::new(),
        func_names: HashMap::new(),
        imported_funcs: 0,
        warnings: Vec::new(),
        code_range: None,
        own_dso: false,
    };
    // Function index -> type index, for imported and defined functions.
    let mut func_types: Vec<u32> = Vec::new();
    // Global index -> (type, mutable, constant value).
    let mut globals: Vec<(ValType, bool, Option<u64>)> = Vec::new();
    // Names borrowed from `bytes`: flags are looked up once per import and export.
    let mut import_flags: HashMap<(&str, &str), u32> = HashMap::new();
    let mut export_flags: HashMap<&str, u32> = HashMap::new();
    let mut table_base_global: Option<u32> = None;
    let mut namespaces = Namespaces::default();
    let mut saw_section = false;
    let mut saw_header = false;

    // Sections one by one; the code section is skipped whole (its bodies are read only
    // when a rewrite needs them).
    let mut parser = Parser::new(0);
    let mut rest = bytes;
    loop {
        let payload = match parser.parse(rest, true).map_err(from_wasm)? {
            Chunk::Parsed { consumed, payload } => {
                rest = rest.get(consumed..).unwrap_or_default();
                payload
            }
            Chunk::NeedMoreData(_) => return Err(bad(bytes.len(), "unexpected end of module")),
        };
        match payload {
            Payload::Version {
                encoding, range, ..
            } => {
                saw_header = true;
                if encoding != wasmparser::Encoding::Module {
                    return Err(bad(range.start, "a component, not a core module"));
                }
            }
            Payload::CustomSection(c) => {
                let offset = c.range().start;
                match c.as_known() {
                    KnownCustom::Dylink0(reader) => {
                        if info.dylink.is_some() {
                            return Err(Error::DuplicateDylink { offset });
                        }
                        if saw_section {
                            info.warnings.push(Warning::DylinkNotFirst { offset });
                        }
                        let mut d = DylinkInfo::default();
                        for sub in reader {
                            match sub.map_err(from_wasm)? {
                                Dylink0Subsection::MemInfo(m) => {
                                    d.memory_size = m.memory_size;
                                    d.memory_align_log2 = m.memory_alignment;
                                    d.table_size = m.table_size;
                                    d.table_align_log2 = m.table_alignment;
                                }
                                Dylink0Subsection::Needed(n) => {
                                    d.needed.extend(n.into_iter().map(String::from));
                                }
                                Dylink0Subsection::ExportInfo(list) => {
                                    for e in list {
                                        *export_flags.entry(e.name).or_default() |= e.flags.bits();
                                    }
                                }
                                Dylink0Subsection::ImportInfo(list) => {
                                    for i in list {
                                        *import_flags.entry((i.module, i.field)).or_default() |=
                                            i.flags.bits();
                                    }
                                }
                                Dylink0Subsection::RuntimePath(p) => {
                                    d.runtime_path.extend(p.into_iter().map(String::from));
                                }
                                Dylink0Subsection::Unknown { ty, range, .. } => {
                                    info.warnings.push(Warning::UnknownSubsection {
                                        id: ty,
                                        offset: range.start,
                                    });
                                }
                            }
                        }
                        // 32 is the widest alignment an address space could honour.
                        if d.memory_align_log2 >= 32 || d.table_align_log2 >= 32 {
                            return Err(bad(offset, "dylink.0 MEM_INFO alignment is 2^32 or more"));
                        }
                        info.dylink = Some(d);
                    }
                    KnownCustom::Name(names) => {
                        // The name section is advisory: a malformed one is ignored.
                        for n in names.into_iter().flatten() {
                            if let wasmparser::Name::Function(map) = n {
                                for naming in map.into_iter().flatten() {
                                    info.func_names.insert(naming.index, naming.name.into());
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            Payload::TypeSection(reader) => {
                saw_section = true;
                for rec in reader {
                    for sub in rec.map_err(from_wasm)?.into_types() {
                        info.types.push(match &sub.composite_type.inner {
                            CompositeInnerType::Func(f) => FuncType::from_wasm(f),
                            _ => FuncType::default(),
                        });
                    }
                }
            }
            Payload::ImportSection(reader) => {
                saw_section = true;
                info.imports.reserve(reader.count() as usize);
                func_types.reserve(reader.count() as usize);
                // Most of a library's imports are functions or `GOT.*` globals.
                globals.reserve(reader.count() as usize);
                for_each_import(
                    bytes,
                    reader,
                    &mut namespaces,
                    |offset, namespace, module, name, ty| {
                        let ty = match ty {
                            TypeRef::Func(t) | TypeRef::FuncExact(t) => {
                                check_func_type(&info, t, offset)?;
                                func_types.push(t);
                                info.imported_funcs += 1;
                                ImportType::Func(t)
                            }
                            TypeRef::Global(g) => {
                                let ty = ValType::from_wasm(g.content_type);
                                globals.push((ty, g.mutable, None));
                                if module == "env" && &*name == "__table_base" {
                                    table_base_global = Some(globals.len() as u32 - 1);
                                }
                                ImportType::Global {
                                    ty,
                                    mutable: g.mutable,
                                }
                            }
                            TypeRef::Memory(m) => {
                                let m = memory_type(m);
                                info.memory64 |= m.memory64;
                                info.shared_memory |= m.shared;
                                ImportType::Memory(Box::new(m))
                            }
                            TypeRef::Table(t) => ImportType::Table(Box::new(table_type(t))),
                            TypeRef::Tag(t) => {
                                check_func_type(&info, t.func_type_idx, offset)?;
                                ImportType::Tag(t.func_type_idx)
                            }
                        };
                        info.imports.push(Import {
                            namespace,
                            name,
                            role: ImportRole::Host,
                            ty,
                            weak: false,
                        });
                        Ok(())
                    },
                )?;
            }
            Payload::FunctionSection(reader) => {
                saw_section = true;
                func_types.reserve(reader.count() as usize);
                for t in reader.into_iter_with_offsets() {
                    let (offset, t) = t.map_err(from_wasm)?;
                    check_func_type(&info, t, offset)?;
                    func_types.push(t);
                }
            }
            Payload::TableSection(reader) => {
                saw_section = true;
                for t in reader {
                    let t = t.map_err(from_wasm)?;
                    if info.defined_table.is_none() {
                        info.defined_table = Some(table_type(t.ty));
                    }
                }
            }
            Payload::MemorySection(reader) => {
                saw_section = true;
                for m in reader {
                    let m = memory_type(m.map_err(from_wasm)?);
                    if info.defined_memory.is_none() {
                        info.memory64 |= m.memory64;
                        info.shared_memory |= m.shared;
                        info.defined_memory = Some(m);
                    }
                }
            }
            Payload::GlobalSection(reader) => {
                saw_section = true;
                globals.reserve(reader.count() as usize);
                if !globals_fast(bytes, &reader, &mut globals) {
                    for g in reader {
                        let g = g.map_err(from_wasm)?;
                        let ty = ValType::from_wasm(g.ty.content_type);
                        globals.push((ty, g.ty.mutable, const_value(&g.init_expr)));
                    }
                }
            }
            Payload::ExportSection(reader) => {
                saw_section = true;
                info.exports.reserve(reader.count() as usize);
                info.export_index
                    .reserve(reader.count() as usize, &info.exports);
                for_each_export(bytes, reader, |offset, name, kind, index| {
                    let kind = match kind {
                        ExternalKind::Func | ExternalKind::FuncExact => {
                            let ty = *func_types
                                .get(index as usize)
                                .ok_or_else(|| bad(offset, "export of an unknown function"))?;
                            ExportKind::Func { index, ty }
                        }
                        ExternalKind::Global => {
                            let &(ty, mutable, value) = globals
                                .get(index as usize)
                                .ok_or_else(|| bad(offset, "export of an unknown global"))?;
                            ExportKind::Global { ty, mutable, value }
                        }
                        ExternalKind::Memory => ExportKind::Memory,
                        ExternalKind::Table => ExportKind::Table,
                        ExternalKind::Tag => ExportKind::Tag(0),
                    };
                    if !info.export_index.insert(&info.exports, &name) {
                        return Err(bad(offset, format!("export `{name}` appears twice")));
                    }
                    info.exports.push(Export {
                        name,
                        kind,
                        tls: false,
                        hidden: false,
                        weak: false,
                    });
                    Ok(())
                })?;
            }
            Payload::StartSection { .. } => {
                saw_section = true;
                info.init.has_start_function = true;
            }
            Payload::ElementSection(reader) => {
                saw_section = true;
                for elem in reader {
                    let elem = elem.map_err(from_wasm)?;
                    let wasmparser::ElementKind::Active { offset_expr, .. } = elem.kind else {
                        continue;
                    };
                    let Some(base) = relative_offset(&offset_expr, table_base_global) else {
                        continue;
                    };
                    if let wasmparser::ElementItems::Functions(funcs) = elem.items {
                        for (i, f) in funcs.into_iter().enumerate() {
                            let f = f.map_err(from_wasm)?;
                            info.table_elems.push((base.saturating_add(i as u32), f));
                        }
                    }
                }
            }
            Payload::CodeSectionStart { range, size, .. } => {
                saw_section = true;
                parser.skip_section();
                rest = rest
                    .get(size as usize..)
                    .ok_or_else(|| bad(range.start, "code section runs past the end"))?;
                info.code_range = Some(range);
            }
            Payload::End(_) => break,
            _ => saw_section = true,
        }
    }
    if !saw_header {
        return Err(bad(0, "empty input"));
    }
    info.namespaces = namespaces.list;

    // Flags from dylink.0 apply to the exports and imports they name.
    for e in &mut info.exports {
        if let Some(&f) = export_flags.get(&*e.name) {
            e.tls = f & WASM_SYM_TLS != 0;
            e.hidden = f & WASM_SYM_VISIBILITY_HIDDEN != 0;
            e.weak = f & WASM_SYM_BINDING_WEAK != 0;
        }
    }
    // A weak mark on `env.X` also covers `GOT.func.X` and `GOT.mem.X`.
    let is_weak = |module: &str, name: &str| {
        !import_flags.is_empty()
            && import_flags
                .get(&(module, name))
                .is_some_and(|f| f & WASM_SYM_BINDING_WEAK != 0)
    };
    let mut roles = Vec::with_capacity(info.imports.len());
    let mut dso_import = false;
    for imp in &info.imports {
        let module = info.import_module(imp);
        dso_import |= &*imp.name == "__dso_handle" && module == "GOT.mem";
        let role = classify(imp, &info)?;
        let weak = is_weak(module, &imp.name)
            || (matches!(module, "GOT.mem" | "GOT.func") && is_weak("env", &imp.name));
        roles.push((role, weak));
    }
    for (imp, (role, weak)) in info.imports.iter_mut().zip(roles) {
        imp.role = role;
        imp.weak = weak;
    }

    info.own_dso = dso_import && info.export("__dso_handle").is_none();
    read_init_exports(&mut info)?;
    Ok(info)
}

/// Wasm's limit on a name's length, as wasmparser applies it.
const MAX_NAME: usize = 100_000;

/// Calls `f` with each import of the section: its offset, namespace (its position in
/// `namespaces`, and its text), field and type. The
/// fast path copies every name into one buffer, checks it is UTF-8 once and shares it among
/// the names; anything it does not expect (the compact encodings, an over-long name,
/// malformed bytes) sends the whole section through wasmparser's reader, whose errors are the
/// ones reported. `f` sees the entries only once the section was read whole.
fn for_each_import(
    bytes: &[u8],
    reader: wasmparser::ImportSectionReader<'_>,
    namespaces: &mut Namespaces,
    mut f: impl FnMut(usize, u32, &str, Name, TypeRef) -> Result<(), Error>,
) -> Result<(), Error> {
    if let Some((raw, text)) = imports_fast(bytes, &reader) {
        let text = text
            .finish()
            .ok_or_else(|| bad(reader.range().start, MALFORMED_UTF8))?;
        // Imports come grouped by namespace and share its span: one look-up per run of them.
        let mut last: Option<((u32, u32), u32, Name)> = None;
        for (offset, module, name, ty) in raw {
            let (namespace, m) = match &last {
                Some((span, n, m)) if *span == module => (*n, m),
                _ => {
                    let m = text.cut(module, offset)?;
                    let n = namespaces.position(&m, || m.clone());
                    let (_, n, m) = last.insert((module, n, m));
                    (*n, &*m)
                }
            };
            f(offset, namespace, m, text.cut(name, offset)?, ty)?;
        }
        return Ok(());
    }
    for imp in reader.into_imports_with_offsets() {
        let (offset, imp) = imp.map_err(from_wasm)?;
        let namespace = namespaces.position(imp.module, || imp.module.into());
        f(offset, namespace, imp.module, imp.name.into(), imp.ty)?;
    }
    Ok(())
}

/// A module's distinct import namespaces, each held once; searched in order while there
/// are few, by hash past that (a hostile module may name a new one per import).
#[derive(Default)]
struct Namespaces {
    list: Vec<Name>,
    index: HashMap<Name, u32>,
}

impl Namespaces {
    const SCANNED: usize = 16;

    /// The position of `namespace`, added (as `make` builds it) if new. An import section
    /// has fewer than 2^32 entries, so positions fit.
    fn position(&mut self, namespace: &str, make: impl FnOnce() -> Name) -> u32 {
        let found = if self.list.len() <= Self::SCANNED {
            self.list.iter().position(|n| **n == *namespace)
        } else {
            self.index.get(namespace).map(|&i| i as usize)
        };
        if let Some(i) = found {
            return i as u32;
        }
        let i = self.list.len() as u32;
        self.list.push(make());
        if self.list.len() > Self::SCANNED {
            if self.index.is_empty() {
                self.index
                    .extend(self.list.iter().cloned().zip(0..self.list.len() as u32));
            } else {
                self.index.insert(self.list[i as usize].clone(), i);
            }
        }
        i
    }
}

/// An import as the fast path reads it: offset, namespace and field spans, type.
type RawImport = (usize, (u32, u32), (u32, u32), TypeRef);

fn imports_fast(
    bytes: &[u8],
    reader: &wasmparser::ImportSectionReader<'_>,
) -> Option<(Vec<RawImport>, NameText)> {
    let (mut r, len) = section_body(bytes, reader.range(), reader.count())?;
    let count = reader.count() as usize;
    let mut text = NameText(Vec::with_capacity(len));
    let mut raw = Vec::with_capacity(count.min(len));
    let mut last_module: Option<(&[u8], (u32, u32))> = None;
    for _ in 0..count {
        let offset = r.offset();
        let module_bytes = r.name()?;
        // Imports come grouped by namespace: one copy per run of them.
        let module = match last_module {
            Some((b, span)) if b == module_bytes => span,
            _ => {
                let span = text.push(module_bytes)?;
                last_module = Some((module_bytes, span));
                span
            }
        };
        let name_bytes = r.name()?;
        if name_bytes.is_empty() {
            // Possibly a compact encoding (an empty name, then 0x7E or 0x7F).
            return None;
        }
        let name = text.push(name_bytes)?;
        raw.push((offset, module, name, r.type_ref()?));
    }
    r.at_end().then_some((raw, text))
}

/// Calls `f` with each export of the section (offset, name, kind, index), read as
/// [`for_each_import`] reads imports.
fn for_each_export(
    bytes: &[u8],
    reader: wasmparser::ExportSectionReader<'_>,
    mut f: impl FnMut(usize, Name, ExternalKind, u32) -> Result<(), Error>,
) -> Result<(), Error> {
    if let Some((raw, text)) = exports_fast(bytes, &reader) {
        let text = text
            .finish()
            .ok_or_else(|| bad(reader.range().start, MALFORMED_UTF8))?;
        for (offset, name, kind, index) in raw {
            f(offset, text.cut(name, offset)?, kind, index)?;
        }
        return Ok(());
    }
    for e in reader.into_iter_with_offsets() {
        let (offset, e) = e.map_err(from_wasm)?;
        f(offset, e.name.into(), e.kind, e.index)?;
    }
    Ok(())
}

/// An export as the fast path reads it: offset, name span, kind, index.
type RawExport = (usize, (u32, u32), ExternalKind, u32);

fn exports_fast(
    bytes: &[u8],
    reader: &wasmparser::ExportSectionReader<'_>,
) -> Option<(Vec<RawExport>, NameText)> {
    let (mut r, len) = section_body(bytes, reader.range(), reader.count())?;
    let count = reader.count() as usize;
    let mut text = NameText(Vec::with_capacity(len));
    let mut raw = Vec::with_capacity(count.min(len));
    for _ in 0..count {
        let offset = r.offset();
        let name = text.push(r.name()?)?;
        let kind = match r.byte()? {
            0x00 => ExternalKind::Func,
            0x01 => ExternalKind::Table,
            0x02 => ExternalKind::Memory,
            0x03 => ExternalKind::Global,
            0x04 => ExternalKind::Tag,
            _ => return None,
        };
        raw.push((offset, name, kind, r.u32()?));
    }
    r.at_end().then_some((raw, text))
}

/// wasmparser's message for a name that is not UTF-8.
const MALFORMED_UTF8: &str = "malformed UTF-8 encoding";

/// A reader over a section's entries (after its count, which must be `count`), and the
/// entries' length in bytes.
fn section_body(
    bytes: &[u8],
    range: core::ops::Range<usize>,
    count: u32,
) -> Option<(Lean<'_>, usize)> {
    let mut r = Lean {
        bytes: bytes.get(..range.end)?,
        pos: range.start,
    };
    if r.u32()? != count {
        return None;
    }
    let len = range.end - r.pos;
    Some((r, len))
}

/// The few reads the fast paths make, over the module's bytes: LEB128 integers, bytes, names.
/// Every read is checked; `None` on anything malformed or unusual, which sends the section
/// through wasmparser's reader.
struct Lean<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Lean<'a> {
    fn offset(&self) -> usize {
        self.pos
    }

    fn at_end(&self) -> bool {
        self.pos == self.bytes.len()
    }

    #[inline]
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    /// An unsigned LEB128 `u32`, as wasm bounds it (at most five bytes, no stray high bits).
    #[inline]
    fn u32(&mut self) -> Option<u32> {
        let b = self.byte()?;
        if b < 0x80 {
            return Some(u32::from(b));
        }
        let mut value = u32::from(b & 0x7F);
        let mut shift = 7;
        loop {
            let b = self.byte()?;
            if shift == 28 && b > 0x0F {
                return None;
            }
            value |= u32::from(b & 0x7F) << shift;
            if b < 0x80 {
                return Some(value);
            }
            shift += 7;
        }
    }

    fn bytes(&mut self, len: usize) -> Option<&'a [u8]> {
        let out = self.bytes.get(self.pos..self.pos.checked_add(len)?)?;
        self.pos += len;
        Some(out)
    }

    /// A name's bytes (UTF-8 is checked later, for the whole section at once).
    fn name(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        if len > MAX_NAME {
            return None;
        }
        self.bytes(len)
    }

    /// An import's type: functions and number-typed globals here, the rest by wasmparser.
    fn type_ref(&mut self) -> Option<TypeRef> {
        let start = self.pos;
        let simple = match self.byte()? {
            0x00 => Some(TypeRef::Func(self.u32()?)),
            0x03 => {
                let content_type = match self.byte()? {
                    0x7F => Some(wasmparser::ValType::I32),
                    0x7E => Some(wasmparser::ValType::I64),
                    0x7D => Some(wasmparser::ValType::F32),
                    0x7C => Some(wasmparser::ValType::F64),
                    _ => None,
                };
                let mutable = match self.byte()? {
                    0 => Some(false),
                    1 => Some(true),
                    _ => None,
                };
                content_type.zip(mutable).map(|(content_type, mutable)| {
                    TypeRef::Global(wasmparser::GlobalType {
                        content_type,
                        mutable,
                        shared: false,
                    })
                })
            }
            _ => None,
        };
        if simple.is_some() {
            return simple;
        }
        self.pos = start;
        let mut r = BinaryReader::new(self.bytes.get(start..)?, start);
        let ty = r.read::<TypeRef>().ok()?;
        self.pos = r.original_position();
        Some(ty)
    }

    fn i32(&mut self) -> Option<i32> {
        self.signed(32).map(|v| v as i32)
    }

    fn i64(&mut self) -> Option<i64> {
        self.signed(64)
    }

    /// A signed LEB128 of `bits` bits. Values short of the longest encoding are decoded
    /// here (they cannot overflow); the longest, whose last byte has bits to check, by
    /// wasmparser's reader.
    fn signed(&mut self, bits: u32) -> Option<i64> {
        let start = self.pos;
        let max_bytes = bits.div_ceil(7);
        let mut value: i64 = 0;
        let mut shift = 0;
        for _ in 1..max_bytes {
            let b = self.byte()?;
            value |= i64::from(b & 0x7F) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                if b & 0x40 != 0 {
                    value |= -1i64 << shift;
                }
                return Some(value);
            }
        }
        let mut r = BinaryReader::new(self.bytes.get(start..)?, start);
        let v = if bits == 32 {
            i64::from(r.read_var_i32().ok()?)
        } else {
            r.read_var_i64().ok()?
        };
        self.pos = r.original_position();
        Some(v)
    }
}

/// A section's names copied into one buffer, which the [`Name`]s cut from it share.
struct NameText(Vec<u8>);

impl NameText {
    /// Append a name; its byte range in the buffer.
    fn push(&mut self, name: &[u8]) -> Option<(u32, u32)> {
        let start = u32::try_from(self.0.len()).ok()?;
        self.0.extend_from_slice(name);
        Some((start, u32::try_from(self.0.len()).ok()?))
    }

    /// The buffer as one shared string, checked as UTF-8 once (and not copied).
    fn finish(mut self) -> Option<SharedText> {
        self.0.shrink_to_fit();
        Some(SharedText(Arc::new(String::from_utf8(self.0).ok()?)))
    }
}

/// The names of a section, checked as UTF-8.
struct SharedText(Arc<String>);

impl SharedText {
    /// The name at `span`; an error (at `offset`) when the span splits a character, which a
    /// name that is not UTF-8 on its own can make it do.
    fn cut(&self, (a, b): (u32, u32), offset: usize) -> Result<Name, Error> {
        Name::slice(&self.0, a as usize..b as usize).ok_or_else(|| bad(offset, MALFORMED_UTF8))
    }
}

/// Reads a global section whose globals all have a number type and a one-instruction
/// initialiser (`i32.const`, `i64.const`, `global.get`, as clang emits), appending to
/// `globals`. `false`, with `globals` as before, for anything else: the caller then reads
/// the section with wasmparser.
fn globals_fast(
    bytes: &[u8],
    reader: &wasmparser::GlobalSectionReader<'_>,
    globals: &mut Vec<(ValType, bool, Option<u64>)>,
) -> bool {
    let before = globals.len();
    let ok = (|| {
        let (mut r, _) = section_body(bytes, reader.range(), reader.count())?;
        for _ in 0..reader.count() {
            let ty = match r.byte()? {
                0x7F => ValType::I32,
                0x7E => ValType::I64,
                0x7D => ValType::F32,
                0x7C => ValType::F64,
                _ => return None,
            };
            let mutable = match r.byte()? {
                0 => false,
                1 => true,
                _ => return None,
            };
            let value = match r.byte()? {
                0x41 => Some(r.i32()? as u32 as u64),
                0x42 => Some(r.i64()? as u64),
                0x23 => {
                    r.u32()?;
                    None
                }
                _ => return None,
            };
            if r.byte()? != 0x0B {
                return None;
            }
            globals.push((ty, mutable, value));
        }
        r.at_end().then_some(())
    })()
    .is_some();
    if !ok {
        globals.truncate(before);
    }
    ok
}

fn check_func_type(info: &ModuleInfo, t: u32, offset: usize) -> Result<(), Error> {
    if (t as usize) < info.types.len() {
        Ok(())
    } else {
        Err(bad(offset, format!("type index {t} out of bounds")))
    }
}

fn memory_type(m: wasmparser::MemoryType) -> MemoryType {
    MemoryType {
        min_pages: m.initial,
        max_pages: m.maximum,
        shared: m.shared,
        memory64: m.memory64,
    }
}

fn table_type(t: wasmparser::TableType) -> TableType {
    TableType {
        min: t.initial,
        max: t.maximum,
        table64: t.table64,
        funcref: t.element_type == wasmparser::RefType::FUNCREF,
    }
}

fn const_value(expr: &wasmparser::ConstExpr<'_>) -> Option<u64> {
    let mut ops = expr.get_operators_reader();
    let v = match ops.read().ok()? {
        Operator::I32Const { value } => value as u32 as u64,
        Operator::I64Const { value } => value as u64,
        _ => return None,
    };
    matches!(ops.read().ok()?, Operator::End).then_some(v)
}

/// An element segment offset of the form `global.get $__table_base [+ const]`.
fn relative_offset(expr: &wasmparser::ConstExpr<'_>, table_base: Option<u32>) -> Option<u32> {
    let mut ops = expr.get_operators_reader();
    match ops.read().ok()? {
        Operator::GlobalGet { global_index } if Some(global_index) == table_base => {}
        Operator::I32Const { value } if table_base.is_none() => return Some(value as u32),
        _ => return None,
    }
    match ops.read().ok()? {
        Operator::End => Some(0),
        Operator::I32Const { value } => {
            matches!(ops.read().ok()?, Operator::I32Add).then_some(value as u32)
        }
        Operator::I64Const { value } => {
            matches!(ops.read().ok()?, Operator::I64Add).then_some(value as u32)
        }
        _ => None,
    }
}

fn classify(imp: &Import, info: &ModuleInfo) -> Result<ImportRole, Error> {
    let ptr = info.ptr_type();
    let module = info.import_module(imp);
    let wrong = |want: &str| Error::BadImport {
        module: module.to_string(),
        name: imp.name.to_string(),
        message: format!("must be {want}, found {}", describe(&imp.ty, info)),
    };
    let pointer_global = |mutable: bool| -> Result<(), Error> {
        match imp.ty {
            ImportType::Global { ty, mutable: m } if ty == ptr && m == mutable => Ok(()),
            // Older LLVM emitted i32 GOT entries under wasm64; accept both integer widths.
            ImportType::Global {
                ty: ValType::I32 | ValType::I64,
                mutable: m,
            } if m == mutable => Ok(()),
            _ => Err(wrong(&format!(
                "a{} {ptr} global",
                if mutable { " mutable" } else { "n immutable" }
            ))),
        }
    };
    Ok(match (module, &*imp.name) {
        ("GOT.mem", name) => {
            pointer_global(true)?;
            match LayoutGlobal::from_name(name) {
                Some(l) => ImportRole::Layout(l),
                None => ImportRole::GotMem,
            }
        }
        ("GOT.func", _) => {
            pointer_global(true)?;
            ImportRole::GotFunc
        }
        ("env", "memory") => match imp.ty {
            ImportType::Memory(_) => ImportRole::Memory,
            _ => return Err(wrong("a memory")),
        },
        ("env", "__indirect_function_table") => match &imp.ty {
            ImportType::Table(t) if t.funcref => ImportRole::Table,
            _ => return Err(wrong("a funcref table")),
        },
        ("env", "__stack_pointer") => {
            pointer_global(true)?;
            ImportRole::StackPointer
        }
        ("env", "__memory_base") => {
            pointer_global(false)?;
            ImportRole::MemoryBase
        }
        ("env", "__table_base") => {
            pointer_global(false)?;
            ImportRole::TableBase
        }
        ("env", "__table_base32") => match imp.ty {
            ImportType::Global {
                ty: ValType::I32,
                mutable: false,
            } => ImportRole::TableBase32,
            _ => return Err(wrong("an immutable i32 global")),
        },
        (crate::safepoints::HOOK_MODULE, crate::safepoints::HOOK_NAME) => match &imp.ty {
            ImportType::Func(t)
                if *info.func_type(*t) == FuncType::new(&[ValType::I32], &[ValType::I32]) =>
            {
                ImportRole::AfterWait
            }
            _ => return Err(wrong("a function `(i32) -> i32`")),
        },
        (crate::safepoints::HOOK_MODULE, crate::safepoints::CATCH_UP_NAME) => match &imp.ty {
            ImportType::Func(t) if *info.func_type(*t) == FuncType::default() => {
                ImportRole::CatchUp
            }
            _ => return Err(wrong("a function `() -> ()`")),
        },
        (crate::safepoints::HOOK_MODULE, crate::safepoints::SEEN_NAME) => match imp.ty {
            ImportType::Global {
                ty: ValType::I32,
                mutable: true,
            } => ImportRole::Seen,
            _ => return Err(wrong("a mutable i32 global")),
        },
        (crate::safepoints::HOOK_MODULE, crate::safepoints::COUNTER_NAME) => {
            pointer_global(false)?;
            ImportRole::CommitCounter
        }
        ("wasi", "thread-spawn") => match &imp.ty {
            ImportType::Func(t)
                if *info.func_type(*t) == FuncType::new(&[ValType::I32], &[ValType::I32]) =>
            {
                ImportRole::ThreadSpawn
            }
            _ => return Err(wrong("a function `(i32) -> i32`")),
        },
        ("env", name) => match &imp.ty {
            ImportType::Tag(_) => ImportRole::Tag,
            ImportType::Func(t) => match DlFunc::from_name(name) {
                Some(dl) if *info.func_type(*t) == dl.signature(info.memory64) => {
                    ImportRole::Dl(dl)
                }
                Some(dl) => {
                    return Err(wrong(&format!(
                        "a function `{}` for `{}`",
                        dl.signature(info.memory64),
                        dl.name()
                    )));
                }
                None => ImportRole::Func,
            },
            ImportType::Global { .. } => ImportRole::Global,
            ImportType::Memory(_) | ImportType::Table(_) => ImportRole::Host,
        },
        _ => ImportRole::Host,
    })
}

fn describe(ty: &ImportType, info: &ModuleInfo) -> String {
    match ty {
        ImportType::Func(t) => format!("a function `{}`", info.func_type(*t)),
        ImportType::Global { ty, mutable } => {
            format!(
                "a{} {ty} global",
                if *mutable { " mutable" } else { "n immutable" }
            )
        }
        ImportType::Memory(_) => "a memory".into(),
        ImportType::Table(_) => "a table".into(),
        ImportType::Tag(_) => "a tag".into(),
    }
}

fn read_init_exports(info: &mut ModuleInfo) -> Result<(), Error> {
    let ptr = info.ptr_type();
    let nullary = FuncType::default();
    let init_tls = FuncType::new(&[ptr], &[]);
    let mut init = info.init;
    for e in &info.exports {
        // Every name below starts with `_`; most exports do not.
        if !e.name.starts_with('_') {
            continue;
        }
        let func_ty = match e.kind {
            ExportKind::Func { ty, .. } => Some(&info.types[ty as usize]),
            _ => None,
        };
        let flag = match &*e.name {
            "__wasm_apply_data_relocs" => &mut init.apply_data_relocs,
            "__wasm_apply_tls_relocs" => &mut init.apply_tls_relocs,
            "__wasm_call_ctors" => &mut init.call_ctors,
            "_initialize" => &mut init.initialize,
            "_start" => &mut init.start,
            "__wasm_call_dtors" => &mut init.call_dtors,
            "__wasm_init_tls" => {
                if func_ty != Some(&init_tls) {
                    return Err(Error::BadExport {
                        name: e.name.to_string(),
                        message: format!("must be a function `{init_tls}`"),
                    });
                }
                init.init_tls = true;
                continue;
            }
            "__tls_base" => {
                init.tls_base = matches!(e.kind, ExportKind::Global { mutable: true, .. });
                continue;
            }
            "__tls_size" | "__tls_align" => {
                let ExportKind::Global {
                    value: Some(v),
                    mutable: false,
                    ..
                } = e.kind
                else {
                    return Err(Error::BadExport {
                        name: e.name.to_string(),
                        message: "must be an immutable global with a constant value".into(),
                    });
                };
                if &*e.name == "__tls_size" {
                    init.tls_size = Some(v);
                } else {
                    init.tls_align = Some(v);
                }
                continue;
            }
            _ => continue,
        };
        if func_ty != Some(&nullary) {
            return Err(Error::BadExport {
                name: e.name.to_string(),
                message: format!("must be a function `{nullary}`"),
            });
        }
        *flag = true;
    }
    info.init = init;
    Ok(())
}
