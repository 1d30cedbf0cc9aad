//! Errors, warnings and link diagnostics. Every message names what failed (module, symbol,
//! offset) and, where there is one, what to do about it.

use core::fmt;

use crate::prelude::*;

/// Why a module's bytes could not be read as a module the linker understands.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// Not a well-formed WebAssembly core module.
    Malformed {
        /// Byte offset of the problem.
        offset: usize,
        /// What is wrong there.
        message: String,
    },
    /// Two `dylink.0` sections.
    DuplicateDylink {
        /// Byte offset of the second one.
        offset: usize,
    },
    /// An import the linker provides has the wrong type.
    BadImport {
        /// Import namespace.
        module: String,
        /// Import name.
        name: String,
        /// What type it must have and what it has.
        message: String,
    },
    /// An export the linker calls or reads has the wrong type.
    BadExport {
        /// Export name.
        name: String,
        /// What type it must have.
        message: String,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed { offset, message } => {
                write!(f, "not a valid wasm module at byte {offset:#x}: {message}")
            }
            Self::DuplicateDylink { offset } => write!(
                f,
                "a second `dylink.0` section at byte {offset:#x}; a dynamic library has exactly one"
            ),
            Self::BadImport {
                module,
                name,
                message,
            } => {
                write!(f, "import `{module}.{name}` {message}")
            }
            Self::BadExport { name, message } => write!(f, "export `{name}` {message}"),
        }
    }
}

impl core::error::Error for ParseError {}

/// Something worth telling the user that does not stop a load.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Warning {
    /// A `dylink.0` subsection id this linker does not know; skipped.
    UnknownSubsection {
        /// Subsection id.
        id: u8,
        /// Byte offset.
        offset: usize,
    },
    /// `dylink.0` is not the first section, as the convention asks.
    DylinkNotFirst {
        /// Byte offset.
        offset: usize,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownSubsection { id, offset } => {
                write!(
                    f,
                    "unknown dylink.0 subsection {id} at byte {offset:#x} skipped"
                )
            }
            Self::DylinkNotFirst { offset } => write!(
                f,
                "dylink.0 section at byte {offset:#x} is not the first section (accepted)"
            ),
        }
    }
}

/// What a symbol was wanted as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymbolKind {
    /// A function (`env.f` or `GOT.func.f`).
    Func,
    /// A data symbol (`GOT.mem.x`).
    Data,
    /// A global (`env.g`).
    Global,
    /// An exception tag.
    Tag,
}

impl fmt::Display for SymbolKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Func => "function",
            Self::Data => "data symbol",
            Self::Global => "global",
            Self::Tag => "tag",
        })
    }
}

/// One finding of symbol resolution.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Diagnostic {
    /// A non-weak symbol nothing defines.
    Missing {
        /// The module that needs it.
        module: String,
        /// The symbol.
        symbol: String,
        /// What it was wanted as.
        kind: SymbolKind,
        /// In lazy mode a missing function is bound to a stub that traps when called.
        deferred: bool,
    },
    /// A weak symbol nothing defines: address 0, or a stub that traps when called.
    WeakMissing {
        /// The module that refers to it.
        module: String,
        /// The symbol.
        symbol: String,
        /// What it was wanted as.
        kind: SymbolKind,
    },
    /// More than one module defines a symbol; the first in scope order wins.
    Duplicate {
        /// The symbol.
        symbol: String,
        /// The module whose definition is used.
        chosen: String,
        /// The modules whose definitions are ignored.
        ignored: Vec<String>,
    },
    /// A function import's type differs from the export it would bind to.
    TypeMismatch {
        /// The importing module.
        module: String,
        /// The symbol.
        symbol: String,
        /// The type the importer expects.
        expected: String,
        /// The exporting module.
        exporter: String,
        /// The type the exporter has.
        found: String,
    },
    /// The symbol is defined, but as another kind of thing (data where a function is needed).
    KindMismatch {
        /// The importing module.
        module: String,
        /// The symbol.
        symbol: String,
        /// What the importer wants.
        wanted: SymbolKind,
        /// The exporting module.
        exporter: String,
    },
    /// A module has thread-local data but does not export what a linker needs to give each
    /// thread its own copy; only the first thread gets it.
    TlsNotPerThread {
        /// The module.
        module: String,
    },
    /// A non-PIE main defines `malloc` but does not export it with `free`, so the linker
    /// cannot start its allocator before placing libraries ([`crate::Op::StartAllocator`]):
    /// an allocator that takes all memory up to the memory's size at its first call, as
    /// wasi-libc's does, would hand out the libraries' data.
    AllocatorNotExported {
        /// The main module.
        module: String,
    },
}

impl Diagnostic {
    /// Whether this finding says a module was built in a way that breaks the program while
    /// it runs (thread-local data only the first thread gets; an allocator that may hand out
    /// libraries' memory): worth telling a user who did not ask, as a symbol left for lazy
    /// binding or a weak one left undefined is not.
    pub fn is_build_warning(&self) -> bool {
        matches!(
            self,
            Self::TlsNotPerThread { .. } | Self::AllocatorNotExported { .. }
        )
    }

    /// Whether this finding stops the link.
    pub fn is_error(&self) -> bool {
        match self {
            Self::Missing { deferred, .. } => !deferred,
            Self::TypeMismatch { .. } | Self::KindMismatch { .. } => true,
            Self::WeakMissing { .. }
            | Self::Duplicate { .. }
            | Self::TlsNotPerThread { .. }
            | Self::AllocatorNotExported { .. } => false,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing {
                module,
                symbol,
                kind,
                deferred: false,
            } => write!(
                f,
                "{module} needs {kind} `{symbol}`, which no loaded module or host defines \
                 (load the library that defines it, or provide it from the host)"
            ),
            Self::Missing {
                module,
                symbol,
                kind,
                deferred: true,
            } => write!(
                f,
                "{module} needs {kind} `{symbol}`, not defined yet: calling it traps unless a \
                 library loaded later with RTLD_GLOBAL defines it"
            ),
            Self::WeakMissing {
                module,
                symbol,
                kind,
            } => {
                write!(f, "{module}: weak {kind} `{symbol}` is undefined (null)")
            }
            Self::Duplicate {
                symbol,
                chosen,
                ignored,
            } => {
                write!(f, "`{symbol}` is defined by {chosen} and also by ")?;
                for (i, m) in ignored.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    f.write_str(m)?;
                }
                write!(f, "; {chosen} comes first in scope order and is used")
            }
            Self::TypeMismatch {
                module,
                symbol,
                expected,
                exporter,
                found,
            } => write!(
                f,
                "{module} needs `{symbol}: {expected}` but {exporter} exports \
                 `{symbol}: {found}` (rebuild one of them against the same declaration)"
            ),
            Self::KindMismatch {
                module,
                symbol,
                wanted,
                exporter,
            } => write!(
                f,
                "{module} needs `{symbol}` as a {wanted} but {exporter} exports it as \
                 something else"
            ),
            Self::TlsNotPerThread { module } => write!(
                f,
                "{module} has thread-local data but does not export `__wasm_init_tls`, \
                 `__tls_base`, `__tls_size` and `__tls_align`: only the first thread gets it \
                 (link it with --export=__tls_base --export-if-defined=__wasm_init_tls \
                 --export-if-defined=__tls_size --export-if-defined=__tls_align)"
            ),
            Self::AllocatorNotExported { module } => write!(
                f,
                "{module} defines `malloc` but does not export it and `free`, so its \
                 allocator cannot be started before libraries take memory; wasi-libc's \
                 would hand out their data at its first call (link it with \
                 --export=malloc --export=free)"
            ),
        }
    }
}

/// An error from the linker core.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A module's bytes could not be read.
    Parse {
        /// The module's path.
        path: String,
        /// What is wrong.
        error: ParseError,
    },
    /// A library was not found anywhere the search looked.
    NotFound {
        /// The name asked for.
        name: String,
        /// The module whose NEEDED list or dlopen asked for it, if any.
        needed_by: Option<String>,
        /// Every path tried, in order.
        tried: Vec<String>,
    },
    /// A name would resolve outside the configured library roots (`..`, absolute path
    /// elsewhere); refused before reading anything.
    OutsideRoots {
        /// The name asked for.
        name: String,
        /// Where it would have led.
        path: String,
    },
    /// The embedder's module source failed to read a file.
    Source {
        /// The path.
        path: String,
        /// The source's message.
        message: String,
    },
    /// A module loaded as a library has no `dylink.0` section.
    NotDynamic {
        /// The module's path.
        path: String,
    },
    /// The main module is neither a PIE (`dylink.0`) nor a non-PIE main exporting its memory
    /// and table.
    BadMain {
        /// The module's path.
        path: String,
        /// What is missing.
        message: String,
    },
    /// Symbol resolution found errors; every finding is listed, warnings included.
    Link {
        /// All findings.
        diagnostics: Vec<Diagnostic>,
    },
    /// Memory or table would exceed its maximum or the address space.
    OutOfSpace {
        /// `memory` or `table`.
        what: &'static str,
        /// How much was needed.
        needed: u64,
        /// The limit.
        limit: u64,
    },
    /// A plan was made against a state that has changed since (another plan was committed).
    StalePlan,
    /// A group made a plan without first applying what other groups committed
    /// ([`Linker::pending_ops`](crate::Linker::pending_ops)).
    GroupBehind {
        /// The group.
        group: u32,
    },
    /// A handle that does not name a loaded module.
    BadHandle {
        /// The handle value.
        handle: u64,
    },
    /// A closure operation named a table slot that is not a live closure slot.
    NotClosureSlot {
        /// The slot.
        slot: u64,
    },
    /// `RTLD_NOLOAD` and the library is not loaded.
    NotLoaded {
        /// The name asked for.
        name: String,
    },
    /// `dlsym` found nothing.
    SymbolNotFound {
        /// The symbol.
        symbol: String,
        /// Where it looked.
        scope: String,
    },
    /// A module uses something this linker does not support.
    Unsupported {
        /// The module's path.
        path: String,
        /// What.
        message: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Parse { path, error } => write!(f, "{path}: {error}"),
            Self::NotFound {
                name,
                needed_by,
                tried,
            } => {
                write!(f, "library `{name}` not found")?;
                if let Some(m) = needed_by {
                    write!(f, " (needed by {m})")?;
                }
                if tried.is_empty() {
                    f.write_str(
                        "; no search path is configured (add one with -L or LD_LIBRARY_PATH)",
                    )
                } else {
                    f.write_str("; tried ")?;
                    for (i, p) in tried.iter().enumerate() {
                        if i > 0 {
                            f.write_str(", ")?;
                        }
                        f.write_str(p)?;
                    }
                    f.write_str(" (add its directory to the search path)")
                }
            }
            Self::OutsideRoots { name, path } => write!(
                f,
                "library name `{name}` leads to `{path}`, outside the configured library \
                 roots; refused"
            ),
            Self::Source { path, message } => write!(f, "cannot read {path}: {message}"),
            Self::NotDynamic { path } => write!(
                f,
                "{path} is not a dynamic library (no `dylink.0` section, or it defines its own \
                 memory like a main module); build it with -fPIC and link with -shared \
                 --experimental-pic"
            ),
            Self::BadMain { path, message } => {
                write!(f, "{path} cannot be a main module: {message}")
            }
            Self::Link { diagnostics } => {
                let errors: Vec<_> = diagnostics.iter().filter(|d| d.is_error()).collect();
                write!(f, "link failed with {} error(s)", errors.len())?;
                for d in errors {
                    write!(f, "; {d}")?;
                }
                Ok(())
            }
            Self::OutOfSpace {
                what: "memory",
                needed,
                limit,
            } => write!(
                f,
                "memory exhausted: {needed} bytes needed, the limit is {limit} (link the \
                 program with a larger --max-memory, or lower Config::stack_size and \
                 Config::initial_heap)"
            ),
            Self::OutOfSpace {
                what: "table",
                needed,
                limit,
            } => write!(
                f,
                "table exhausted: {needed} slots needed, the limit is {limit} (a non-PIE main \
                 fixes its table's size unless linked with --growable-table)"
            ),
            Self::OutOfSpace {
                what,
                needed,
                limit,
            } => {
                write!(f, "{what} exhausted: {needed} needed, the limit is {limit}")
            }
            Self::StalePlan => f.write_str(
                "plan is stale: another plan was committed since it was made; plan again",
            ),
            Self::GroupBehind { group } => write!(
                f,
                "instance group {group} has not applied the operations other groups committed; \
                 apply its pending ops, then plan again"
            ),
            Self::BadHandle { handle } => write!(f, "invalid handle {handle:#x}"),
            Self::NotClosureSlot { slot } => write!(
                f,
                "function-pointer slot {slot} is not a closure slot (never allocated as one, or already freed); allocate closure slots first"
            ),
            Self::NotLoaded { name } => write!(f, "`{name}` is not loaded (RTLD_NOLOAD)"),
            Self::SymbolNotFound { symbol, scope } => {
                write!(f, "undefined symbol `{symbol}` in {scope}")
            }
            Self::Unsupported { path, message } => write!(f, "{path}: unsupported: {message}"),
        }
    }
}

impl core::error::Error for Error {}
