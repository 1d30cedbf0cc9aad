//! The planning core of dylink, a dynamic linker for WebAssembly programs built by
//! clang/wasm-ld with `-fPIC` (`dylink.0` main modules and side modules).
//!
//! This crate knows no engine and no file system. It reads module bytes handed to it through
//! [`ModuleSource`], decides every link decision — load order, memory and table layout,
//! symbol bindings, function-pointer slots, lazy-binding trampolines, init order, run-time
//! `dlopen`/`dlsym`/`dladdr`/`dlclose`, thread replication — and returns those decisions as
//! [`Plan`]s: ordered lists of [`Op`]s that an engine adapter (`dylink-wasmtime`,
//! `dylink-wasmer`) applies without deciding anything itself.
//!
//! # The driving loop
//!
//! ```no_run
//! use dylink_core::{Config, Linker, MemorySource, NoHost, Op, MAIN_GROUP};
//! # fn apply(_: &Op) -> Result<(), String> { Ok(()) }
//! # let main_bytes: Vec<u8> = Vec::new();
//! let source = MemorySource::new(); // or a confined directory the adapter provides
//! let mut linker = Linker::new(Config::default());
//! let plan = linker.plan_startup("/app/main.wasm", main_bytes.into(), &source, &NoHost)?;
//! // Compile `plan.modules`, then apply every op in order with one `match`.
//! let applied: Result<(), String> = plan.ops.iter().try_for_each(apply);
//! match applied {
//!     Ok(()) => { linker.commit(plan)?; }
//!     Err(_) => linker.abort(plan), // the linker is exactly as before
//! }
//! // Later, other instance groups (threads) catch up:
//! # let group = MAIN_GROUP;
//! let (ops, cursor) = linker.pending_ops(group)?;
//! ops.iter().try_for_each(apply).unwrap();
//! linker.caught_up(group, cursor);
//! # Ok::<(), dylink_core::Error>(())
//! ```
//!
//! Adapters need not write this loop themselves: [`drive::drive`] runs it for an
//! [`drive::Applier`], with the commit before a load's constructors so they may `dlopen`.
//!
//! See `ARCHITECTURE.md` at the repository root for the invariants.
#![no_std]
#![deny(missing_docs)]

extern crate alloc;

#[cfg(feature = "std")]
extern crate std;

mod cache;
mod config;
pub mod direct;
pub mod drive;
mod error;
mod globals;
pub mod guest;
mod index;
mod layout;
mod linker;
mod module;
mod name;
pub mod path;
mod plan;
mod prelude;
mod report;
pub mod safepoints;
mod symbols;
mod sync;
pub mod trampoline;
pub mod workers;

pub use cache::{BoundedBytesMap, BytesMap, ModuleCache};
pub use config::*;
pub use error::{Diagnostic, Error, ParseError, SymbolKind, Warning};
pub use index::{Addr, Entity, GenId, GlobalId, GroupId, IdMap, ModuleId, Slot, TagId};
pub use layout::{FreeRange, Grant, PAGE, RegionAlloc, align_up};
pub use linker::{AddrInfo, DlsymAnswer, Linker, LoadedModule, MAIN_GROUP, MainLayout};
pub use module::*;
pub use plan::{Binding, HostName, InitCall, NewModule, Op, Outcome, Plan, PlanKind, SlotValue};
pub use report::{LddEntry, LddReport, ldd};
pub use sync::SharedLinker;
pub use workers::{Parallel, Workers};
