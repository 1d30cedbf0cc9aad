//! Plans: what an adapter must do, as data.
//!
//! An adapter executes [`Plan::ops`] in order with one `match` over [`Op`]. It decides
//! nothing: every address, slot, value and order is in the ops. A new op variant fails to
//! compile in every adapter until handled.

use core::fmt;

use crate::error::Diagnostic;
use crate::index::*;
use crate::module::{DlFunc, FuncType, Name, ValType};
use crate::prelude::*;

/// How one import of a module is satisfied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Binding {
    /// The group's linear memory.
    Memory,
    /// The group's function table.
    Table,
    /// A global the linker created with [`Op::CreateGlobal`].
    Global(GlobalId),
    /// A tag the linker created with [`Op::CreateTag`].
    Tag(TagId),
    /// The export `name` of an already instantiated module.
    Export {
        /// The module.
        module: ModuleId,
        /// The export's position in the module's export section (what
        /// [`ModuleInfo::exports`](crate::ModuleInfo) lists at that index), for engines that
        /// can fetch an export by position instead of by name.
        index: u32,
        /// Its name.
        name: Name,
    },
    /// Trampoline `index` of a generated module: its export at position `index`, named
    /// `t{index}` ([`trampoline::export_name`](crate::trampoline::export_name)).
    Generated {
        /// The generated module.
        gen_id: GenId,
        /// The trampoline's position among the module's exports.
        index: u32,
    },
    /// The adapter's guest dlfcn function, called from `caller` (for `RTLD_NEXT` and for
    /// the caller's RUNTIME_PATH).
    Dl {
        /// Which function.
        func: DlFunc,
        /// The importing module.
        caller: ModuleId,
    },
    /// The adapter's `wasi.thread-spawn`: start a new instance group on a new thread and call
    /// the main module's `wasi_thread_start(tid, arg)` there; return the thread id, or a
    /// negative number if no thread could be started.
    ThreadSpawn,
    /// The adapter's `dylink.after_wait: (i32) -> i32` ([`crate::safepoints`]): catch the calling
    /// group up with what other groups committed, then return the argument. Must not block
    /// on the linker lock while the calling thread itself holds it (a guest call made by a
    /// structural op): skip the catch-up then.
    AfterWait,
    /// The adapter's `dylink.catch_up: () -> ()` ([`crate::safepoints`]), called before an
    /// indirect call when the group's `seen` global differs from the commit counter: read the
    /// counter (an atomic load of the `i32` at [`Linker::commit_counter`]), catch the group
    /// up, and store the value read in `seen`. While the calling thread itself holds the
    /// linker lock (a guest call made by a structural op) its group is current: store the
    /// value without catching up.
    ///
    /// [`Linker::commit_counter`]: crate::Linker::commit_counter
    CatchUp,
    /// The group's own `(mut i32)` global for `dylink.seen` ([`crate::safepoints`]), one per
    /// group, the same global for every module of the group.
    Seen,
    /// A host function of type `ty` that traps with a message naming `symbol` (a weak
    /// undefined function that was called).
    Trap {
        /// The symbol.
        symbol: Name,
        /// The function type (boxed: bindings are many, traps are few).
        ty: Box<FuncType>,
    },
    /// A new funcref table of `slots` null entries, created for the generated module being
    /// instantiated and owned by it: [`Op::SetTrampoline`] writes its entries.
    TrampolineTable {
        /// Its size.
        slots: u32,
    },
    /// The embedder's own import `module.name` (its `wasmtime::Linker`, `wasmer::Imports`).
    Host(Box<HostName>),
}

/// An import the embedder defines: `module.name` (boxed where it is one case of many, so
/// that bindings, slot values and ops stay small).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostName {
    /// Namespace.
    pub module: Name,
    /// Name.
    pub name: Name,
}

impl HostName {
    /// `module.name`, boxed.
    pub fn boxed(module: impl Into<Name>, name: impl Into<Name>) -> Box<Self> {
        Box::new(HostName {
            module: module.into(),
            name: name.into(),
        })
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.module, self.name)
    }
}

/// What a table slot is set to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotValue {
    /// `ref.null func`: calling through it traps.
    Null,
    /// A module's exported function.
    Export {
        /// The module.
        module: ModuleId,
        /// The export.
        name: Name,
    },
    /// The embedder's host function `module.name`.
    Host(Box<HostName>),
    /// A host function of type `ty` that traps naming `symbol`: the slot of a function that
    /// is not defined (yet). Replaced by [`SlotValue::Export`] once a library defines it.
    Trap {
        /// The symbol.
        symbol: Name,
        /// Its type, as far as the importer declared it (boxed: slot values are many, traps
        /// few).
        ty: Box<FuncType>,
    },
}

/// An init function the linker calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InitCall {
    /// `__wasm_apply_data_relocs`: once per module, before anything else runs in it.
    ApplyDataRelocs,
    /// `__wasm_apply_tls_relocs`: after data relocations.
    ApplyTlsRelocs,
    /// `__wasm_call_ctors`: static constructors.
    CallCtors,
    /// `_initialize`: reactor entry (calls the constructors itself).
    Initialize,
    /// `__wasm_call_dtors`: static destructors, before unloading.
    CallDtors,
}

impl InitCall {
    /// The export name.
    pub fn export_name(self) -> &'static str {
        match self {
            Self::ApplyDataRelocs => "__wasm_apply_data_relocs",
            Self::ApplyTlsRelocs => "__wasm_apply_tls_relocs",
            Self::CallCtors => "__wasm_call_ctors",
            Self::Initialize => "_initialize",
            Self::CallDtors => "__wasm_call_dtors",
        }
    }
}

/// One step of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Emitted first in the startup plan of a PIE main. The adapter MUST create the linear
    /// memory with exactly these limits (shared memory needs the engine's threads support;
    /// without it, fail with a message saying so).
    CreateMemory {
        /// Initial pages.
        min_pages: u64,
        /// Maximum pages.
        max_pages: Option<u64>,
        /// Shared between threads.
        shared: bool,
        /// i64-indexed.
        memory64: bool,
    },
    /// Emitted right after instantiating a non-PIE main. The adapter MUST use the module's
    /// exported memory `export` as the linear memory from now on.
    AdoptMemory {
        /// The main module.
        module: ModuleId,
        /// Its memory export.
        export: String,
    },
    /// Emitted when a new instance group starts. The adapter MUST attach the existing shared
    /// memory to the group's store.
    AttachMemory,
    /// Emitted before any instantiation in a startup or group plan. The adapter MUST create
    /// the group's funcref table with `min` null slots.
    CreateTable {
        /// Initial slots.
        min: u64,
        /// i64-indexed.
        table64: bool,
    },
    /// Emitted right after instantiating a non-PIE main. The adapter MUST use the module's
    /// exported table `export` as the function table from now on.
    AdoptTable {
        /// The main module.
        module: ModuleId,
        /// Its table export.
        export: String,
    },
    /// Emitted when new regions do not fit in free memory. The adapter MUST grow the memory
    /// from exactly `from_pages` to `to_pages`; if its current size is not `from_pages`
    /// (the guest grew it meanwhile) the op fails and the plan must be aborted and remade.
    GrowMemory {
        /// Expected current size.
        from_pages: u64,
        /// New size.
        to_pages: u64,
    },
    /// Emitted when new slots do not fit in the table. The adapter MUST grow the table from
    /// `from` to `to` slots, filling with null, and fail if its size is not `from`.
    GrowTable {
        /// Expected current size.
        from: u64,
        /// New size.
        to: u64,
    },
    /// The adapter MUST create a global with this type and value, addressable by `global`.
    CreateGlobal {
        /// Id.
        global: GlobalId,
        /// Type.
        ty: ValType,
        /// Mutable.
        mutable: bool,
        /// Initial value (integer bits).
        value: u64,
    },
    /// The adapter MUST set the mutable global `global` to `value`.
    SetGlobal {
        /// Id.
        global: GlobalId,
        /// Value (integer bits).
        value: u64,
    },
    /// The adapter MUST create a tag with these parameter types, addressable by `tag`.
    CreateTag {
        /// Id.
        tag: TagId,
        /// Parameter types (results are empty; boxed: tags are few, ops many).
        ty: Box<FuncType>,
    },
    /// The adapter MUST zero `len` bytes at `addr` (a reused region).
    ZeroMemory {
        /// Start.
        addr: Addr,
        /// Length in bytes.
        len: u64,
    },
    /// The adapter MUST compile the generated module `bytes` and instantiate it with
    /// `imports` (one binding per import, in order).
    InstantiateGenerated {
        /// Id.
        gen_id: GenId,
        /// A valid core module.
        bytes: Arc<[u8]>,
        /// One binding per import.
        imports: Vec<Binding>,
    },
    /// The adapter MUST instantiate `module` (compiled from the bytes the plan lists) with
    /// `imports`, one binding per import, in order.
    Instantiate {
        /// The module.
        module: ModuleId,
        /// One binding per import (shared: every group replays the same list; kept as the
        /// vector it was built in, as `Arc<[Binding]>` would copy it).
        imports: Arc<Vec<Binding>>,
    },
    /// The adapter MUST store `value` in table slot `slot`.
    SetSlot {
        /// The slot.
        slot: Slot,
        /// What to store.
        value: SlotValue,
    },
    /// The adapter MUST store `value` in entry `index` of the generated module's own table
    /// (the one it created for [`Binding::TrampolineTable`]): where trampoline `t{index}`
    /// forwards its calls.
    SetTrampoline {
        /// The generated module.
        gen_id: GenId,
        /// Trampoline index.
        index: u32,
        /// The target.
        value: SlotValue,
    },
    /// The adapter MUST set `len` table slots from `start` to null (an unloaded module's
    /// region: its function pointers now trap).
    ClearSlots {
        /// First slot.
        start: Slot,
        /// Number of slots.
        len: u64,
    },
    /// The adapter MUST call the module's exported init function.
    Call {
        /// The module.
        module: ModuleId,
        /// Which function.
        func: InitCall,
    },
    /// The adapter MUST call `__wasm_init_tls(block)` of `module` in this group.
    InitTls {
        /// The module.
        module: ModuleId,
        /// The group's TLS block for it.
        block: Addr,
    },
    /// The adapter MUST call `__cxa_finalize(dso)` exported by `libc`: runs the `atexit`
    /// handlers a closing module registered.
    Finalize {
        /// The module exporting `__cxa_finalize`.
        libc: ModuleId,
        /// The closing module.
        module: ModuleId,
        /// The closing module's `__dso_handle` address.
        dso: Addr,
    },
    /// Emitted right after a non-PIE main's memory and table are adopted, before the
    /// linker grows memory for libraries, when the main exports `malloc: (ptr) -> ptr` and
    /// `free: (ptr) -> ()`. The adapter MUST call `malloc(0)` and pass what it returns to
    /// `free`. Such a main's allocator owns the heap from its `__heap_base`, and wasi-libc's
    /// (before `__heap_end`, as Debian ships it) takes everything up to the memory's size
    /// at its first call: started before the libraries' regions exist at the end of memory,
    /// it grows past them instead of handing them out.
    StartAllocator {
        /// The main module.
        module: ModuleId,
    },
    /// The adapter MUST forget the instance of `module` (and stop calling into it).
    Unload {
        /// The module.
        module: ModuleId,
    },
}

impl Op {
    /// Whether this op runs guest code (init calls, TLS initialisation, `__cxa_finalize`).
    pub fn is_guest_call(&self) -> bool {
        matches!(
            self,
            Op::Call { .. } | Op::InitTls { .. } | Op::Finalize { .. } | Op::StartAllocator { .. }
        )
    }

    /// Whether this op acts on the shared memory (done once, by the group that applies the
    /// plan) rather than on the group's own store (replayed in every group).
    pub fn is_memory_op(&self) -> bool {
        matches!(
            self,
            Op::CreateMemory { .. }
                | Op::GrowMemory { .. }
                | Op::ZeroMemory { .. }
                | Op::Call { .. }
                | Op::Finalize { .. }
                | Op::StartAllocator { .. }
        )
    }

    /// One past the highest global `ops` create: the room an adapter keeps for a group's
    /// global handles (reserved once, a vector grown global by global doubles past it).
    pub fn globals_end(ops: &[Op]) -> Option<usize> {
        (ops.iter())
            .filter_map(|op| match op {
                Op::CreateGlobal { global, .. } => Some(global.index() + 1),
                _ => None,
            })
            .max()
    }
}

/// A module a plan introduces: the adapter compiles `bytes` (or takes it from its cache)
/// before applying the ops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewModule {
    /// Its id.
    pub id: ModuleId,
    /// The name it was asked for by.
    pub name: String,
    /// Where it was found.
    pub path: String,
    /// Its bytes.
    pub bytes: Arc<[u8]>,
}

/// What committing a plan yields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to report.
    Done,
    /// The module a load or dlopen was about.
    Loaded(ModuleId),
    /// The value a dlsym found.
    Symbol(crate::SymbolValue),
    /// The first of a batch of closure slots.
    Slots(Slot, u64),
    /// A new instance group.
    Group(GroupId),
}

/// What kind of request a plan answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanKind {
    /// Load the main module and its tree.
    Startup,
    /// `dlopen`.
    Dlopen,
    /// `dlsym` that needed a new function-pointer slot.
    Dlsym,
    /// `dlclose`.
    Dlclose,
    /// The destructors of the libraries a `dlclose` would unload, which have not run yet:
    /// guest calls only, run after the commit (as a load's constructors are), so they may
    /// call the dl functions. Once it ran, plan the `dlclose` again: that plan unloads.
    Destructors,
    /// Closure slots.
    Closures,
    /// A new instance group.
    Group,
    /// A group leaving.
    GroupExit,
}

/// A plan: ops to apply in order, then [`Linker::commit`](crate::Linker::commit) or
/// [`Linker::abort`](crate::Linker::abort).
#[derive(Debug)]
#[must_use = "a plan must be committed or aborted"]
pub struct Plan {
    pub(crate) kind: PlanKind,
    pub(crate) group: GroupId,
    pub(crate) generation: u64,
    /// Modules to compile before applying the ops.
    pub modules: Vec<NewModule>,
    /// The ops, in order (shared with the replication log, so never copied).
    pub ops: Arc<Vec<Op>>,
    /// Every finding of symbol resolution (warnings only: a plan with errors is not made).
    pub diagnostics: Vec<Diagnostic>,
    /// Pointers are 64-bit (memory64): the width of the guest dlfcn functions' pointers.
    pub memory64: bool,
    /// Boxed: a plan is returned by value through every dl operation's `Result`.
    pub(crate) delta: Box<crate::linker::Delta>,
}

impl Plan {
    /// A copy (kept crate-private: two copies of a plan cannot both be committed).
    pub(crate) fn duplicate(&self) -> Plan {
        Plan {
            kind: self.kind,
            group: self.group,
            generation: self.generation,
            modules: self.modules.clone(),
            ops: self.ops.clone(),
            diagnostics: self.diagnostics.clone(),
            memory64: self.memory64,
            delta: self.delta.clone(),
        }
    }

    /// Where the trailing run of guest calls of a load plan (relocations, TLS initialisation,
    /// constructors) or of a [`PlanKind::Destructors`] plan (all of it) begins. An adapter
    /// may commit after applying the ops before it and run these afterwards without holding
    /// the linker, so a constructor or destructor can itself call `dlopen` or `dlclose`.
    /// For other plans, `ops.len()`: every op is applied before the commit.
    pub fn guest_tail(&self) -> usize {
        match self.kind {
            PlanKind::Startup | PlanKind::Dlopen | PlanKind::Destructors => self
                .ops
                .iter()
                .rposition(|op| !op.is_guest_call())
                .map_or(0, |i| i + 1),
            _ => self.ops.len(),
        }
    }

    /// What this plan answers.
    pub fn kind(&self) -> PlanKind {
        self.kind
    }
    /// The group the plan is for (the one that applies it).
    pub fn group(&self) -> GroupId {
        self.group
    }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Binding::Memory => f.write_str("memory"),
            Binding::Table => f.write_str("table"),
            Binding::Global(g) => write!(f, "{g}"),
            Binding::Tag(t) => write!(f, "{t}"),
            Binding::Export { module, name, .. } => write!(f, "{module}.{name}"),
            Binding::Generated { gen_id, index } => write!(
                f,
                "{gen_id}.{}",
                crate::trampoline::export_name(*index as usize)
            ),
            Binding::Dl { func, caller } => write!(f, "dl:{}@{caller}", func.name()),
            Binding::ThreadSpawn => f.write_str("thread-spawn"),
            Binding::AfterWait => f.write_str("after-wait"),
            Binding::CatchUp => f.write_str("catch-up"),
            Binding::Seen => f.write_str("seen"),
            Binding::Trap { symbol, .. } => write!(f, "trap:{symbol}"),
            Binding::TrampolineTable { slots } => write!(f, "own-table[{slots}]"),
            Binding::Host(h) => write!(f, "host:{h}"),
        }
    }
}

impl fmt::Display for SlotValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotValue::Null => f.write_str("null"),
            SlotValue::Export { module, name } => write!(f, "{module}.{name}"),
            SlotValue::Host(h) => write!(f, "host:{h}"),
            SlotValue::Trap { symbol, ty } => write!(f, "trap:{symbol} {ty}"),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::CreateMemory {
                min_pages,
                max_pages,
                shared,
                memory64,
            } => {
                write!(f, "create-memory pages={min_pages}")?;
                if let Some(m) = max_pages {
                    write!(f, " max={m}")?;
                }
                if *shared {
                    f.write_str(" shared")?;
                }
                if *memory64 {
                    f.write_str(" memory64")?;
                }
                Ok(())
            }
            Op::AdoptMemory { module, export } => write!(f, "adopt-memory {module}.{export}"),
            Op::AttachMemory => f.write_str("attach-memory"),
            Op::CreateTable { min, table64 } => {
                write!(
                    f,
                    "create-table slots={min}{}",
                    if *table64 { " table64" } else { "" }
                )
            }
            Op::AdoptTable { module, export } => write!(f, "adopt-table {module}.{export}"),
            Op::GrowMemory {
                from_pages,
                to_pages,
            } => {
                write!(f, "grow-memory {from_pages} -> {to_pages} pages")
            }
            Op::GrowTable { from, to } => write!(f, "grow-table {from} -> {to}"),
            Op::CreateGlobal {
                global,
                ty,
                mutable,
                value,
            } => write!(
                f,
                "global {global} {}{ty} = {value:#x}",
                if *mutable { "mut " } else { "" }
            ),
            Op::SetGlobal { global, value } => write!(f, "set {global} = {value:#x}"),
            Op::CreateTag { tag, ty } => write!(f, "tag {tag} {ty}"),
            Op::ZeroMemory { addr, len } => write!(f, "zero {addr}+{len:#x}"),
            Op::InstantiateGenerated {
                gen_id,
                bytes,
                imports,
            } => {
                write!(f, "instantiate {gen_id} ({} bytes) [", bytes.len())?;
                list(f, imports)?;
                f.write_str("]")
            }
            Op::Instantiate { module, imports } => {
                write!(f, "instantiate {module} [")?;
                list(f, imports)?;
                f.write_str("]")
            }
            Op::SetSlot { slot, value } => write!(f, "{slot} = {value}"),
            Op::SetTrampoline {
                gen_id,
                index,
                value,
            } => write!(f, "{gen_id}.table[{index}] = {value}"),
            Op::ClearSlots { start, len } => write!(f, "clear {start}+{len}"),
            Op::Call { module, func } => write!(f, "call {module}.{}", func.export_name()),
            Op::StartAllocator { module } => {
                write!(f, "start-allocator {module} (free(malloc(0)))")
            }
            Op::InitTls { module, block } => write!(f, "call {module}.__wasm_init_tls({block})"),
            Op::Finalize { libc, module, dso } => {
                write!(f, "call {libc}.__cxa_finalize({dso}) for {module}")
            }
            Op::Unload { module } => write!(f, "unload {module}"),
        }
    }
}

fn list(f: &mut fmt::Formatter<'_>, items: &[Binding]) -> fmt::Result {
    for (i, b) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{b}")?;
    }
    Ok(())
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "plan {:?} for {}", self.kind, self.group)?;
        for m in &self.modules {
            writeln!(
                f,
                "  module {} = {} ({} bytes)",
                m.id,
                m.path,
                m.bytes.len()
            )?;
        }
        for op in self.ops.iter() {
            writeln!(f, "  {op}")?;
        }
        for d in &self.diagnostics {
            writeln!(f, "  note: {d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globals_end_is_one_past_the_highest_global_made() {
        let global = |i: usize| Op::CreateGlobal {
            global: GlobalId::new(i),
            ty: ValType::I32,
            mutable: false,
            value: 0,
        };
        let set = Op::SetGlobal {
            global: GlobalId::new(40),
            value: 1,
        };
        assert_eq!(Op::globals_end(&[]), None);
        assert_eq!(
            Op::globals_end(core::slice::from_ref(&set)),
            None,
            "set, not made"
        );
        assert_eq!(Op::globals_end(&[global(7), set, global(3)]), Some(8));
    }
}
