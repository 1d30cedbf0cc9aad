//! The linker state and its planner.
//!
//! [`Linker`] owns every decision. Planning borrows it immutably and collects the changes a
//! plan would make in a private [`Delta`]; [`Linker::commit`] applies the delta, and
//! [`Linker::abort`] drops it. So an aborted plan leaves the linker exactly as it was, by
//! construction rather than by undo code.

use core::fmt;

use smallvec::SmallVec;

use crate::config::*;
use crate::error::{Diagnostic, Error, SymbolKind};
use crate::globals::{ConstGlobals, ConstKey};
use crate::index::*;
use crate::layout::{PAGE, RegionAlloc, align_up};
use crate::module::*;
use crate::path::{Requester, normalize};
use crate::plan::*;
use crate::prelude::*;
use crate::symbols::SymbolTable;
use crate::trampoline;

/// A module's bytes as the adapter instantiates them (rewritten with safe points if it needed
/// them), and what they say.
type Prepared = (Arc<[u8]>, Arc<ModuleInfo>);

/// Read a module through `cache`, if any. A free function so reading can run on other
/// threads ([`crate::workers`]) with nothing of the linker borrowed.
fn prepare(
    cache: Option<&crate::ModuleCache>,
    bytes: Arc<[u8]>,
) -> Result<Prepared, crate::ParseError> {
    match cache {
        Some(cache) => cache.prepare(bytes),
        None => crate::safepoints::prepare(bytes).map(|(b, info)| (b, Arc::new(info))),
    }
}

/// What reading a path gave before a level of a NEEDED tree was walked
/// ([`Txn::read_ahead`]).
enum Ahead {
    /// The source has no file there.
    Absent,
    /// The source could not read it (its message).
    Failed(String),
    /// Read, not yet parsed (too little to be worth a thread).
    Read(Arc<[u8]>),
    /// Read and parsed.
    Prepared(Result<Prepared, crate::ParseError>),
}

/// What [`Txn::read_ahead`] read of one level, for the walk of that level.
#[derive(Default)]
struct ReadAhead {
    /// What reading each path gave.
    files: HashMap<String, Ahead>,
    /// Each name's candidate paths, by its position in the level (`None`: the walk searches
    /// itself, the name being loaded already or its search failing).
    searched: Vec<Option<Vec<String>>>,
}

/// A definition: a module and the index of one of its exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Def {
    module: ModuleId,
    export: u32,
}

/// A loaded module, as the linker records it.
#[derive(Clone, Debug)]
pub struct LoadedModule {
    /// Its id.
    pub id: ModuleId,
    /// The name it was first asked for by.
    pub name: String,
    /// Where it was found.
    pub path: String,
    /// What its bytes say.
    pub info: Arc<ModuleInfo>,
    /// `__memory_base`: start of its data region (0 for a non-PIE main).
    pub memory_base: u64,
    /// Bytes reserved at `memory_base`.
    pub memory_size: u64,
    /// `__table_base`: first slot of its table region.
    pub table_base: u64,
    /// Slots reserved at `table_base`.
    pub table_size: u64,
    /// Outstanding `dlopen` references.
    pub refs: u32,
    /// Never unloaded (startup modules, `RTLD_NODELETE`).
    pub pinned: bool,
    /// Position in the global scope, if the module is in it.
    pub global_seq: Option<u64>,
    /// The root of the load whose local scope this module belongs to.
    pub scope_root: ModuleId,
    /// This module and its NEEDED closure, breadth first: the scope `dlsym(handle)` searches.
    pub closure: Arc<[ModuleId]>,
    /// Its NEEDED entries, resolved.
    pub needed: Vec<ModuleId>,
    /// Modules its imports bound to (they stay loaded while it is).
    pub uses: Vec<ModuleId>,
    /// How many loaded modules need or use it (through their `needed` or `uses`), kept by
    /// each commit: `dlclose` tells from it whether a module is needed from outside what it
    /// unloads.
    pub users: u32,
    /// Its destructors ran (a `dlclose` that would unload it ran them in a plan of their
    /// own); they do not run again.
    pub finalized: bool,
    /// Its place in load order (dependencies before dependents): constructors run in it,
    /// destructors in reverse. Instances may be made in another order (`Txn::binding_order`).
    pub order: u64,
    /// The main module.
    pub is_main: bool,
}

#[derive(Clone, Debug, Default)]
struct Pending {
    /// The `GOT.func` slot handed out for it (becomes the canonical slot once defined).
    slot: Option<Slot>,
    /// Trampolines forwarding to it.
    trampolines: Vec<(GenId, u32)>,
    /// Its type, as the first importer declared it.
    ty: Option<FuncType>,
    /// Modules waiting for it.
    waiters: SmallVec<[ModuleId; 2]>,
}

/// What a lazily bound function import forwards to, for a call rewritten to go through the
/// function's slot ([`crate::direct`]).
#[derive(Clone, Debug)]
enum LazyTarget {
    /// A function of a module instantiated later: its canonical slot.
    Defined {
        module: ModuleId,
        func: u32,
        name: Name,
    },
    /// A symbol nothing defines yet, as the importer declares it: the slot it waits in.
    Pending { symbol: Name, ty: FuncType },
}

/// What a table slot holds, for `dladdr` and unloading.
#[derive(Clone, Debug, PartialEq, Eq)]
enum SlotUse {
    /// The canonical slot of a module's function.
    Func { module: ModuleId, func: u32 },
    /// The slot of a function not defined yet.
    Pending(Name),
    /// A closure slot.
    Closure,
    /// A host function's slot.
    Host(Name),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct MemState {
    /// Size the core last knew, in bytes.
    bytes: u64,
    alloc: RegionAlloc,
    memory64: bool,
    shared: bool,
    max_pages: Option<u64>,
    /// The commit counter's address (shared memory only; see [`crate::safepoints`]).
    counter: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct TableState {
    size: u64,
    alloc: RegionAlloc,
    table64: bool,
    max: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct GroupState {
    /// Log entries applied.
    cursor: usize,
    /// Its `dlerror` buffer.
    dlerror: Addr,
    /// Its TLS block per module.
    tls: Vec<(ModuleId, Addr)>,
}

/// Live instance groups by id. Ids are never reused (a handle to an exited group stays
/// invalid), and an exited group leaves nothing behind: a program that starts and ends
/// threads for ever keeps a state the size of its live threads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Groups {
    next: u32,
    /// Sorted by id.
    live: Vec<(GroupId, GroupState)>,
}

impl Groups {
    /// A program's first group, the main one.
    fn main(state: GroupState) -> Self {
        let mut g = Self::default();
        g.insert(state);
        g
    }
    fn get(&self, id: GroupId) -> Option<&GroupState> {
        let i = self.live.binary_search_by_key(&id, |(g, _)| *g).ok()?;
        Some(&self.live[i].1)
    }
    fn get_mut(&mut self, id: GroupId) -> Option<&mut GroupState> {
        let i = self.live.binary_search_by_key(&id, |(g, _)| *g).ok()?;
        Some(&mut self.live[i].1)
    }
    fn iter(&self) -> impl Iterator<Item = (GroupId, &GroupState)> {
        self.live.iter().map(|(g, s)| (*g, s))
    }
    fn states_mut(&mut self) -> impl Iterator<Item = &mut GroupState> {
        self.live.iter_mut().map(|(_, s)| s)
    }
    /// The id the next group gets.
    fn next_id(&self) -> GroupId {
        GroupId(self.next)
    }
    fn insert(&mut self, state: GroupState) -> GroupId {
        let id = self.next_id();
        self.next += 1;
        self.live.push((id, state));
        id
    }
    fn remove(&mut self, id: GroupId) {
        self.live.retain(|(g, _)| *g != id);
    }
}

/// The layout of a PIE main's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MainLayout {
    /// `__stack_low`
    pub stack_low: u64,
    /// `__stack_high`: initial stack pointer.
    pub stack_high: u64,
    /// `__heap_base`
    pub heap_base: u64,
    /// `__heap_end`
    pub heap_end: u64,
}

/// One committed plan in the replication log: its ops (shared with the plan, never copied)
/// and the positions whose op depends on the group replaying it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct LogChunk {
    ops: Arc<Vec<Op>>,
    /// Sorted by position.
    templates: Vec<(u32, LogOp)>,
    /// What the ops refer to, so that a compaction passes over an entry that cannot hold
    /// anything to forget without reading its ops.
    reach: Reach,
}

impl LogChunk {
    fn new(ops: Arc<Vec<Op>>, templates: Vec<(u32, LogOp)>) -> Self {
        let mut reach = Reach::default();
        for op in ops.iter() {
            if let Some(m) = op_module(op) {
                reach.modules.add(m.0 as u64);
            }
            if let Op::SetSlot { slot, .. } = op {
                reach.slots.add(slot.0);
            }
        }
        Self {
            ops,
            templates,
            reach,
        }
    }
}

/// The modules a log entry's ops concern ([`op_module`]) and the slots its `SetSlot`s write,
/// as spans.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Reach {
    modules: Span,
    slots: Span,
}

/// The smallest range holding some numbers; empty at first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    lo: u64,
    hi: u64,
}

impl Default for Span {
    fn default() -> Self {
        Self {
            lo: u64::MAX,
            hi: 0,
        }
    }
}

impl Span {
    fn add(&mut self, x: u64) {
        self.lo = self.lo.min(x);
        self.hi = self.hi.max(x);
    }

    fn add_range(&mut self, start: u64, len: u64) {
        if len > 0 {
            self.add(start);
            self.add(start + (len - 1));
        }
    }

    fn contains(&self, x: u64) -> bool {
        (self.lo..=self.hi).contains(&x)
    }

    fn overlaps(&self, o: &Span) -> bool {
        self.lo <= o.hi && o.lo <= self.hi
    }
}

/// The module an op instantiates, initialises, unloads or points a slot or trampoline at:
/// the op means nothing to a new group once that module is unloaded.
fn op_module(op: &Op) -> Option<ModuleId> {
    match op {
        Op::Instantiate { module, .. } | Op::InitTls { module, .. } | Op::Unload { module } => {
            Some(*module)
        }
        Op::SetSlot { value, .. } | Op::SetTrampoline { value, .. } => match value {
            SlotValue::Export { module, .. } => Some(*module),
            _ => None,
        },
        _ => None,
    }
}

/// The table writes of a stretch of the log: where each slot was last set to a function, as
/// (log entry, op) — a later `ClearSlots` or null write removes the slot — and every slot
/// written or cleared at all.
#[derive(Default)]
struct SlotWrites {
    last: HashMap<u64, (usize, usize)>,
    touched: HashSet<u64>,
    cleared: Vec<(u64, u64)>,
    span: Span,
}

impl SlotWrites {
    /// The writes of `log`, whose first entry is entry `first` of the whole log.
    fn of(log: &[LogChunk], first: usize) -> Self {
        let mut w = Self::default();
        for (c, chunk) in log.iter().enumerate() {
            for (i, op) in chunk.ops.iter().enumerate() {
                match op {
                    Op::SetSlot { slot, value } => {
                        w.touched.insert(slot.0);
                        w.span.add(slot.0);
                        if *value == SlotValue::Null {
                            w.last.remove(&slot.0);
                        } else {
                            w.last.insert(slot.0, (first + c, i));
                        }
                    }
                    Op::ClearSlots { start, len } => {
                        let (start, len) = (start.0, *len);
                        w.cleared.push((start, len));
                        w.span.add_range(start, len);
                        if (len as usize) < w.last.len() {
                            for s in start..start + len {
                                w.last.remove(&s);
                            }
                        } else {
                            w.last.retain(|s, _| !(start..start + len).contains(s));
                        }
                    }
                    _ => {}
                }
            }
        }
        w
    }

    /// Whether `slot` is written or cleared in these entries.
    fn touches(&self, slot: u64) -> bool {
        self.span.contains(slot)
            && (self.touched.contains(&slot)
                || self
                    .cleared
                    .iter()
                    .any(|&(s, n)| (s..s + n).contains(&slot)))
    }
}

/// An op made concrete per group.
#[derive(Clone, Debug, PartialEq, Eq)]
enum LogOp {
    /// A GOT global holding a TLS address: `tls_block(group, module) + offset`.
    TlsGlobal {
        global: GlobalId,
        ty: ValType,
        module: ModuleId,
        offset: u64,
    },
    /// `__wasm_init_tls(tls_block(group, module))`.
    InitTls { module: ModuleId },
}

/// What each used table slot holds, by slot.
type SlotMap = alloc::collections::BTreeMap<u64, SlotUse>;

/// The changes a plan makes, applied by [`Linker::commit`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Delta {
    new_modules: Vec<LoadedModule>,
    updates: Vec<(ModuleId, Update)>,
    unload: Vec<ModuleId>,
    mem: Option<MemState>,
    table: Option<TableState>,
    /// The new modules' definitions by name, in load order (`Txn::new_symbols`). Shared, so
    /// a stored startup plan's copies and the linkers committing them hold one table.
    symbols: Arc<SymbolTable<Def>>,
    /// The new modules by requested name and by path (`Txn::new_names`). This and the
    /// other `Arc`s are shared, not copied, by a stored startup plan's copies and the
    /// linkers committing them.
    names: Arc<HashMap<Name, ModuleId>>,
    canonical: Arc<HashMap<(ModuleId, u32), Slot>>,
    slot_uses: Vec<(Slot, Option<SlotUse>)>,
    /// A first load's slot uses, all set and in order, as the linker keeps them (then
    /// `slot_uses` is empty).
    slot_map: Option<Arc<SlotMap>>,
    pending: Option<HashMap<Name, Pending>>,
    counters: Counters,
    tags: Vec<(Name, TagId)>,
    got_cache: Arc<ConstGlobals>,
    stack_pointer: Option<GlobalId>,
    layout: Option<MainLayout>,
    main: Option<ModuleId>,
    groups: Option<Groups>,
    log: Option<LogChunk>,
    outcome: Option<Outcome>,
}

#[derive(Clone, Debug)]
enum Update {
    Refs(i64),
    GlobalSeq(u64),
    Pin,
    Use(ModuleId),
    /// Its destructors ran.
    Finalized,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counters {
    global: u32,
    gen_id: u32,
    tag: u32,
    seq: u64,
    order: u64,
}

/// The linker: the registry of loaded modules, the layout of memory and table, the symbol
/// scopes, and the replication log.
///
/// # Driving it
///
/// Every change goes through a plan:
///
/// 1. ask for a plan ([`plan_startup`](Self::plan_startup), [`plan_dlopen`](Self::plan_dlopen),
///    [`plan_dlsym`](Self::plan_dlsym), [`plan_dlclose`](Self::plan_dlclose),
///    [`plan_closures`](Self::plan_closures), [`plan_group`](Self::plan_group), …);
/// 2. compile [`Plan::modules`] and apply every op of [`Plan::ops`] in order;
/// 3. on success, [`commit`](Self::commit) the plan; on any failure, [`abort`](Self::abort) it
///    and the linker is exactly as before: no memory region, slot, name or record leaks.
///
/// Only one plan may be outstanding: committing a plan made before another commit fails with
/// [`Error::StalePlan`]. Other instance groups then apply [`pending_ops`](Self::pending_ops)
/// to catch up.
#[derive(Clone, Debug)]
pub struct Linker {
    config: Config,
    generation: u64,
    /// By id; an unloaded module's entry stays `None` (ids are never reused).
    modules: Vec<Option<LoadedModule>>,
    /// The ids of the loaded modules, ascending: what iterating them costs does not grow
    /// with how many were loaded and unloaded before.
    live: Vec<ModuleId>,
    /// Live modules by requested name and by path. This and the other `Arc`s below are
    /// shared with the plan that built them until a later commit changes them (copied then):
    /// a program started again from a stored plan holds no copy of them.
    names: Arc<HashMap<Name, ModuleId>>,
    /// Shared with the plan that built it until a later commit changes it (copied then).
    symbols: Arc<SymbolTable<Def>>,
    mem: MemState,
    table: TableState,
    canonical: Arc<HashMap<(ModuleId, u32), Slot>>,
    slot_uses: Arc<SlotMap>,
    pending: HashMap<Name, Pending>,
    counters: Counters,
    tags: HashMap<Name, TagId>,
    got_cache: Arc<ConstGlobals>,
    stack_pointer: Option<GlobalId>,
    layout: Option<MainLayout>,
    main: Option<ModuleId>,
    groups: Groups,
    /// The log may hold ops a new group need not replay, from `compacted_upto` on (see
    /// `compact_log`).
    log_has_dead: bool,
    /// Where the last compaction stopped: entries below it hold nothing to forget until
    /// another unload or nulled slot.
    compacted_upto: usize,
    log: Vec<LogChunk>,
    /// Modules unloaded whose code an adapter may still hold, until
    /// [`take_uninstantiable`](Linker::take_uninstantiable) hands them out.
    unloaded_code: Vec<ModuleId>,
}

impl PartialEq for Linker {
    /// Full-state equality, used to prove that an aborted plan changed nothing.
    fn eq(&self, o: &Self) -> bool {
        let modules_eq = self.modules.len() == o.modules.len()
            && self
                .modules
                .iter()
                .zip(&o.modules)
                .all(|(a, b)| match (a, b) {
                    (None, None) => true,
                    (Some(a), Some(b)) => {
                        a.id == b.id
                            && a.path == b.path
                            && a.memory_base == b.memory_base
                            && a.table_base == b.table_base
                            && a.refs == b.refs
                            && a.pinned == b.pinned
                            && a.global_seq == b.global_seq
                            && a.uses == b.uses
                            && a.users == b.users
                            && a.finalized == b.finalized
                            && a.needed == b.needed
                    }
                    _ => false,
                });
        let pending_eq = self.pending.len() == o.pending.len()
            && self.pending.iter().all(|(k, v)| {
                o.pending.get(k).is_some_and(|w| {
                    w.slot == v.slot && w.trampolines == v.trampolines && w.waiters == v.waiters
                })
            });
        modules_eq
            && pending_eq
            && self.config == o.config
            && self.generation == o.generation
            && self.symbols == o.symbols
            && self.mem == o.mem
            && self.table == o.table
            && self.canonical == o.canonical
            && self.slot_uses == o.slot_uses
            && self.counters == o.counters
            && self.tags == o.tags
            && self.got_cache == o.got_cache
            && self.stack_pointer == o.stack_pointer
            && self.layout == o.layout
            && self.main == o.main
            && self.groups == o.groups
            && self.log_has_dead == o.log_has_dead
            && self.compacted_upto == o.compacted_upto
            && self.log == o.log
            && self.unloaded_code == o.unloaded_code
    }
}

/// The group that applies the startup plan.
pub const MAIN_GROUP: GroupId = GroupId(0);

impl Linker {
    /// A linker with nothing loaded.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            generation: 0,
            modules: Vec::new(),
            live: Vec::new(),
            names: Arc::default(),
            symbols: Arc::default(),
            mem: MemState {
                bytes: 0,
                alloc: RegionAlloc::new(),
                memory64: false,
                shared: false,
                max_pages: None,
                counter: None,
            },
            table: TableState {
                size: 0,
                alloc: RegionAlloc::new(),
                table64: false,
                max: None,
            },
            canonical: Arc::default(),
            slot_uses: Arc::default(),
            pending: HashMap::new(),
            counters: Counters::default(),
            tags: HashMap::new(),
            got_cache: Arc::default(),
            stack_pointer: None,
            layout: None,
            main: None,
            groups: Groups::default(),
            log_has_dead: false,
            compacted_upto: 0,
            log: Vec::new(),
            unloaded_code: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A loaded module.
    pub fn module(&self, id: ModuleId) -> Option<&LoadedModule> {
        self.modules.get(id.index()).and_then(|m| m.as_ref())
    }

    /// Every loaded module, in id order.
    pub fn modules(&self) -> impl Iterator<Item = &LoadedModule> {
        self.live.iter().filter_map(|id| self.module(*id))
    }

    /// The main module.
    pub fn main(&self) -> Option<ModuleId> {
        self.main
    }

    /// The PIE main's stack and heap layout.
    pub fn main_layout(&self) -> Option<MainLayout> {
        self.layout
    }

    /// Whether memory and pointers are 64-bit.
    pub fn memory64(&self) -> bool {
        self.mem.memory64
    }

    /// Where the commit counter lives: the `i32` word in shared memory that adapters
    /// increment (atomically) after every commit and that the safe points before indirect
    /// calls compare with their group's `seen` ([`crate::safepoints`]). `None` unless the
    /// program's memory is shared.
    pub fn commit_counter(&self) -> Option<u64> {
        self.mem.counter
    }

    /// The table size the core has planned.
    pub fn table_size(&self) -> u64 {
        self.table.size
    }

    /// The memory size the core last planned, in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.mem.bytes
    }

    /// Where a group's `dlerror` text goes, and how many bytes it may take (NUL included).
    pub fn dlerror_buffer(&self, group: GroupId) -> Option<(Addr, u64)> {
        self.group(group)
            .map(|g| (g.dlerror, self.config.dlerror_size))
    }

    /// Where a group's `dladdr` names go (`dli_fname`, `dli_sname`), and how many bytes.
    pub fn dladdr_buffer(&self, group: GroupId) -> Option<(Addr, u64)> {
        self.group(group).map(|g| {
            (
                Addr(g.dlerror.0 + self.config.dlerror_size),
                self.config.dladdr_size,
            )
        })
    }

    /// Live instance groups.
    pub fn groups(&self) -> impl Iterator<Item = GroupId> + '_ {
        self.groups.iter().map(|(id, _)| id)
    }

    fn group(&self, g: GroupId) -> Option<&GroupState> {
        self.groups.get(g)
    }

    /// A group's TLS block for a module.
    pub fn tls_block(&self, group: GroupId, module: ModuleId) -> Option<Addr> {
        self.group(group)?
            .tls
            .iter()
            .find(|(m, _)| *m == module)
            .map(|(_, a)| *a)
    }

    /// Read a module (through the configured cache, if any).
    fn prepare(&self, bytes: Arc<[u8]>) -> Result<Prepared, crate::ParseError> {
        prepare(self.config.module_cache.as_ref(), bytes)
    }

    /// Apply a plan's changes after every op succeeded. Fails (changing nothing) if another
    /// plan was committed since this one was made.
    pub fn commit(&mut self, plan: Plan) -> Result<Outcome, Error> {
        if plan.generation != self.generation {
            return Err(Error::StalePlan);
        }
        // A group that is leaving need not apply what it will never run: its TLS blocks for
        // modules loaded meanwhile were allocated at their commit and are freed with the rest.
        if let Some(g) = self
            .group(plan.group)
            .filter(|_| plan.kind != PlanKind::GroupExit)
            && g.cursor != self.log.len()
        {
            return Err(Error::GroupBehind {
                group: plan.group.0,
            });
        }
        let d = *plan.delta;
        self.generation += 1;
        // The plan indexed its modules' symbols and names already: a first load moves its
        // tables in whole, a later one appends definitions after the older ones.
        if self.symbols.is_empty() {
            self.symbols = d.symbols;
        } else {
            Arc::make_mut(&mut self.symbols).append(Arc::unwrap_or_clone(d.symbols));
        }
        if self.names.is_empty() {
            self.names = d.names;
        } else {
            let names = Arc::make_mut(&mut self.names);
            names.reserve(2 * d.new_modules.len());
            for m in &d.new_modules {
                names.entry(m.name.as_str().into()).or_insert(m.id);
                names.insert(m.path.as_str().into(), m.id);
            }
        }
        self.modules.reserve(d.new_modules.len());
        self.live.reserve(d.new_modules.len());
        let first_new = self.modules.len();
        for m in d.new_modules {
            debug_assert_eq!(m.id.index(), self.modules.len());
            self.live.push(m.id);
            self.modules.push(Some(m));
        }
        for i in first_new..self.modules.len() {
            let x = self.modules[i].as_ref().expect("just added");
            for d in deps(x) {
                self.add_users(d, 1);
            }
        }
        for (id, u) in d.updates {
            let Some(m) = self.modules.get_mut(id.index()).and_then(|m| m.as_mut()) else {
                continue;
            };
            let mut new_user_of = None;
            match u {
                Update::Refs(n) => m.refs = (m.refs as i64 + n).max(0) as u32,
                Update::GlobalSeq(s) => m.global_seq = Some(s),
                Update::Pin => m.pinned = true,
                Update::Finalized => m.finalized = true,
                Update::Use(u) => {
                    if !m.uses.contains(&u) {
                        if !m.needed.contains(&u) {
                            new_user_of = Some(u);
                        }
                        m.uses.push(u);
                    }
                }
            }
            if let Some(u) = new_user_of {
                self.add_users(u, 1);
            }
        }
        let unloads = d.unload;
        for &id in &unloads {
            if let Some(m) = self.modules[id.index()].take() {
                if let Ok(at) = self.live.binary_search(&id) {
                    self.live.remove(at);
                }
                self.unloaded_code.push(id);
                for d in deps(&m) {
                    self.add_users(d, -1);
                }
                // Each of these holds the module's own keys only (its two names, its exported
                // symbols, its exported functions' slots): removed one by one, so an unload
                // costs what the module holds, not what is loaded.
                let names = Arc::make_mut(&mut self.names);
                for key in [m.name.as_str(), m.path.as_str()] {
                    if names.get(key) == Some(&id) {
                        names.remove(key);
                    }
                }
                // One uniqueness check (an atomic compare-exchange), not one per export.
                let symbols = Arc::make_mut(&mut self.symbols);
                for e in m.info.exports.iter().filter(|e| e.is_symbol()) {
                    symbols.retain(&e.name, |d| d.module != id);
                }
                if !self.canonical.is_empty() {
                    let canonical = Arc::make_mut(&mut self.canonical);
                    for f in exported_funcs(&m.info) {
                        canonical.remove(&(id, f));
                    }
                }
            }
        }
        if let Some(mem) = d.mem {
            self.mem = mem;
        }
        if let Some(t) = d.table {
            self.table = t;
        }
        merge(&mut self.canonical, d.canonical);
        if let Some(map) = d.slot_map {
            // Made for a linker with no slot in use (the generation check above keeps it so).
            self.slot_uses = map;
        } else if !d.slot_uses.is_empty() {
            let uses = Arc::make_mut(&mut self.slot_uses);
            for (slot, u) in d.slot_uses {
                match u {
                    Some(u) => uses.insert(slot.0, u),
                    None => uses.remove(&slot.0),
                };
            }
        }
        if let Some(p) = d.pending {
            self.pending = p;
        }
        self.counters = d.counters;
        self.tags.extend(d.tags);
        merge_with(
            &mut self.got_cache,
            d.got_cache,
            ConstGlobals::is_empty,
            |mine, new| mine.append(new),
        );
        if d.stack_pointer.is_some() {
            self.stack_pointer = d.stack_pointer;
        }
        if d.layout.is_some() {
            self.layout = d.layout;
        }
        if d.main.is_some() {
            self.main = d.main;
        }
        if let Some(g) = d.groups {
            self.groups = g;
        }
        // Unloads and slots nulled or cleared leave ops a new group need not replay.
        let forgets = !unloads.is_empty()
            || d.log.as_ref().is_some_and(|c| {
                c.ops.iter().any(|op| {
                    matches!(
                        op,
                        Op::ClearSlots { .. }
                            | Op::SetSlot {
                                value: SlotValue::Null,
                                ..
                            }
                    )
                })
            });
        self.log.extend(d.log);
        // The group that applied the plan has applied its log entries too.
        let end = self.log.len();
        if let Some(g) = self.groups.get_mut(plan.group) {
            g.cursor = end;
        }
        self.compact_log(forgets, &unloads);
        Ok(d.outcome.unwrap_or(Outcome::Done))
    }

    /// Whether a logged op still means anything to a group that never saw the modules
    /// unloaded since: ops that instantiate, initialise or point slots at an unloaded module
    /// (and its `Unload`) do not.
    fn replayable(&self, op: &Op) -> bool {
        op_module(op).is_none_or(|m| self.module(m).is_some())
    }

    /// Whether a group created now must replay the logged op at `at`: not a shared-memory op
    /// (done once already), not table sizing (its table is created at the current size), not
    /// an op that concerns an unloaded module ([`replayable`](Self::replayable)), and not a
    /// write of a table slot that a later op writes again or that ends up null (a new table
    /// starts null). `writes` are the log's table writes from entry `at.0` on at least.
    fn fresh_needs(&self, writes: &SlotWrites, at: (usize, usize), op: &Op) -> bool {
        match op {
            Op::SetSlot { slot, .. } => {
                writes.last.get(&slot.0) == Some(&at) && self.replayable(op)
            }
            Op::ClearSlots { .. } | Op::GrowTable { .. } | Op::CreateTable { .. } => false,
            _ => !op.is_memory_op() && self.replayable(op),
        }
    }

    /// Drop from the log what a new group need not replay ([`fresh_needs`](Self::fresh_needs)),
    /// in the entries every live group has applied (a group still behind needs them as they
    /// are): a program that loads and unloads libraries for ever keeps a log the size of what
    /// is loaded, and a thread started late does not replay its history.
    ///
    /// It runs only when there may be something new to drop: after a plan that `forgets`
    /// (`unloaded` modules, a nulled slot), or once the slowest group has moved past where the
    /// last compaction had to stop. Its cost does not grow with what stays loaded: the
    /// entries below `compacted_upto` were compacted already, and an op there can only have
    /// become droppable since by concerning a module in `unloaded` or by writing a slot that
    /// a newer entry writes again; an entry whose [`Reach`] meets neither is passed over.
    fn compact_log(&mut self, forgets: bool, unloaded: &[ModuleId]) {
        let upto = self
            .groups
            .iter()
            .map(|(_, g)| g.cursor)
            .min()
            .unwrap_or(self.log.len())
            .min(self.log.len());
        self.log_has_dead |= forgets;
        if !self.log_has_dead || (!forgets && upto <= self.compacted_upto) {
            return;
        }
        let total = self.log.len();
        // Entries below `clean` hold only ops that were needed at the last compaction.
        let clean = self.compacted_upto.min(upto);
        let writes = SlotWrites::of(&self.log[clean..], clean);
        let still_needed = |op: &Op| match op {
            Op::SetSlot { slot, .. } if writes.touches(slot.0) => false,
            _ => op_module(op).is_none_or(|m| !unloaded.contains(&m)),
        };
        // (entry, what replaces it: None to remove it), in log order.
        let mut changes: Vec<(usize, Option<LogChunk>)> = Vec::new();
        for (c, chunk) in self.log[..upto].iter().enumerate() {
            let keep_all = if c < clean {
                let r = &chunk.reach;
                !(unloaded.iter().any(|m| r.modules.contains(m.0 as u64))
                    || r.slots.overlaps(&writes.span))
                    || chunk.ops.iter().all(still_needed)
            } else {
                (chunk.ops.iter().enumerate()).all(|(i, op)| self.fresh_needs(&writes, (c, i), op))
            };
            if keep_all {
                continue;
            }
            let mut ops = Vec::new();
            let mut templates = Vec::new();
            let mut tmpl = chunk.templates.iter().peekable();
            for (i, op) in chunk.ops.iter().enumerate() {
                let t = tmpl.next_if(|(p, _)| *p as usize == i);
                let needed = if c < clean {
                    still_needed(op)
                } else {
                    self.fresh_needs(&writes, (c, i), op)
                };
                if !needed {
                    continue;
                }
                if let Some((_, t)) = t {
                    templates.push((ops.len() as u32, t.clone()));
                }
                ops.push(op.clone());
            }
            changes.push((
                c,
                (!ops.is_empty()).then(|| LogChunk::new(ops.into(), templates)),
            ));
        }
        let removed = changes.iter().filter(|(_, new)| new.is_none()).count();
        if !changes.is_empty() {
            let mut changes = changes.into_iter().peekable();
            let mut c = 0;
            self.log.retain_mut(|chunk| {
                let keep = match changes.next_if(|(at, _)| *at == c) {
                    Some((_, Some(new))) => {
                        *chunk = new;
                        true
                    }
                    Some((_, None)) => false,
                    None => true,
                };
                c += 1;
                keep
            });
        }
        // Every removed entry lay below every cursor.
        for g in self.groups.states_mut() {
            g.cursor -= removed;
        }
        // Entries some group has not applied yet may still hold ops to forget.
        self.log_has_dead = upto < total;
        self.compacted_upto = upto - removed;
        debug_assert!(self.compacted_log_is_minimal());
    }

    /// The invariant [`compact_log`](Self::compact_log) relies on, checked the slow way:
    /// every op below `compacted_upto` is one a new group needs.
    fn compacted_log_is_minimal(&self) -> bool {
        let writes = SlotWrites::of(&self.log, 0);
        (self.log[..self.compacted_upto].iter().enumerate()).all(|(c, chunk)| {
            (chunk.ops.iter().enumerate()).all(|(i, op)| self.fresh_needs(&writes, (c, i), op))
        })
    }

    /// Drop a plan whose ops failed. The linker is unchanged; whatever the adapter already
    /// applied of the plan must be discarded by the adapter (new instances dropped).
    pub fn abort(&self, plan: Plan) {
        drop(plan);
    }

    /// Ops a group has not applied yet, and the cursor to report once it has.
    pub fn pending_ops(&self, group: GroupId) -> Result<(Vec<Op>, usize), Error> {
        let g = self.group(group).ok_or(Error::BadHandle {
            handle: group.0 as u64,
        })?;
        let mut ops = Vec::new();
        for chunk in &self.log[g.cursor..] {
            materialize(chunk, g, |_, _| true, &mut ops);
        }
        Ok((ops, self.log.len()))
    }

    /// Whether module `m` may still be instantiated by some group: it is loaded, or it was
    /// unloaded but a group that has not caught up yet may still replay its load. An adapter
    /// may drop what it keeps for a module (its compiled code) once this is false.
    pub fn may_instantiate(&self, m: ModuleId) -> bool {
        self.module(m).is_some() || self.log_has_dead
    }

    fn add_users(&mut self, id: ModuleId, n: i32) {
        if let Some(m) = self.modules.get_mut(id.index()).and_then(|m| m.as_mut()) {
            m.users = m.users.saturating_add_signed(n);
        }
    }

    /// The unloaded modules no group can instantiate any more that this has not handed out
    /// before: an adapter drops what it keeps for each (its compiled code), in time that does
    /// not grow with how many modules were loaded and unloaded before.
    pub fn take_uninstantiable(&mut self) -> Vec<ModuleId> {
        if self.log_has_dead {
            return Vec::new();
        }
        core::mem::take(&mut self.unloaded_code)
    }

    /// Whether `group` has log entries left to apply (false for an unknown group).
    #[inline]
    pub fn is_behind(&self, group: GroupId) -> bool {
        self.group(group)
            .is_some_and(|g| g.cursor != self.log.len())
    }

    /// Record that a group applied the log up to `cursor`.
    pub fn caught_up(&mut self, group: GroupId, cursor: usize) {
        if let Some(g) = self.groups.get_mut(group) {
            g.cursor = cursor.min(self.log.len());
        }
        self.compact_log(false, &[]);
    }
}

/// Append the ops of `chunk` that group `g` must apply: shared-memory ops are skipped (done
/// once already), as are ops `keep` refuses; templates are made concrete with `g`'s TLS
/// blocks.
fn materialize(
    chunk: &LogChunk,
    g: &GroupState,
    keep: impl Fn(usize, &Op) -> bool,
    out: &mut Vec<Op>,
) {
    let mut templates = chunk.templates.iter().peekable();
    for (i, op) in chunk.ops.iter().enumerate() {
        let template = templates.next_if(|(at, _)| *at as usize == i);
        if !keep(i, op) {
            continue;
        }
        if let Some((_, t)) = template {
            out.push(materialize_one(t, g));
        } else if !op.is_memory_op() {
            out.push(op.clone());
        }
    }
}

fn materialize_one(l: &LogOp, g: &GroupState) -> Op {
    {
        let block = |m: ModuleId| g.tls.iter().find(|(x, _)| *x == m).map_or(0, |(_, a)| a.0);
        match l {
            LogOp::TlsGlobal {
                global,
                ty,
                module,
                offset,
            } => Op::CreateGlobal {
                global: *global,
                ty: *ty,
                mutable: true,
                value: block(*module).wrapping_add(*offset),
            },
            LogOp::InitTls { module } => Op::InitTls {
                module: *module,
                block: Addr(block(*module)),
            },
        }
    }
}

impl Linker {
    fn txn<'a>(&'a self, group: GroupId) -> Txn<'a> {
        Txn {
            base: self,
            group,
            new: Vec::new(),
            updates: Vec::new(),
            unload: Vec::new(),
            mem: self.mem.clone(),
            table: self.table.clone(),
            canonical: HashMap::new(),
            slot_uses: Vec::new(),
            pending: None,
            counters: self.counters,
            tags: Vec::new(),
            got_cache: ConstGlobals::default(),
            new_names: HashMap::new(),
            stack_pointer: self.stack_pointer,
            layout: self.layout,
            main: self.main,
            groups: None,
            new_symbols: SymbolTable::default(),
            indexed: 0,
            setup: Section::default(),
            adopt: Vec::new(),
            zero: Vec::new(),
            body: Vec::new(),
            inits: Section::default(),
            diags: Vec::new(),
            dup_seen: HashSet::new(),
            modules_out: Vec::new(),
            trampolines: Default::default(),
            direct: None,
            gen_id: None,
            creates_memory: false,
            create_table: false,
            table_min: 0,
            mem_bytes0: self.mem.bytes,
            table_size0: self.table.size,
            late: Vec::new(),
            host_slots: Vec::new(),
            bind: self.config.bind,
            hint: None,
        }
    }

    // ---------------------------------------------------------------- startup

    /// Plan loading the main module (`path` is used for `$ORIGIN` and reports; `bytes` are
    /// its content), the preloads, and the whole NEEDED tree. The plan is applied by group
    /// [`MAIN_GROUP`].
    ///
    /// With [`Config::reuse_startup_plans`] and a [`Config::module_cache`], a startup of a
    /// program planned before gets a copy of that plan once every file and host name it
    /// depended on reads the same (see [`ModuleCache`](crate::ModuleCache)).
    pub fn plan_startup(
        &self,
        path: &str,
        bytes: Arc<[u8]>,
        source: &dyn ModuleSource,
        host: &dyn HostNames,
    ) -> Result<Plan, Error> {
        // Only a linker nothing was ever committed to is in the state the stored plans
        // were made from.
        let cache = (self.config.module_cache.as_ref())
            .filter(|_| self.config.reuse_startup_plans && self.generation == 0);
        let Some(cache) = cache else {
            return self.plan_startup_afresh(path, bytes, source, host);
        };
        if let Some(plan) = cache.startup(&self.config, path, &bytes, source, host) {
            return Ok(plan);
        }
        let recorder = crate::cache::Recorder::new(source, host);
        let plan = self.plan_startup_afresh(path, bytes.clone(), &recorder, &recorder)?;
        cache.keep_startup(&self.config, path, bytes, recorder.into_trace(), &plan);
        Ok(plan)
    }

    fn plan_startup_afresh(
        &self,
        path: &str,
        bytes: Arc<[u8]>,
        source: &dyn ModuleSource,
        host: &dyn HostNames,
    ) -> Result<Plan, Error> {
        if self.main.is_some() {
            return Err(Error::BadMain {
                path: path.into(),
                message: "a main module is already loaded".into(),
            });
        }
        let path = normalize(&self.config.search.cwd, path).unwrap_or_else(|| path.into());
        let (bytes, info) = self.prepare(bytes).map_err(|error| Error::Parse {
            path: path.clone(),
            error,
        })?;
        let mut t = self.txn(MAIN_GROUP);
        let main = t.add_module(&path, &path, info, bytes, true)?;
        t.main = Some(main);
        let pie = t.module(main).info.imports_memory();
        let relocatable = t
            .module(main)
            .info
            .imports
            .iter()
            .any(|i| i.role == ImportRole::MemoryBase);
        if !pie && relocatable {
            return Err(Error::BadMain {
                path,
                message: "a PIE main module must import its memory so the linker can lay it out; \
                          link it with --import-memory (and --import-table if it uses function pointers)"
                    .into(),
            });
        }
        if !pie {
            let info = &t.module(main).info;
            let mem_export = info
                .exports
                .iter()
                .any(|e| e.kind == ExportKind::Memory && &*e.name == "memory");
            let table_export = info
                .exports
                .iter()
                .any(|e| e.kind == ExportKind::Table && &*e.name == "__indirect_function_table");
            if info.defined_memory.is_none() || !mem_export {
                return Err(Error::BadMain {
                    path,
                    message: "it has no dylink.0 section (not a PIE) and does not export its memory as \
                              `memory`; link it with -pie --experimental-pic, or as a non-PIE main that \
                              exports memory and table (--export-table)"
                        .into(),
                });
            }
            if info.defined_table.is_none() || !table_export {
                return Err(Error::BadMain {
                    path,
                    message: "a non-PIE main must export its function table as \
                              `__indirect_function_table` (link with --export-table)"
                        .into(),
                });
            }
        }
        // Preloads come right after the main in scope order, then NEEDED, breadth first.
        let mut roots: Vec<(String, Option<ModuleId>)> = self
            .config
            .preload
            .iter()
            .map(|p| (p.clone(), None))
            .collect();
        let needed = t.module(main).info.needed();
        roots.extend(needed.iter().map(|n| (n.clone(), Some(main))));
        let loaded = t.load_tree(&roots, Some(main), source)?;
        let mut all = vec![main];
        all.extend(loaded.iter().copied().filter(|m| *m != main));
        // Everything loaded at startup is in the global scope, main first, and pinned.
        for &m in &all {
            let seq = t.next_seq();
            t.set_global_seq(m, seq);
        }
        t.set_closure(main);
        let order = t.needed_order(&all, if pie { None } else { Some(main) });
        t.layout_startup(main, &order, pie)?;
        let binding = t.binding_order(&order, if pie { None } else { Some(main) });
        t.link(&binding, &order, host)?;
        t.finish_startup(main);
        t.finish(PlanKind::Startup, Outcome::Loaded(main))
    }

    // ---------------------------------------------------------------- dlopen

    /// Plan `dlopen(name, flags)` called from module `caller` in `group`. `name` `None` is
    /// `dlopen(NULL)`: the main program. `facts` is the engine's current state. `flags`
    /// without `RTLD_NOW` bind lazily, `RTLD_LAZY` or not: a mode with neither is taken as
    /// `RTLD_LAZY`, as musl, Emscripten and macOS take it (glibc refuses it).
    // dlopen's two arguments, who calls, on which thread, and what the plan reads.
    #[allow(clippy::too_many_arguments)]
    pub fn plan_dlopen(
        &self,
        name: Option<&str>,
        flags: i32,
        caller: Option<ModuleId>,
        group: GroupId,
        facts: Facts,
        source: &dyn ModuleSource,
        host: &dyn HostNames,
    ) -> Result<Plan, Error> {
        let main = self.main.ok_or(Error::BadHandle { handle: 0 })?;
        let mut t = self.txn(group);
        t.observe(facts);
        if flags & rtld::NOW != 0 {
            t.bind = BindMode::Now;
        }
        let Some(name) = name else {
            return t.finish(PlanKind::Dlopen, Outcome::Loaded(main));
        };
        let requester = caller.and_then(|c| self.module(c));
        let existing = t.find_loaded(name, requester.map(|r| r.id))?;
        let root = match existing {
            Some(id) => id,
            None if flags & rtld::NOLOAD != 0 => {
                return Err(Error::NotLoaded { name: name.into() });
            }
            None => {
                let roots = [(name.to_string(), caller)];
                let loaded = t.load_tree(&roots, caller, source)?;
                let root = loaded[0];
                t.set_closure(root);
                let new: Vec<ModuleId> = loaded.iter().copied().filter(|m| t.is_new(*m)).collect();
                for &m in &new {
                    t.set_scope_root(m, root);
                }
                if flags & rtld::GLOBAL != 0 {
                    t.promote(root);
                }
                let order = t.needed_order(&new, None);
                t.layout_dlopen(&order)?;
                let binding = t.binding_order(&order, None);
                t.link(&binding, &order, host)?;
                t.adopt_pending(&new);
                root
            }
        };
        if existing.is_some() && flags & rtld::GLOBAL != 0 {
            t.promote(root);
            let closure: Vec<ModuleId> = t.module(root).closure.to_vec();
            t.adopt_pending(&closure);
        }
        if root != main {
            t.updates.push((root, Update::Refs(1)));
        }
        if flags & rtld::NODELETE != 0 {
            t.updates.push((root, Update::Pin));
        }
        t.finish(PlanKind::Dlopen, Outcome::Loaded(root))
    }

    /// `dlopen(name, flags)` of a library already loaded under the file name `name`, done in
    /// place when all it changes is the library's reference count (and its pin, for
    /// `RTLD_NODELETE`): no op for any engine, nothing for other groups to replay. `None`
    /// when this is not such a call (a path, a name not loaded, `RTLD_GLOBAL` for a library
    /// not yet in the global scope, or `group` not caught up): then [`Linker::plan_dlopen`]
    /// decides, as it would have. The answer is what committing `plan_dlopen`'s plan gives,
    /// at a small fraction of its cost (a program that asks for its libraries again and
    /// again, as plugin hosts do, pays only a name lookup).
    pub fn dlopen_loaded(&mut self, name: &str, flags: i32, group: GroupId) -> Option<ModuleId> {
        let main = self.main?;
        if name.contains('/') || self.group(group)?.cursor != self.log.len() {
            return None;
        }
        let id = *self.names.get(name)?;
        let m = self.module(id)?;
        if flags & rtld::GLOBAL != 0
            && !m
                .closure
                .iter()
                .all(|c| self.module(*c).is_some_and(|c| c.global_seq.is_some()))
        {
            return None;
        }
        // A plan made before this call must not commit over it (as after any commit).
        self.generation += 1;
        let m = self.modules[id.index()].as_mut()?;
        if id != main {
            m.refs = m.refs.saturating_add(1);
        }
        if flags & rtld::NODELETE != 0 {
            m.pinned = true;
        }
        Some(id)
    }

    // ---------------------------------------------------------------- dlsym

    /// Look `symbol` up for `dlsym(handle, symbol)` called from `caller` in `group`. A
    /// function whose pointer was never taken needs a slot: then the answer is a plan whose
    /// commit yields [`Outcome::Symbol`].
    pub fn plan_dlsym(
        &self,
        handle: Handle,
        symbol: &str,
        caller: Option<ModuleId>,
        group: GroupId,
    ) -> Result<DlsymAnswer, Error> {
        let def = self.find_symbol(handle, symbol, caller)?;
        let m = self
            .module(def.module)
            .ok_or(Error::BadHandle { handle: 0 })?;
        let e = &m.info.exports[def.export as usize];
        match e.kind {
            ExportKind::Func { index, .. } => {
                if let Some(&slot) = self.canonical.get(&(def.module, index)) {
                    return Ok(DlsymAnswer::Ready(SymbolValue::Func(slot)));
                }
                let mut t = self.txn(group);
                let slot = t.canonical_slot(def.module, index, e.name.clone())?;
                Ok(DlsymAnswer::Plan(t.finish(
                    PlanKind::Dlsym,
                    Outcome::Symbol(SymbolValue::Func(slot)),
                )?))
            }
            ExportKind::Global {
                value: Some(v),
                mutable: false,
                ty,
            } if ty == m.info.ptr_type() => {
                if e.tls {
                    let block = self.tls_block(group, def.module).ok_or_else(|| {
                        Error::Unsupported {
                            path: m.path.clone(),
                            message: format!(
                                "thread-local `{symbol}` but the module has no per-thread TLS block"
                            ),
                        }
                    })?;
                    Ok(DlsymAnswer::Ready(SymbolValue::Tls(Addr(
                        block.0.wrapping_add(v),
                    ))))
                } else {
                    Ok(DlsymAnswer::Ready(SymbolValue::Data(Addr(
                        m.memory_base.wrapping_add(v),
                    ))))
                }
            }
            _ => Err(Error::SymbolNotFound {
                symbol: symbol.into(),
                scope: format!("{} (not a function or data symbol)", m.path),
            }),
        }
    }

    fn find_symbol(
        &self,
        handle: Handle,
        symbol: &str,
        caller: Option<ModuleId>,
    ) -> Result<Def, Error> {
        let defs = self.symbols.get(symbol).unwrap_or(&[]);
        // The common case: one definition, in the global scope.
        if let (Handle::Default, [d]) = (handle, defs)
            && self
                .module(d.module)
                .is_some_and(|m| m.global_seq.is_some())
        {
            return Ok(*d);
        }
        let global_first = |after: Option<u64>| {
            defs.iter()
                .filter_map(|d| {
                    let m = self.module(d.module)?;
                    let seq = m.global_seq?;
                    (after.is_none_or(|a| seq > a))
                        .then(|| ((m.info.exports[d.export as usize].weak, seq), *d))
                })
                .min_by_key(|(k, _)| *k)
                .map(|(_, d)| d)
        };
        let in_closure = |root: ModuleId| {
            let m = self.module(root)?;
            m.closure
                .iter()
                .find_map(|c| defs.iter().find(|d| d.module == *c).copied())
        };
        let found = match handle {
            Handle::Default => global_first(None).or_else(|| {
                let c = self.module(caller?)?;
                in_closure(c.scope_root)
            }),
            Handle::Next => {
                let seq = caller
                    .and_then(|c| self.module(c))
                    .and_then(|c| c.global_seq);
                global_first(Some(seq.unwrap_or(0)))
            }
            Handle::Module(m) => {
                if self.module(m).is_none() {
                    return Err(Error::BadHandle {
                        handle: Handle::value(m),
                    });
                }
                if Some(m) == self.main {
                    global_first(None)
                } else {
                    in_closure(m)
                }
            }
        };
        found.ok_or_else(|| Error::SymbolNotFound {
            symbol: symbol.into(),
            scope: match handle {
                Handle::Default => "the global scope (RTLD_DEFAULT)".into(),
                Handle::Next => "the modules after the caller (RTLD_NEXT)".into(),
                Handle::Module(m) => format!(
                    "{} and its dependencies",
                    self.module(m).map_or("?", |m| &m.path)
                ),
            },
        })
    }

    // ---------------------------------------------------------------- dladdr

    /// Which module (and symbol) an address belongs to. A value that is a used table slot is
    /// taken as a function pointer first; otherwise as a data address.
    pub fn dladdr(&self, value: u64) -> Option<AddrInfo> {
        if value != 0 && value < self.table.size {
            if let Some(u) = self.slot_uses.get(&value)
                && let SlotUse::Func { module, func } = u
            {
                let m = self.module(*module)?;
                return Some(AddrInfo {
                    module: m.id,
                    path: m.path.clone(),
                    base: m.memory_base,
                    symbol: Some(m.info.func_name(*func)),
                    symbol_value: value,
                });
            }
            for m in self.modules() {
                if m.table_size > 0 && value >= m.table_base && value < m.table_base + m.table_size
                {
                    let rel = (value - m.table_base) as u32;
                    let name = m
                        .info
                        .table_elems
                        .iter()
                        .find(|(o, _)| *o == rel)
                        .map(|(_, f)| m.info.func_name(*f));
                    return Some(AddrInfo {
                        module: m.id,
                        path: m.path.clone(),
                        base: m.memory_base,
                        symbol: name,
                        symbol_value: value,
                    });
                }
            }
        }
        for m in self.modules() {
            let lo = m.memory_base;
            let hi = if m.memory_size > 0 {
                lo + m.memory_size
            } else if m.is_main && !m.info.imports_memory() {
                self.layout.map_or(lo, |l| l.heap_base)
            } else {
                lo
            };
            if value >= lo && value < hi {
                // The nearest data symbol at or below the address.
                let best = m
                    .info
                    .exports
                    .iter()
                    .filter(|e| e.is_symbol() && !e.tls)
                    .filter_map(|e| match e.kind {
                        ExportKind::Global {
                            value: Some(v),
                            mutable: false,
                            ..
                        } => Some((m.memory_base.wrapping_add(v), &e.name)),
                        _ => None,
                    })
                    .filter(|(a, _)| *a <= value)
                    .max_by_key(|(a, _)| *a);
                return Some(AddrInfo {
                    module: m.id,
                    path: m.path.clone(),
                    base: m.memory_base,
                    symbol: best.map(|(_, n)| n.clone()),
                    symbol_value: best.map_or(0, |(a, _)| a),
                });
            }
        }
        None
    }

    // ---------------------------------------------------------------- dlclose

    /// Plan `dlclose(handle)`: drop one reference; when nothing keeps the library (and the
    /// dependencies only it kept) loaded, unload them, reclaiming memory regions and table
    /// slots. If some of them have destructors that have not run, the plan is a
    /// [`PlanKind::Destructors`] plan instead (nothing is released): drive it (its guest calls
    /// run after its commit, free to call the dl functions, as glibc allows), then plan the
    /// `dlclose` again.
    pub fn plan_dlclose(&self, handle: ModuleId, group: GroupId) -> Result<Plan, Error> {
        self.plan_close(handle, group, false)
    }

    /// Plan unloading what a committed `dlopen` loaded when its constructors then failed:
    /// every reference to `handle` is dropped and the modules only it kept are unloaded,
    /// without running destructors (their constructors did not complete).
    pub fn plan_unload_failed_load(&self, handle: ModuleId, group: GroupId) -> Result<Plan, Error> {
        self.plan_close(handle, group, true)
    }

    /// The modules no root reaches once `handle` drops `dropped` references, a root being a
    /// pinned module or one with references left; reaching follows NEEDED entries and
    /// bindings ([`deps`]).
    ///
    /// Every loaded module was reachable after the last commit, so only modules `handle`
    /// reaches (stopping at pinned ones) can become unreachable. Among those, a module stays
    /// if it keeps a reference, if a module outside them needs it (it has more users than
    /// the ones among them, `LoadedModule::users`), or if one that stays reaches it. The cost
    /// is what `handle` reaches, not what is loaded.
    fn unreachable_after_drop(&self, handle: ModuleId, dropped: u32) -> Vec<ModuleId> {
        // What `handle` reaches, each with its users among those.
        let mut reached: HashMap<ModuleId, u32> = HashMap::new();
        let mut order = Vec::new();
        let mut stack = vec![handle];
        while let Some(id) = stack.pop() {
            match self.module(id) {
                Some(x) if !x.pinned && !reached.contains_key(&id) => {
                    reached.insert(id, 0);
                    order.push(x);
                    stack.extend(deps(x));
                }
                _ => {}
            }
        }
        for x in &order {
            for d in deps(x) {
                if let Some(n) = reached.get_mut(&d) {
                    *n += 1;
                }
            }
        }
        let refs_left = |x: &LoadedModule| x.refs > if x.id == handle { dropped } else { 0 };
        let mut stack: Vec<&LoadedModule> = (order.iter().copied())
            .filter(|x| refs_left(x) || x.users > reached[&x.id])
            .collect();
        let mut stays = HashSet::new();
        while let Some(x) = stack.pop() {
            if stays.insert(x.id) {
                let next = deps(x).into_iter().filter(|d| reached.contains_key(d));
                stack.extend(next.filter_map(|d| self.module(d)));
            }
        }
        order
            .into_iter()
            .map(|x| x.id)
            .filter(|id| !stays.contains(id))
            .collect()
    }

    /// [`unreachable_after_drop`](Self::unreachable_after_drop) the slow way, marking from
    /// every root, sorted; debug builds check the two agree on every `dlclose`.
    fn unreachable_after_drop_slowly(&self, handle: ModuleId, dropped: u32) -> Vec<ModuleId> {
        let mut alive = vec![false; self.modules.len()];
        let mut stack: Vec<ModuleId> = self
            .modules()
            .filter(|x| x.pinned || x.refs > if x.id == handle { dropped } else { 0 })
            .map(|x| x.id)
            .collect();
        while let Some(id) = stack.pop() {
            if core::mem::replace(&mut alive[id.index()], true) {
                continue;
            }
            if let Some(x) = self.module(id) {
                stack.extend(deps(x));
            }
        }
        self.modules()
            .filter(|x| !alive[x.id.index()])
            .map(|x| x.id)
            .collect()
    }

    fn plan_close(&self, handle: ModuleId, group: GroupId, failed: bool) -> Result<Plan, Error> {
        let m = self.module(handle).ok_or(Error::BadHandle {
            handle: Handle::value(handle),
        })?;
        let mut t = self.txn(group);
        if m.is_main || m.refs == 0 {
            // dlclose of the program handle, or of a startup module: nothing to release.
            if m.refs == 0 && !m.is_main && !m.pinned {
                return Err(Error::BadHandle {
                    handle: Handle::value(handle),
                });
            }
            return t.finish(PlanKind::Dlclose, Outcome::Done);
        }
        let dropped = if failed { m.refs } else { 1 };
        let mut dead = self.unreachable_after_drop(handle, dropped);
        debug_assert_eq!(
            {
                let mut d = dead.clone();
                d.sort();
                d
            },
            self.unreachable_after_drop_slowly(handle, dropped),
        );
        // Destructors run newest first.
        dead.sort_by_key(|id| core::cmp::Reverse(self.module(*id).map(|x| x.order)));
        if !failed {
            // Destructors not yet run get their own plan, run after its commit as a load's
            // constructors are: they may call the dl functions. Then the dlclose is planned
            // again. (A `__dso_handle` with no `__cxa_finalize` to pass it to makes no call:
            // no such plan then.)
            t.destructor_ops(&dead);
            if !t.body.is_empty() {
                for &m in &dead {
                    t.updates.push((m, Update::Finalized));
                }
                return t.finish(PlanKind::Destructors, Outcome::Done);
            }
        }
        t.updates.push((handle, Update::Refs(-(dropped as i64))));
        t.unload_modules(&dead);
        t.finish(PlanKind::Dlclose, Outcome::Done)
    }

    // ---------------------------------------------------------------- closures

    /// Plan allocating `count` consecutive table slots for closures (libffi-style). The commit
    /// yields [`Outcome::Slots`]. Fill them with [`plan_set_closure`](Self::plan_set_closure).
    pub fn plan_closures(&self, count: u64, group: GroupId) -> Result<Plan, Error> {
        let mut t = self.txn(group);
        let first = t.alloc_slots(count.max(1), 1)?;
        for i in 0..count.max(1) {
            t.slot_uses
                .push((Slot(first.0 + i), Some(SlotUse::Closure)));
        }
        t.finish(PlanKind::Closures, Outcome::Slots(first, count.max(1)))
    }

    /// Plan storing `value` in closure slot `slot`.
    pub fn plan_set_closure(
        &self,
        slot: Slot,
        value: SlotValue,
        group: GroupId,
    ) -> Result<Plan, Error> {
        if self.slot_uses.get(&slot.0) != Some(&SlotUse::Closure) {
            return Err(Error::NotClosureSlot { slot: slot.0 });
        }
        if let SlotValue::Export { module, .. } = &value
            && self.module(*module).is_none()
        {
            return Err(Error::BadHandle {
                handle: Handle::value(*module),
            });
        }
        let mut t = self.txn(group);
        t.body.push(Op::SetSlot { slot, value });
        t.finish(PlanKind::Closures, Outcome::Done)
    }

    /// Plan freeing closure slots `[first, first + count)`.
    pub fn plan_free_closures(
        &self,
        first: Slot,
        count: u64,
        group: GroupId,
    ) -> Result<Plan, Error> {
        for i in 0..count {
            if self.slot_uses.get(&(first.0 + i)) != Some(&SlotUse::Closure) {
                return Err(Error::NotClosureSlot { slot: first.0 + i });
            }
        }
        let mut t = self.txn(group);
        for i in 0..count {
            t.body.push(Op::SetSlot {
                slot: Slot(first.0 + i),
                value: SlotValue::Null,
            });
            t.slot_uses.push((Slot(first.0 + i), None));
        }
        t.table.alloc.free(first.0, count, true);
        t.finish(PlanKind::Closures, Outcome::Done)
    }

    // ---------------------------------------------------------------- groups

    /// Plan a new instance group (a new thread): applied in the new group's fresh store, it
    /// attaches the shared memory, creates the table, replays the log (same slots, same
    /// globals, no relocations or constructors re-run) and gives each TLS module a new block.
    pub fn plan_group(&self, facts: Facts) -> Result<Plan, Error> {
        if self.main.is_none() {
            return Err(Error::BadMain {
                path: String::new(),
                message: "no program is loaded".into(),
            });
        }
        if !self.mem.shared {
            return Err(Error::Unsupported {
                path: self.main.and_then(|m| self.module(m)).map_or(String::new(), |m| m.path.clone()),
                message: "threads need a shared memory; build with -pthread (atomics, bulk-memory, shared memory)".into(),
            });
        }
        let id = self.groups.next_id();
        let mut t = self.txn(id);
        t.observe(facts);
        let state = t.new_group_state()?;
        let mut groups = self.groups.clone();
        groups.insert(state.clone());
        t.groups = Some(groups);
        // The memory first: growing it for the group's TLS blocks and zeroing reused space
        // act on it.
        let logged: usize = self.log.iter().map(|c| c.ops.len()).sum();
        let mut all = Vec::with_capacity(logged + 4);
        all.push(Op::AttachMemory);
        all.extend(t.grow_ops());
        all.append(&mut t.zero);
        all.push(Op::CreateTable {
            min: t.table.size,
            table64: t.table.table64,
        });
        let writes = SlotWrites::of(&self.log, 0);
        for (c, chunk) in self.log.iter().enumerate() {
            // What a new group need not replay is skipped (see `fresh_needs`).
            materialize(
                chunk,
                &state,
                |i, op| self.fresh_needs(&writes, (c, i), op),
                &mut all,
            );
        }
        let mut plan = t.finish(PlanKind::Group, Outcome::Group(id))?;
        // The group replays the log itself; nothing of this plan is for other groups.
        plan.delta.log = None;
        plan.ops = Arc::new(all);
        plan.group = id;
        Ok(plan)
    }

    /// Plan a group's exit: its TLS blocks and `dlerror` buffer are freed. No ops.
    pub fn plan_group_exit(&self, group: GroupId) -> Result<Plan, Error> {
        let g = self.group(group).ok_or(Error::BadHandle {
            handle: group.0 as u64,
        })?;
        if group == MAIN_GROUP {
            return Err(Error::BadHandle { handle: 0 });
        }
        let mut t = self.txn(group);
        t.mem
            .alloc
            .free(g.dlerror.0, self.config.dl_text_size(), true);
        for (m, block) in &g.tls {
            if let Some(m) = self.module(*m) {
                t.mem.alloc.free(block.0, tls_len(&m.info), true);
            }
        }
        let mut groups = self.groups.clone();
        groups.remove(group);
        t.groups = Some(groups);
        t.finish(PlanKind::GroupExit, Outcome::Done)
    }
}

fn tls_len(info: &ModuleInfo) -> u64 {
    info.init.tls_size.unwrap_or(0).max(1)
}

fn tls_align(info: &ModuleInfo) -> u64 {
    info.init.tls_align.unwrap_or(1).max(1).next_power_of_two()
}

/// What `dlsym` answers.
#[derive(Debug)]
pub enum DlsymAnswer {
    /// The value, without any change to the linker.
    Ready(SymbolValue),
    /// A plan to apply and commit; the commit yields [`Outcome::Symbol`].
    Plan(Plan),
}

/// What `dladdr` answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrInfo {
    /// The module containing the address.
    pub module: ModuleId,
    /// Its path (`dli_fname`).
    pub path: String,
    /// Its memory base (`dli_fbase`).
    pub base: u64,
    /// The nearest symbol (`dli_sname`).
    pub symbol: Option<Name>,
    /// The symbol's value (`dli_saddr`).
    pub symbol_value: u64,
}

/// Add `new`'s entries to `base`, moving the whole table when `base` is empty.
fn merge<K: Eq + core::hash::Hash + Clone, V: Clone>(
    base: &mut Arc<HashMap<K, V>>,
    new: Arc<HashMap<K, V>>,
) {
    merge_with(base, new, HashMap::is_empty, |mine, new| mine.extend(new));
}

/// Add a plan's shared table `new` to the linker's `base`: taken whole into an empty one
/// (no copy; a stored plan and the linkers started from it share it), else `add`ed in (the
/// linker's own copy made first if it is shared).
fn merge_with<T: Clone>(
    base: &mut Arc<T>,
    new: Arc<T>,
    is_empty: impl Fn(&T) -> bool,
    add: impl FnOnce(&mut T, T),
) {
    if is_empty(base) {
        *base = new;
    } else if !is_empty(&new) {
        add(Arc::make_mut(base), Arc::unwrap_or_clone(new));
    }
}

// -------------------------------------------------------------------- planning transaction

struct Txn<'a> {
    base: &'a Linker,
    group: GroupId,
    new: Vec<LoadedModule>,
    /// Definitions by name in the new modules (entered once their tree is read).
    new_symbols: SymbolTable<Def>,
    /// How many of `new` are in `new_symbols`.
    indexed: usize,
    updates: Vec<(ModuleId, Update)>,
    unload: Vec<ModuleId>,
    mem: MemState,
    table: TableState,
    canonical: HashMap<(ModuleId, u32), Slot>,
    slot_uses: Vec<(Slot, Option<SlotUse>)>,
    pending: Option<HashMap<Name, Pending>>,
    counters: Counters,
    tags: Vec<(Name, TagId)>,
    got_cache: ConstGlobals,
    stack_pointer: Option<GlobalId>,
    layout: Option<MainLayout>,
    main: Option<ModuleId>,
    groups: Option<Groups>,
    /// New modules by requested name and by path.
    new_names: HashMap<Name, ModuleId>,
    // Op sections, assembled by `finish` in this order.
    setup: Section,
    adopt: Vec<Op>,
    zero: Vec<Op>,
    body: Vec<Op>,
    inits: Section,
    diags: Vec<Diagnostic>,
    dup_seen: HashSet<Name>,
    modules_out: Vec<NewModule>,
    trampolines: trampoline::Set,
    /// While binding a module whose lazily bound calls may go direct ([`crate::direct`]):
    /// what the import just bound to a trampoline forwards to.
    direct: Option<Option<LazyTarget>>,
    gen_id: Option<GenId>,
    /// The plan creates the memory and the table: its first ops, at the head of the setup
    /// section (which the plan's ops are assembled in, [`Txn::finish`]).
    creates_memory: bool,
    create_table: bool,
    table_min: u64,
    mem_bytes0: u64,
    table_size0: u64,
    late: Vec<Op>,
    host_slots: Vec<(Name, Slot)>,
    bind: BindMode,
    /// The import being bound, by its name's address and length, and its only definition
    /// found by [`Txn::presolve`]: [`Txn::lookup`] of that very name answers with it.
    hint: Option<(usize, usize, Def)>,
}

/// A run of a plan's ops, with the per-group templates of some of them (by index in `ops`).
#[derive(Default)]
struct Section {
    ops: Vec<Op>,
    templates: Vec<(u32, LogOp)>,
}

impl Section {
    /// Put `ops` before every op there is (a plan's memory and table come first).
    fn put_first<const N: usize>(&mut self, ops: [Op; N]) {
        self.ops.splice(0..0, ops);
        for (i, _) in &mut self.templates {
            *i += N as u32;
        }
    }

    /// An op each group applies in its own form ([`LogOp`]).
    fn push_templated(&mut self, op: Op, template: LogOp) {
        self.templates.push((self.ops.len() as u32, template));
        self.ops.push(op);
    }
}

/// How a resolved function import is bound.
enum FuncTarget {
    Def(Def),
    Host,
    Missing,
}

impl<'a> Txn<'a> {
    fn module(&self, id: ModuleId) -> &LoadedModule {
        let base_len = self.base.modules.len();
        if id.index() >= base_len {
            &self.new[id.index() - base_len]
        } else {
            self.base.modules[id.index()]
                .as_ref()
                .expect("txn refers only to live modules")
        }
    }

    fn module_mut(&mut self, id: ModuleId) -> Option<&mut LoadedModule> {
        self.new_index(id).and_then(|i| self.new.get_mut(i))
    }

    /// A new module's position in `new`; `None` for a module loaded before this plan.
    fn new_index(&self, id: ModuleId) -> Option<usize> {
        id.index().checked_sub(self.base.modules.len())
    }

    fn is_new(&self, id: ModuleId) -> bool {
        id.index() >= self.base.modules.len()
    }

    fn global_seq(&self, id: ModuleId) -> Option<u64> {
        let promoted = self.updates.iter().rev().find_map(|(m, u)| match u {
            Update::GlobalSeq(s) if *m == id => Some(*s),
            _ => None,
        });
        promoted.or(self.module(id).global_seq)
    }

    fn next_seq(&mut self) -> u64 {
        self.counters.seq += 1;
        self.counters.seq
    }

    fn set_global_seq(&mut self, id: ModuleId, seq: u64) {
        match self.module_mut(id) {
            Some(m) => m.global_seq = Some(seq),
            None => self.updates.push((id, Update::GlobalSeq(seq))),
        }
    }

    fn set_scope_root(&mut self, id: ModuleId, root: ModuleId) {
        if let Some(m) = self.module_mut(id) {
            m.scope_root = root;
        }
    }

    /// Put a module and its closure in the global scope (those not there yet, in order).
    fn promote(&mut self, root: ModuleId) {
        let closure: Vec<ModuleId> = self.module(root).closure.to_vec();
        for m in closure {
            if self.global_seq(m).is_none() {
                let s = self.next_seq();
                self.set_global_seq(m, s);
            }
        }
    }

    fn observe(&mut self, facts: Facts) {
        // The guest may have grown memory since the last plan; what lies beyond belongs to it.
        self.mem.bytes = self.mem.bytes.max(facts.memory_bytes);
        self.mem_bytes0 = self.mem.bytes;
    }

    fn pending_mut(&mut self) -> &mut HashMap<Name, Pending> {
        if self.pending.is_none() {
            self.pending = Some(self.base.pending.clone());
        }
        self.pending.as_mut().unwrap()
    }

    fn pending_get(&self, name: &str) -> Option<&Pending> {
        match &self.pending {
            Some(p) => p.get(name),
            None => self.base.pending.get(name),
        }
    }

    // ------------------------------------------------------------ finding and loading

    fn add_module(
        &mut self,
        name: &str,
        path: &str,
        info: Arc<ModuleInfo>,
        bytes: Arc<[u8]>,
        is_main: bool,
    ) -> Result<ModuleId, Error> {
        let id = ModuleId::new(self.base.modules.len() + self.new.len());
        if !is_main && !info.is_side_module() {
            return Err(Error::NotDynamic { path: path.into() });
        }
        if let Some(main) = self.main.filter(|_| !is_main) {
            let want = self.module(main).info.memory64;
            if info.memory64 != want {
                return Err(Error::Unsupported {
                    path: path.into(),
                    message: format!(
                        "a {} module cannot join a {} program",
                        if info.memory64 { "wasm64" } else { "wasm32" },
                        if want { "wasm64" } else { "wasm32" }
                    ),
                });
            }
        }
        self.modules_out.push(NewModule {
            id,
            name: name.into(),
            path: path.into(),
            bytes,
        });
        self.new_names.entry(name.into()).or_insert(id);
        self.new_names.insert(path.into(), id);
        self.new.push(LoadedModule {
            id,
            name: name.into(),
            path: path.into(),
            info,
            memory_base: 0,
            memory_size: 0,
            table_base: 0,
            table_size: 0,
            refs: 0,
            pinned: is_main,
            global_seq: None,
            scope_root: id,
            closure: Arc::from([id].as_slice()),
            needed: Vec::new(),
            uses: Vec::new(),
            users: 0,
            finalized: false,
            order: 0,
            is_main,
        });
        Ok(id)
    }

    /// Enter the symbols of the new modules not indexed yet into `new_symbols`, once the
    /// whole tree is read: the table is sized once for all of them.
    fn index_symbols(&mut self) {
        let fresh = &self.new[self.indexed..];
        let count: usize = fresh.iter().map(|m| m.info.exports.len()).sum();
        self.new_symbols.reserve(count);
        for m in fresh {
            for (i, e) in m.info.exports.iter().enumerate() {
                if e.is_symbol() {
                    let def = Def {
                        module: m.id,
                        export: i as u32,
                    };
                    self.new_symbols.push(&e.name, def);
                }
            }
        }
        self.indexed = self.new.len();
    }

    fn loaded_by_path(&self, path: &str) -> Option<ModuleId> {
        self.base
            .names
            .get(path)
            .filter(|m| self.base.module(**m).is_some_and(|x| x.path == path))
            .or_else(|| self.new_names.get(path))
            .copied()
    }

    /// An already loaded module answering to `name`: same requested name (a soname match),
    /// or one of the search candidates' paths.
    fn find_loaded(
        &self,
        name: &str,
        requester: Option<ModuleId>,
    ) -> Result<Option<ModuleId>, Error> {
        Ok(self.locate(name, requester)?.ok())
    }

    /// [`Txn::find_loaded`], or, when `name` is not loaded, the paths to try (computed once,
    /// for [`Txn::read_library`]).
    fn locate(
        &self,
        name: &str,
        requester: Option<ModuleId>,
    ) -> Result<Result<ModuleId, Vec<String>>, Error> {
        if let Some(id) = self.loaded_by_name(name) {
            return Ok(Ok(id));
        }
        let req = requester.map(|r| self.module(r));
        let cands = self.base.config.search.candidates(
            name,
            req.map(|r| Requester {
                path: &r.path,
                runtime_path: r.info.dylink.as_ref().map_or(&[][..], |d| &d.runtime_path),
            }),
        )?;
        Ok(self.located(name, cands))
    }

    /// [`Txn::locate`] with the candidates known (they depend on nothing loaded).
    fn located(&self, name: &str, cands: Vec<String>) -> Result<ModuleId, Vec<String>> {
        if let Some(id) = self.loaded_by_name(name) {
            return Ok(id);
        }
        cands
            .iter()
            .find_map(|p| self.loaded_by_path(p))
            .ok_or(cands)
    }

    /// A module loaded under `name`, a file name (a name with `/` is a path).
    fn loaded_by_name(&self, name: &str) -> Option<ModuleId> {
        if name.contains('/') {
            return None;
        }
        (self.base.names.get(name))
            .or_else(|| self.new_names.get(name))
            .copied()
    }

    /// Load `roots` and everything they need, breadth first. Returns the modules of the tree
    /// (roots first, then dependencies in BFS order), already-loaded ones included.
    fn load_tree(
        &mut self,
        roots: &[(String, Option<ModuleId>)],
        _requester: Option<ModuleId>,
        source: &dyn ModuleSource,
    ) -> Result<Vec<ModuleId>, Error> {
        // The next level: names, each with the module that needs it.
        let mut queue: Vec<(String, Option<ModuleId>)> = roots.to_vec();
        let mut out: Vec<ModuleId> = Vec::new();
        let mut listed: HashSet<ModuleId> = HashSet::new();
        // Level by level: each level's new files are read (on the workers, if any) before
        // the level is walked in order, so the walk decides exactly as a walk reading one
        // file at a time would.
        while !queue.is_empty() {
            let level = core::mem::take(&mut queue);
            let mut ahead = match self.base.config.workers.clone() {
                Some(workers) => self.read_ahead(&level, source, &workers),
                None => ReadAhead::default(),
            };
            for (i, (name, req)) in level.into_iter().enumerate() {
                let found = match ahead.searched.get_mut(i).and_then(Option::take) {
                    Some(cands) => self.located(&name, cands),
                    None => self.locate(&name, req)?,
                };
                let id = match found {
                    Ok(id) => id,
                    Err(cands) => {
                        let id = self.read_library(&name, req, cands, source, &mut ahead.files)?;
                        let needed = self.module(id).info.needed();
                        queue.extend(needed.iter().map(|n| (n.clone(), Some(id))));
                        id
                    }
                };
                if let Some(r) = req
                    && let Some(m) = self.module_mut(r)
                    && !m.needed.contains(&id)
                    && r != id
                {
                    m.needed.push(id);
                }
                if listed.insert(id) {
                    out.push(id);
                }
            }
        }
        self.index_symbols();
        // Closures of new modules, now that every edge is known.
        let new: Vec<ModuleId> = out.iter().copied().filter(|m| self.is_new(*m)).collect();
        for m in new {
            self.set_closure(m);
        }
        Ok(out)
    }

    /// Read every file the walk of `level` will read, as the walk would find it, and parse
    /// them on `workers` when there is enough to read. Nothing is decided here: a name that
    /// an earlier name of the level turns out to load is read for nothing, and errors are
    /// kept for the walk to meet in its order. Also returns each name's candidates, if it
    /// was not loaded already, for the walk to use instead of searching again.
    fn read_ahead(
        &self,
        level: &[(String, Option<ModuleId>)],
        source: &dyn ModuleSource,
        workers: &crate::Workers,
    ) -> ReadAhead {
        let cache = self.base.config.module_cache.as_ref();
        let mut ahead: HashMap<String, Ahead> = HashMap::new();
        let mut jobs: Vec<(String, Arc<[u8]>)> = Vec::new();
        let mut bytes = 0;
        let mut searched = Vec::with_capacity(level.len());
        for (name, req) in level {
            let Ok(Err(cands)) = self.locate(name, *req) else {
                searched.push(None);
                continue;
            };
            for path in &cands {
                match ahead.get(path) {
                    Some(Ahead::Absent) => continue,
                    Some(_) => break,
                    None => {}
                }
                let (read, found) = match source.read(path) {
                    Ok(None) => (Ahead::Absent, false),
                    // Read before: a lookup, no job.
                    Ok(Some(b)) => match cache.and_then(|c| c.get(&b)) {
                        Some(prepared) => (Ahead::Prepared(Ok(prepared)), true),
                        None => {
                            bytes += b.len();
                            jobs.push((path.clone(), b.clone()));
                            (Ahead::Read(b), true)
                        }
                    },
                    Err(message) => (Ahead::Failed(message), true),
                };
                ahead.insert(path.clone(), read);
                if found {
                    break;
                }
            }
            searched.push(Some(cands));
        }
        if !workers.worth(jobs.len(), bytes) {
            return ReadAhead {
                files: ahead,
                searched,
            };
        }
        let done: Vec<spin::Mutex<Option<Result<Prepared, crate::ParseError>>>> =
            jobs.iter().map(|_| spin::Mutex::new(None)).collect();
        workers.run(jobs.len(), &|i| {
            if let (Some((_, bytes)), Some(slot)) = (jobs.get(i), done.get(i)) {
                *slot.lock() = Some(prepare(cache, bytes.clone()));
            }
        });
        for ((path, _), slot) in jobs.into_iter().zip(done) {
            // A job a faulty pool skipped stays `Read`: the walk parses it itself.
            if let Some(prepared) = slot.into_inner() {
                ahead.insert(path, Ahead::Prepared(prepared));
            }
        }
        ReadAhead {
            files: ahead,
            searched,
        }
    }

    /// Load the first of `cands` the source has, using what [`Txn::read_ahead`] read.
    fn read_library(
        &mut self,
        name: &str,
        req: Option<ModuleId>,
        cands: Vec<String>,
        source: &dyn ModuleSource,
        ahead: &mut HashMap<String, Ahead>,
    ) -> Result<ModuleId, Error> {
        for path in &cands {
            let read = match ahead.remove(path) {
                Some(Ahead::Absent) => Ok(None),
                Some(Ahead::Failed(message)) => Err(message),
                Some(Ahead::Read(bytes)) => Ok(Some(bytes)),
                Some(Ahead::Prepared(prepared)) => {
                    let (bytes, info) = prepared.map_err(|error| Error::Parse {
                        path: path.clone(),
                        error,
                    })?;
                    return self.add_module(name, path, info, bytes, false);
                }
                None => source.read(path),
            };
            let bytes = read.map_err(|message| Error::Source {
                path: path.clone(),
                message,
            })?;
            if let Some(bytes) = bytes {
                let (bytes, info) = self.base.prepare(bytes).map_err(|error| Error::Parse {
                    path: path.clone(),
                    error,
                })?;
                return self.add_module(name, path, info, bytes, false);
            }
        }
        Err(Error::NotFound {
            name: name.into(),
            needed_by: req.map(|r| self.module(r).path.clone()),
            tried: cands,
        })
    }

    fn set_closure(&mut self, root: ModuleId) {
        let mut seen: Vec<ModuleId> = vec![root];
        let mut i = 0;
        while i < seen.len() {
            let next: Vec<ModuleId> = self.module(seen[i]).needed.clone();
            for n in next {
                if !seen.contains(&n) {
                    seen.push(n);
                }
            }
            i += 1;
        }
        if let Some(m) = self.module_mut(root) {
            m.closure = seen.into();
        }
    }

    /// Dependencies before dependents (depth-first post-order over NEEDED; a cycle is broken
    /// where it is first met), numbered into each module's `order`: the order of layout,
    /// relocations and constructors. `first` goes first regardless (a non-PIE main provides
    /// memory). Instances are made in [`Txn::binding_order`].
    fn needed_order(&mut self, mods: &[ModuleId], first: Option<ModuleId>) -> Vec<ModuleId> {
        let set: HashSet<ModuleId> = mods.iter().copied().collect();
        let mut order: Vec<ModuleId> = Vec::new();
        let mut state: HashMap<ModuleId, bool> = HashMap::new(); // false: visiting, true: done
        if let Some(f) = first {
            order.push(f);
            state.insert(f, true);
        }
        for &root in mods {
            // Iterative DFS: (module, next child index).
            let mut stack: Vec<(ModuleId, usize)> = Vec::new();
            if state.contains_key(&root) {
                continue;
            }
            state.insert(root, false);
            stack.push((root, 0));
            while let Some((m, i)) = stack.pop() {
                let needed = &self.module(m).needed;
                if i < needed.len() {
                    let child = needed[i];
                    stack.push((m, i + 1));
                    if set.contains(&child) && !state.contains_key(&child) {
                        state.insert(child, false);
                        stack.push((child, 0));
                    }
                } else {
                    state.insert(m, true);
                    order.push(m);
                }
            }
        }
        for &m in &order {
            self.counters.order += 1;
            let o = self.counters.order;
            if let Some(x) = self.module_mut(m) {
                x.order = o;
            }
        }
        order
    }

    /// The order to instantiate `order` in (the new modules, dependencies first, as
    /// [`Txn::needed_order`] gives them): each module after the new modules that
    /// define the functions it imports, wherever that is possible. An import whose definer
    /// is instantiated later is bound to a trampoline and called through the table, an
    /// indirect call each time, and NEEDED entries need not follow the calls: a library may
    /// call a function of a module that needs it, or of one nothing names.
    ///
    /// The modules' "imports a function from" graph is cut into strongly connected parts
    /// (Tarjan's algorithm, roots taken in `order`): parts come definers first, and parts no
    /// call connects keep their order. Within a part (a cycle of calls) some import must
    /// wait for its definer: the part is walked depth first from its member last in `order`
    /// and placed in post-order, so a two-module cycle stays as `order` has it and a ring of
    /// N modules waits at one import, not N - 1. `first` stays first. Only the order of
    /// instantiation changes: the memory layout, relocations and constructors keep `order`.
    fn binding_order(&self, order: &[ModuleId], first: Option<ModuleId>) -> Vec<ModuleId> {
        let n = order.len();
        let at: HashMap<ModuleId, u32> = (order.iter().enumerate())
            .map(|(i, &m)| (m, i as u32))
            .collect();
        // Each module's definers, by position in `order`: `to[starts[i]..starts[i + 1]]`.
        let mut starts = Vec::with_capacity(n + 1);
        let mut to: Vec<u32> = Vec::new();
        let base = &self.base.symbols;
        for (i, &m) in order.iter().enumerate() {
            starts.push(to.len());
            let from = to.len();
            for imp in &self.module(m).info.imports {
                if !matches!(imp.role, ImportRole::Func)
                    || (!base.is_empty() && base.contains(&imp.name))
                {
                    continue;
                }
                let Some(defs) = self.new_symbols.get(&imp.name) else {
                    continue;
                };
                // The global scope's choice: the first strong definition in load order, else
                // the first (a wrong guess costs a trampoline, never a wrong binding).
                let def = match defs {
                    [only] => only,
                    _ => (defs.iter())
                        .find(|d| {
                            !(self.module(d.module).info.exports)
                                .get(d.export as usize)
                                .is_some_and(|e| e.weak)
                        })
                        .unwrap_or(&defs[0]),
                };
                if let Some(&j) = at.get(&def.module)
                    && j as usize != i
                    && !to[from..].contains(&j)
                {
                    to.push(j);
                }
            }
        }
        starts.push(to.len());
        if to.is_empty() {
            return order.to_vec();
        }
        let edges = |v: usize| &to[starts[v]..starts[v + 1]];
        let mut out = Vec::with_capacity(n);
        // Tarjan's algorithm, iteratively: `index` in visiting order, `low` the lowest index
        // reachable, `part` a member's part once it is complete.
        const UNSEEN: u32 = u32::MAX;
        let mut index = vec![UNSEEN; n];
        let mut low = vec![0u32; n];
        let mut part = vec![UNSEEN; n];
        let mut open: Vec<usize> = Vec::new();
        let mut calls: Vec<(usize, usize)> = Vec::new();
        let mut next = 0u32;
        let mut parts = 0u32;
        if let Some(&f) = first.and_then(|f| at.get(&f)) {
            // Placed already: edges to it are edges to a complete part.
            index[f as usize] = next;
            part[f as usize] = parts;
            next += 1;
            parts += 1;
            out.push(order[f as usize]);
        }
        // The walk within a part.
        let mut walk: Vec<(usize, usize)> = Vec::new();
        let mut placed = vec![false; n];
        for root in 0..n {
            if index[root] != UNSEEN {
                continue;
            }
            index[root] = next;
            low[root] = next;
            next += 1;
            open.push(root);
            calls.push((root, 0));
            while let Some(&(v, e)) = calls.last() {
                if let Some(&w) = edges(v).get(e) {
                    let w = w as usize;
                    if let Some(c) = calls.last_mut() {
                        c.1 += 1;
                    }
                    if index[w] == UNSEEN {
                        index[w] = next;
                        low[w] = next;
                        next += 1;
                        open.push(w);
                        calls.push((w, 0));
                    } else if part[w] == UNSEEN {
                        low[v] = low[v].min(index[w]);
                    }
                    continue;
                }
                calls.pop();
                if let Some(&(u, _)) = calls.last() {
                    low[u] = low[u].min(low[v]);
                }
                if low[v] != index[v] {
                    continue;
                }
                // `v` closes a part: the open modules from `v` on.
                let Some(from) = open.iter().rposition(|&x| x == v) else {
                    continue;
                };
                let members = open.split_off(from);
                for &x in &members {
                    part[x] = parts;
                }
                if let [only] = members[..] {
                    out.push(order[only]);
                } else {
                    let start = members.iter().copied().max().unwrap_or(v);
                    placed[start] = true;
                    walk.push((start, 0));
                    while let Some(&(x, e)) = walk.last() {
                        if let Some(&y) = edges(x).get(e) {
                            let y = y as usize;
                            if let Some(c) = walk.last_mut() {
                                c.1 += 1;
                            }
                            if part[y] == parts && !placed[y] {
                                placed[y] = true;
                                walk.push((y, 0));
                            }
                            continue;
                        }
                        walk.pop();
                        out.push(order[x]);
                    }
                }
                parts += 1;
            }
        }
        out
    }

    // ------------------------------------------------------------ layout

    fn layout_startup(
        &mut self,
        main: ModuleId,
        order: &[ModuleId],
        pie: bool,
    ) -> Result<(), Error> {
        let cfg = &self.base.config;
        let info = self.module(main).info.clone();
        let memory64 = info.memory64;
        // Every module's memory import must accept the memory we make.
        let mut shared = info.shared_memory;
        let mut min_pages = 0u64;
        let mut max_pages: Option<u64> = None;
        let mut table_min = 0u64;
        for &m in order {
            let mi = self.module(m).info.clone();
            for imp in &mi.imports {
                match (&imp.role, &imp.ty) {
                    (ImportRole::Memory, ImportType::Memory(t)) => {
                        if t.shared != shared && m != main {
                            return Err(Error::Unsupported {
                                path: self.module(m).path.clone(),
                                message: format!(
                                    "imports a {}shared memory but the main module's is {}shared; build every module with the same -pthread setting",
                                    if t.shared { "" } else { "non-" },
                                    if shared { "" } else { "non-" }
                                ),
                            });
                        }
                        shared |= t.shared;
                        min_pages = min_pages.max(t.min_pages);
                        if let Some(mx) = t.max_pages {
                            max_pages = Some(max_pages.map_or(mx, |c| c.min(mx)));
                        }
                    }
                    (ImportRole::Table, ImportType::Table(t)) => table_min = table_min.max(t.min),
                    _ => {}
                }
            }
        }
        let limit = if memory64 { 1u64 << 48 } else { 1u64 << 32 };
        self.mem.memory64 = memory64;
        self.mem.shared = shared;
        self.mem.max_pages = max_pages;
        self.table.table64 = memory64
            && info
                .imports
                .iter()
                .any(|i| matches!(&i.ty, ImportType::Table(t) if t.table64));
        let oom = |needed: u64| Error::OutOfSpace {
            what: "memory",
            needed,
            limit,
        };

        if pie {
            // [0, global_base) unused; main's data; side modules; dlerror; TLS; stack; heap.
            let mut next = cfg.global_base.max(1);
            for &m in core::iter::once(&main).chain(order.iter().filter(|m| **m != main)) {
                let (size, align) = self.module(m).info.memory_needs();
                let base = align_up(next, 1u64 << align).ok_or_else(|| oom(next))?;
                next = base.checked_add(size as u64).ok_or_else(|| oom(base))?;
                let x = self.module_mut(m).expect("startup modules are new");
                x.memory_base = base;
                x.memory_size = x.info.region_size();
            }
            if shared {
                let counter = align_up(next, 8).ok_or_else(|| oom(next))?;
                next = counter + 8;
                self.mem.counter = Some(counter);
            }
            let dlerror = align_up(next, 16).ok_or_else(|| oom(next))?;
            next = dlerror + cfg.dl_text_size();
            let mut tls = Vec::new();
            for &m in order {
                let mi = &self.module(m).info;
                if has_tls_block(mi) {
                    let a = align_up(next, tls_align(mi)).ok_or_else(|| oom(next))?;
                    next = a + tls_len(mi);
                    tls.push((m, Addr(a)));
                }
            }
            let stack_low = align_up(next, 16).ok_or_else(|| oom(next))?;
            let stack_high =
                align_up(stack_low + cfg.stack_size, 16).ok_or_else(|| oom(stack_low))?;
            let heap_base = stack_high;
            let heap_end = align_up(
                heap_base
                    .checked_add(cfg.initial_heap)
                    .ok_or_else(|| oom(heap_base))?,
                PAGE,
            )
            .ok_or_else(|| oom(heap_base))?;
            if heap_end > limit {
                return Err(oom(heap_end));
            }
            let pages = (heap_end / PAGE).max(min_pages);
            if let Some(mx) = max_pages
                && pages > mx
            {
                return Err(Error::OutOfSpace {
                    what: "memory",
                    needed: pages * PAGE,
                    limit: mx * PAGE,
                });
            }
            self.mem.bytes = pages * PAGE;
            self.layout = Some(MainLayout {
                stack_low,
                stack_high,
                heap_base,
                heap_end: pages * PAGE,
            });
            // The table's size is known once binding is done ([`Txn::finish`] writes it).
            self.setup.put_first([
                Op::CreateMemory {
                    min_pages: pages,
                    max_pages,
                    shared,
                    memory64,
                },
                Op::CreateTable {
                    min: 0,
                    table64: self.table.table64,
                },
            ]);
            self.creates_memory = true;
            self.groups = Some(Groups::main(GroupState {
                cursor: 0,
                dlerror: Addr(dlerror),
                tls,
            }));
            // Slot 0 stays null; the table grows from 1.
            self.table.size = 1;
            self.create_table = true;
            self.table_min_hint(table_min);
        } else {
            let mem = info.defined_memory.expect("checked by plan_startup");
            let tab = info.defined_table.expect("checked by plan_startup");
            self.mem.bytes = mem.min_pages * PAGE;
            self.mem.max_pages = mem.max_pages;
            self.mem.shared = mem.shared;
            self.table.size = tab.min.max(1);
            self.table.max = tab.max;
            self.table.table64 = tab.table64;
            self.mem_bytes0 = self.mem.bytes;
            self.table_size0 = self.table.size;
            self.adopt.push(Op::AdoptMemory {
                module: main,
                export: "memory".into(),
            });
            self.adopt.push(Op::AdoptTable {
                module: main,
                export: "__indirect_function_table".into(),
            });
            if info.exports_allocator() {
                self.adopt.push(Op::StartAllocator { module: main });
            } else if (info.func_names.iter())
                .any(|(&f, n)| f >= info.imported_funcs && &**n == "malloc")
            {
                let module = self.module(main).path.clone();
                self.diags.push(Diagnostic::AllocatorNotExported { module });
            }
            // Side modules take memory above the main's initial memory.
            for &m in order.iter().filter(|m| **m != main) {
                self.place_module_memory(m)?;
            }
            if mem.shared {
                self.mem.counter = Some(self.alloc_mem(8, 8)?.0);
            }
            let dlerror = self.alloc_mem(self.base.config.dl_text_size(), 16)?;
            let mut tls = Vec::new();
            for &m in order {
                let mi = self.module(m).info.clone();
                if has_tls_block(&mi) {
                    tls.push((m, self.alloc_mem(tls_len(&mi), tls_align(&mi))?));
                }
            }
            self.groups = Some(Groups::main(GroupState {
                cursor: 0,
                dlerror,
                tls,
            }));
        }
        for &m in order {
            if m == main && !pie {
                continue;
            }
            self.place_module_table(m)?;
        }
        Ok(())
    }

    fn table_min_hint(&mut self, min: u64) {
        // Imports' minimum table sizes are met at `finish`, once the final size is known.
        self.table_min = min;
    }

    fn layout_dlopen(&mut self, order: &[ModuleId]) -> Result<(), Error> {
        for &m in order {
            let mi = self.module(m).info.clone();
            for imp in &mi.imports {
                if let (ImportRole::Memory, ImportType::Memory(t)) = (&imp.role, &imp.ty) {
                    if t.shared != self.mem.shared {
                        return Err(Error::Unsupported {
                            path: self.module(m).path.clone(),
                            message: format!(
                                "imports a {}shared memory but the program's is {}shared; build every module with the same -pthread setting",
                                if t.shared { "" } else { "non-" },
                                if self.mem.shared { "" } else { "non-" }
                            ),
                        });
                    }
                    if let (Some(want), Some(have)) = (t.max_pages, self.mem.max_pages)
                        && have > want
                    {
                        return Err(Error::Unsupported {
                            path: self.module(m).path.clone(),
                            message: format!(
                                "its memory import allows at most {want} pages but the program's memory may grow to {have}"
                            ),
                        });
                    }
                }
            }
            self.place_module_memory(m)?;
            self.place_module_table(m)?;
        }
        // Every live group needs a TLS block for each new TLS module.
        let tls_mods: Vec<ModuleId> = order
            .iter()
            .copied()
            .filter(|m| has_tls_block(&self.module(*m).info))
            .collect();
        if !tls_mods.is_empty() {
            let mut groups = self
                .groups
                .take()
                .unwrap_or_else(|| self.base.groups.clone());
            for g in groups.states_mut() {
                for &m in &tls_mods {
                    let mi = self.module(m).info.clone();
                    let a = self.alloc_mem(tls_len(&mi), tls_align(&mi))?;
                    g.tls.push((m, a));
                }
            }
            self.groups = Some(groups);
        }
        Ok(())
    }

    fn place_module_memory(&mut self, m: ModuleId) -> Result<(), Error> {
        let (_, align) = self.module(m).info.memory_needs();
        let len = self.module(m).info.region_size();
        let base = if len == 0 {
            // Nothing to reserve; any aligned non-zero value serves as a base.
            align_up(self.base.config.global_base.max(1), 1u64 << align).unwrap_or(0)
        } else {
            self.alloc_mem(len, 1u64 << align)?.0
        };
        let x = self.module_mut(m).expect("placed modules are new");
        x.memory_base = base;
        x.memory_size = len;
        Ok(())
    }

    fn place_module_table(&mut self, m: ModuleId) -> Result<(), Error> {
        let (len, align) = self.module(m).info.table_needs();
        let len = len as u64;
        let base = if len == 0 {
            0
        } else {
            self.alloc_slots(len, 1u64 << align)?.0
        };
        let x = self.module_mut(m).expect("placed modules are new");
        x.table_base = base;
        x.table_size = len;
        Ok(())
    }

    /// Linker-owned memory: the free list first, else new pages at the end of memory.
    fn alloc_mem(&mut self, len: u64, align: u64) -> Result<Addr, Error> {
        let limit = if self.mem.memory64 {
            1u64 << 48
        } else {
            1u64 << 32
        };
        loop {
            if let Some(g) = self.mem.alloc.alloc(len, align) {
                if g.dirty && len > 0 {
                    self.zero.push(Op::ZeroMemory {
                        addr: Addr(g.start),
                        len,
                    });
                }
                return Ok(Addr(g.start));
            }
            let need = len.checked_add(align).ok_or(Error::OutOfSpace {
                what: "memory",
                needed: len,
                limit,
            })?;
            let grow = align_up(need, PAGE).ok_or(Error::OutOfSpace {
                what: "memory",
                needed: len,
                limit,
            })?;
            let new_bytes = self
                .mem
                .bytes
                .checked_add(grow)
                .filter(|b| *b <= limit)
                .ok_or(Error::OutOfSpace {
                    what: "memory",
                    needed: self.mem.bytes.saturating_add(grow),
                    limit,
                })?;
            if let Some(mx) = self.mem.max_pages
                && new_bytes / PAGE > mx
            {
                return Err(Error::OutOfSpace {
                    what: "memory",
                    needed: new_bytes,
                    limit: mx * PAGE,
                });
            }
            self.mem.alloc.free(self.mem.bytes, grow, false);
            self.mem.bytes = new_bytes;
        }
    }

    /// Table slots: the free list first, else grow the table.
    fn alloc_slots(&mut self, len: u64, align: u64) -> Result<Slot, Error> {
        let limit = self.table.max.unwrap_or(if self.table.table64 {
            u64::MAX >> 1
        } else {
            u32::MAX as u64
        });
        loop {
            if let Some(g) = self.table.alloc.alloc(len, align) {
                return Ok(Slot(g.start));
            }
            // Grow by at least a quarter so that slot-by-slot allocation stays amortised.
            let grow = (len + align).max(self.table.size / 4).max(16);
            let new = self
                .table
                .size
                .checked_add(grow)
                .filter(|n| *n <= limit)
                .ok_or(Error::OutOfSpace {
                    what: "table",
                    needed: self.table.size.saturating_add(len),
                    limit,
                })?;
            // Slot 0 is never handed out: it is the null function pointer.
            let from = self.table.size.max(1);
            self.table.alloc.free(from, new - from, false);
            self.table.size = new;
        }
    }

    /// The canonical slot of a module's function: the one slot every `GOT.func`, `dlsym` and
    /// `&f` of it yields, so function pointers compare equal across modules.
    fn canonical_slot(&mut self, module: ModuleId, func: u32, name: Name) -> Result<Slot, Error> {
        if let Some(s) = self
            .base
            .canonical
            .get(&(module, func))
            .or_else(|| self.canonical.get(&(module, func)))
        {
            return Ok(*s);
        }
        // A function the module already places in its own table region (its own `&f`
        // relocated against `__table_base`) keeps that slot, so every module's pointer to it
        // is the same value.
        let m = self.module(module);
        let own = m
            .info
            .elem_offset(func)
            .filter(|&rel| (rel as u64) < m.table_size || (m.is_main && !m.info.imports_memory()));
        if let Some(rel) = own {
            let slot = Slot(m.table_base + rel as u64);
            self.canonical.insert((module, func), slot);
            self.slot_uses
                .push((slot, Some(SlotUse::Func { module, func })));
            return Ok(slot);
        }
        let slot = self.alloc_slots(1, 1)?;
        self.canonical.insert((module, func), slot);
        self.slot_uses
            .push((slot, Some(SlotUse::Func { module, func })));
        let op = Op::SetSlot {
            slot,
            value: SlotValue::Export { module, name },
        };
        // A new module's slots are written once every new module is instantiated.
        if self.is_new(module) {
            self.late.push(op)
        } else {
            self.body.push(op)
        }
        Ok(slot)
    }

    // ------------------------------------------------------------ globals

    fn const_global(&mut self, ty: ValType, mutable: bool, value: u64) -> GlobalId {
        let key = ConstKey { value, ty, mutable };
        if let Some(g) = self.base.got_cache.get(&key) {
            return g;
        }
        let (counters, setup) = (&mut self.counters, &mut self.setup);
        self.got_cache
            .get_or_insert_with(key, || create_global(counters, setup, ty, mutable, value))
    }

    fn new_global(&mut self, ty: ValType, mutable: bool, value: u64) -> GlobalId {
        create_global(&mut self.counters, &mut self.setup, ty, mutable, value)
    }

    fn tag(&mut self, name: &str, ty: FuncType) -> TagId {
        if let Some(t) = self.base.tags.get(name).copied().or_else(|| {
            self.tags
                .iter()
                .find(|(n, _)| &**n == name)
                .map(|(_, t)| *t)
        }) {
            return t;
        }
        let t = TagId(self.counters.tag);
        self.counters.tag += 1;
        self.tags.push((name.into(), t));
        self.setup.ops.push(Op::CreateTag {
            tag: t,
            ty: Box::new(ty),
        });
        t
    }

    // ------------------------------------------------------------ symbols

    fn candidates(&self, name: &str) -> SmallVec<[Def; 2]> {
        let mut out: SmallVec<[Def; 2]> = SmallVec::new();
        if let Some(d) = self.base.symbols.get(name) {
            out.extend(
                d.iter()
                    .copied()
                    .filter(|d| !self.unload.contains(&d.module)),
            );
        }
        if let Some(d) = self.new_symbols.get(name) {
            out.extend(d.iter().copied());
        }
        out
    }

    /// Scope lookup for `requester`: the global scope in order (a strong definition beats a
    /// weak one), then the requester's local scope.
    fn lookup(&mut self, name: &str, requester: ModuleId) -> Option<Def> {
        if is_linker_internal(name) {
            // Per-module names (`__dso_handle`, …) always mean the requester's own.
            let info = &self.module(requester).info;
            let export = info.exports.iter().position(|e| &*e.name == name)?;
            return Some(Def {
                module: requester,
                export: export as u32,
            });
        }
        // The common case: one definition, in a new module of the global scope.
        if let Some((at, len, only)) = self.hint
            && at == name.as_ptr() as usize
            && len == name.len()
            && self.global_seq(only.module).is_some()
        {
            return Some(only);
        }
        if (self.base.symbols.is_empty() || !self.base.symbols.contains(name))
            && let Some(&[only]) = self.new_symbols.get(name)
            && self.global_seq(only.module).is_some()
        {
            return Some(only);
        }
        let cands = self.candidates(name);
        if cands.is_empty() {
            return None;
        }
        let mut global: SmallVec<[((bool, u64), Def); 2]> = cands
            .iter()
            .filter_map(|d| {
                self.global_seq(d.module).map(|s| {
                    (
                        (
                            self.module(d.module).info.exports[d.export as usize].weak,
                            s,
                        ),
                        *d,
                    )
                })
            })
            .collect();
        global.sort_by_key(|(k, _)| *k);
        if let Some(&(_, chosen)) = global.first() {
            let strong = || global.iter().filter(|((w, _), _)| !*w).map(|(_, d)| *d);
            if strong().nth(1).is_some() && !self.dup_seen.contains(name) {
                self.dup_seen.insert(name.into());
                self.diags.push(Diagnostic::Duplicate {
                    symbol: name.into(),
                    chosen: self.module(chosen.module).path.clone(),
                    ignored: strong()
                        .skip(1)
                        .map(|d| self.module(d.module).path.clone())
                        .collect(),
                });
            }
            return Some(chosen);
        }
        let root = self.module(requester).scope_root;
        let closure = self.module(root).closure.clone();
        closure
            .iter()
            .find_map(|m| cands.iter().find(|d| d.module == *m).copied())
            .or_else(|| {
                // A module always sees its own definitions.
                cands.iter().find(|d| d.module == requester).copied()
            })
    }

    fn note_use(&mut self, user: ModuleId, used: ModuleId) {
        if user == used {
            return;
        }
        match self.module_mut(user) {
            Some(m) => {
                if !m.uses.contains(&used) {
                    m.uses.push(used);
                }
            }
            None => self.updates.push((user, Update::Use(used))),
        }
    }

    fn missing(
        &mut self,
        module: ModuleId,
        symbol: &str,
        kind: SymbolKind,
        weak: bool,
        deferred: bool,
    ) {
        let m = self.module(module).path.clone();
        self.diags.push(if weak {
            Diagnostic::WeakMissing {
                module: m,
                symbol: symbol.into(),
                kind,
            }
        } else {
            Diagnostic::Missing {
                module: m,
                symbol: symbol.into(),
                kind,
                deferred,
            }
        });
    }

    /// Address of a data symbol for `GOT.mem`, as seen from the applying group.
    fn data_address(
        &mut self,
        def: Def,
        requester: ModuleId,
        symbol: &str,
    ) -> Result<(u64, Option<(ModuleId, u64)>), ()> {
        let m = self.module(def.module);
        let e = &m.info.exports[def.export as usize];
        let ExportKind::Global {
            value: Some(v),
            mutable: false,
            ty,
        } = e.kind
        else {
            let exporter = m.path.clone();
            let module = self.module(requester).path.clone();
            self.diags.push(Diagnostic::KindMismatch {
                module,
                symbol: symbol.into(),
                wanted: SymbolKind::Data,
                exporter,
            });
            return Err(());
        };
        if ty != m.info.ptr_type() {
            let exporter = m.path.clone();
            let module = self.module(requester).path.clone();
            self.diags.push(Diagnostic::KindMismatch {
                module,
                symbol: symbol.into(),
                wanted: SymbolKind::Data,
                exporter,
            });
            return Err(());
        }
        if e.tls {
            if !has_tls_block(&m.info) {
                let module = m.path.clone();
                self.diags.push(Diagnostic::TlsNotPerThread { module });
                return Err(());
            }
            let block = self.current_tls_block(def.module).unwrap_or(0);
            return Ok((block.wrapping_add(v), Some((def.module, v))));
        }
        Ok((m.memory_base.wrapping_add(v), None))
    }

    fn current_tls_block(&self, module: ModuleId) -> Option<u64> {
        let groups = self.groups.as_ref().unwrap_or(&self.base.groups);
        let g = groups.get(self.group)?;
        g.tls.iter().find(|(m, _)| *m == module).map(|(_, a)| a.0)
    }

    fn resolve_func(
        &mut self,
        name: &str,
        requester: ModuleId,
        host: &dyn HostNames,
    ) -> FuncTarget {
        match self.lookup(name, requester) {
            Some(d) => FuncTarget::Def(d),
            None if host.defines("env", name) => FuncTarget::Host,
            None => FuncTarget::Missing,
        }
    }

    /// Check a function definition against an import's type; records a diagnostic on mismatch.
    fn func_def_ok(
        &mut self,
        def: Def,
        importer: ModuleId,
        symbol: &str,
        want: Option<&FuncType>,
    ) -> Option<u32> {
        let m = self.module(def.module);
        match m.info.exports[def.export as usize].kind {
            ExportKind::Func { index, ty } => {
                if let Some(want) = want {
                    let have = m.info.func_type(ty);
                    if have != want {
                        let d = Diagnostic::TypeMismatch {
                            module: self.module(importer).path.clone(),
                            symbol: symbol.into(),
                            expected: want.to_string(),
                            exporter: m.path.clone(),
                            found: have.to_string(),
                        };
                        self.diags.push(d);
                        return None;
                    }
                }
                Some(index)
            }
            _ => {
                let d = Diagnostic::KindMismatch {
                    module: self.module(importer).path.clone(),
                    symbol: symbol.into(),
                    wanted: SymbolKind::Func,
                    exporter: m.path.clone(),
                };
                self.diags.push(d);
                None
            }
        }
    }

    fn trampoline(
        &mut self,
        ty: &FuncType,
        target: Option<SlotValue>,
        pending: Option<&str>,
    ) -> Binding {
        let gen_id = match self.gen_id {
            Some(g) => g,
            None => {
                let g = GenId(self.counters.gen_id);
                self.counters.gen_id += 1;
                self.gen_id = Some(g);
                g
            }
        };
        let index = self.trampolines.push(ty);
        if let Some(value) = target {
            self.late.push(Op::SetTrampoline {
                gen_id,
                index: index as u32,
                value,
            });
        }
        if let Some(name) = pending {
            let p = self.pending_mut().entry(name.into()).or_default();
            p.trampolines.push((gen_id, index as u32));
            if p.ty.is_none() {
                p.ty = Some(ty.clone());
            }
        }
        Binding::Generated {
            gen_id,
            index: index as u32,
        }
    }
}

/// A new global's id, and its `CreateGlobal` op in `setup` (apart from [`Txn`]'s methods so
/// [`Txn::const_global`] can make one while it holds an entry of its cache).
fn create_global(
    counters: &mut Counters,
    setup: &mut Section,
    ty: ValType,
    mutable: bool,
    value: u64,
) -> GlobalId {
    let g = GlobalId(counters.global);
    counters.global += 1;
    setup.ops.push(Op::CreateGlobal {
        global: g,
        ty,
        mutable,
        value,
    });
    g
}

/// The address a module's `atexit` registrations carry as their DSO: its exported
/// `__dso_handle`, or the one the linker placed after its data.
fn dso_handle(m: &LoadedModule) -> Option<u64> {
    if let Some(ExportKind::Global { value: Some(v), .. }) =
        m.info.export("__dso_handle").map(|e| &e.kind)
    {
        return Some(m.memory_base.wrapping_add(*v));
    }
    m.info
        .needs_own_dso()
        .then(|| m.memory_base + m.memory_size - 4)
}

/// The modules `x` keeps loaded, each once: its NEEDED entries and the modules its imports
/// bound to.
fn deps(x: &LoadedModule) -> SmallVec<[ModuleId; 8]> {
    let mut d: SmallVec<[ModuleId; 8]> = x.needed.iter().chain(&x.uses).copied().collect();
    d.sort_unstable();
    d.dedup();
    d
}

/// The module's exported functions (a function exported under two names comes twice): the
/// only functions a canonical slot is kept for, as `Txn::canonical_slot` is asked for
/// definitions, which are exports.
fn exported_funcs(info: &ModuleInfo) -> impl Iterator<Item = u32> + '_ {
    info.exports.iter().filter_map(|e| match e.kind {
        ExportKind::Func { index, .. } => Some(index),
        _ => None,
    })
}

fn has_tls_block(info: &ModuleInfo) -> bool {
    info.init.init_tls && info.init.tls_base && info.init.tls_size.is_some()
}

impl fmt::Display for Linker {
    /// The layout: memory regions, table regions, canonical slots, groups.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "memory: {} pages{}{}",
            self.mem.bytes / PAGE,
            if self.mem.shared { " shared" } else { "" },
            if self.mem.memory64 { " memory64" } else { "" }
        )?;
        if let Some(l) = self.layout {
            writeln!(
                f,
                "  stack {:#x}..{:#x}, heap {:#x}..{:#x}",
                l.stack_low, l.stack_high, l.heap_base, l.heap_end
            )?;
        }
        for m in self.modules() {
            writeln!(
                f,
                "  {} {}: memory {:#x}+{:#x}, table {}+{}{}{}",
                m.id,
                m.path,
                m.memory_base,
                m.memory_size,
                m.table_base,
                m.table_size,
                match m.global_seq {
                    Some(_) => ", global",
                    None => ", local",
                },
                if m.refs > 0 {
                    format!(", refs {}", m.refs)
                } else {
                    String::new()
                }
            )?;
        }
        for r in self.mem.alloc.free_ranges() {
            writeln!(
                f,
                "  free memory {:#x}+{:#x}{}",
                r.start,
                r.len,
                if r.dirty { " (dirty)" } else { "" }
            )?;
        }
        writeln!(f, "table: {} slots", self.table.size)?;
        for (slot, u) in self.slot_uses.iter() {
            match u {
                SlotUse::Func { module, func } => {
                    let name = self
                        .module(*module)
                        .map_or(Name::from("?"), |m| m.info.func_name(*func));
                    writeln!(f, "  slot {slot}: {module}.{name}")?
                }
                SlotUse::Pending(s) => writeln!(f, "  slot {slot}: undefined `{s}`")?,
                SlotUse::Closure => writeln!(f, "  slot {slot}: closure")?,
                SlotUse::Host(n) => writeln!(f, "  slot {slot}: host {n}")?,
            }
        }
        for (i, g) in self.groups.iter() {
            write!(f, "group {}: dlerror {}", i.0, g.dlerror)?;
            for (m, a) in &g.tls {
                write!(f, ", tls {m} {a}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

// -------------------------------------------------------------------- linking and finishing

/// A binding for an import whose resolution failed; never reaches an adapter, because a plan
/// with errors is not made.
const UNRESOLVED: Binding = Binding::Global(GlobalId(u32::MAX));

impl<'a> Txn<'a> {
    /// Whether module `m` is instantiated before the one being bound: a loaded module, or a
    /// new one `done` (by index among the new modules) says was bound already.
    fn instantiated(&self, m: ModuleId, done: &[bool]) -> bool {
        self.new_index(m)
            .is_none_or(|i| done.get(i).copied().unwrap_or(false))
    }

    /// Bind every import of the new modules and emit their instantiations, in `order`, then
    /// their init calls, in `inits` (the same modules, dependencies first). All findings are
    /// collected; any error fails the whole plan.
    fn link(
        &mut self,
        order: &[ModuleId],
        inits: &[ModuleId],
        host: &dyn HostNames,
    ) -> Result<(), Error> {
        // Room for what binding makes at most (a global per `GOT.*` or base import, a
        // canonical slot and its op per `GOT.func`, an instantiation per module) reserved
        // once: grown as they fill, the tables rehashed and the op lists were copied
        // several times over.
        let (mut globals, mut got_funcs, mut funcs) = (0, 0, 0);
        for &m in order {
            for i in &self.module(m).info.imports {
                match i.role {
                    ImportRole::GotFunc => got_funcs += 1,
                    ImportRole::Func => funcs += 1,
                    ImportRole::GotMem
                    | ImportRole::MemoryBase
                    | ImportRole::TableBase
                    | ImportRole::TableBase32 => globals += 1,
                    _ => {}
                }
            }
        }
        globals += got_funcs;
        self.got_cache.reserve(globals);
        self.canonical.reserve(got_funcs);
        self.slot_uses.reserve(got_funcs);
        // A slot write per canonical slot and per trampoline with a target.
        self.late.reserve(got_funcs + funcs);
        self.trampolines.reserve(funcs);
        self.body.reserve(order.len());
        // The plan's ops are assembled in the setup section's vector ([`Txn::finish`]),
        // reserved here for all of them: assembling them in a new vector copied every op
        // once more, most of it page faults on the fresh copy (a twelfth of planning 1,000
        // modules). Unused room past the end of a large vector is never touched.
        const INITS_PER_MODULE: usize = 5;
        self.setup.ops.reserve(
            globals
                + 1
                + self.adopt.len()
                + 2
                + self.zero.len()
                + order.len() * (1 + INITS_PER_MODULE)
                + got_funcs
                + funcs,
        );
        let mut done = vec![false; self.new.len()];
        let mut found = Vec::new();
        for &m in order {
            let info = self.module(m).info.clone();
            let mut bindings = Vec::with_capacity(info.imports.len());
            // Function imports by name, for the `GOT.func` imports of the same symbols.
            let funcs: HashMap<&str, &Import> = if info
                .imports
                .iter()
                .any(|i| matches!(i.role, ImportRole::GotFunc))
            {
                // Sized first: a filtered iterator gives no size, and growing rehashed it.
                let mut funcs = HashMap::with_capacity(info.imported_funcs as usize);
                funcs.extend(
                    (info.imports.iter())
                        .filter(|i| matches!(i.ty, ImportType::Func(_)))
                        .map(|i| (&*i.name, i)),
                );
                funcs
            } else {
                HashMap::new()
            };
            self.presolve(&info, &mut found);
            let table = self.direct_table(&info);
            // Function imports bound to trampolines: (function index, type index, target).
            let mut lazy = Vec::new();
            let mut func_index = 0;
            for (imp, &only) in info.imports.iter().zip(&found) {
                self.direct = table.map(|_| None);
                self.hint = only.map(|d| (imp.name.as_ptr() as usize, imp.name.len(), d));
                let bound = self.bind_import(m, &info, imp, host, &done, &funcs);
                self.hint = None;
                bindings.push(bound?);
                if let ImportType::Func(ty) = imp.ty {
                    if let Some(Some(target)) = self.direct.take() {
                        lazy.push((func_index, ty, target));
                    }
                    func_index += 1;
                }
            }
            self.direct = None;
            if let (Some(table), false) = (table, lazy.is_empty())
                && self.redirect_calls(m, &info, lazy, table)?
                && matches!(table, crate::direct::TableRef::Added { .. })
            {
                bindings.push(Binding::Table);
            }
            let op = Op::Instantiate {
                module: m,
                imports: Arc::new(bindings),
            };
            if Some(m) == self.main && !info.imports_memory() {
                self.adopt.insert(0, op);
            } else {
                self.body.push(op);
            }
            if let Some(d) = self.new_index(m).and_then(|i| done.get_mut(i)) {
                *d = true;
            }
        }
        if self.diags.iter().any(|d| d.is_error()) {
            return Err(Error::Link {
                diagnostics: core::mem::take(&mut self.diags),
            });
        }
        self.emit_inits(inits);
        Ok(())
    }

    /// Look up, in one tight pass, the symbol imports of `info` that have exactly one
    /// definition, all of it new (`found[i]` for import `i`), and read the definer's export
    /// as binding will. Past a few thousand symbols none of this is in cache: one lookup at
    /// a time, between the binding work, each miss stalled on its own (the lookups were a
    /// fifth of planning 1,000 modules), while here the loads are independent and overlap.
    /// [`Txn::lookup`] still decides (scope, weak, duplicates): `found` only saves finding.
    fn presolve(&self, info: &ModuleInfo, found: &mut Vec<Option<Def>>) {
        found.clear();
        found.extend(info.imports.iter().map(|imp| {
            if !matches!(
                imp.role,
                ImportRole::Func | ImportRole::GotMem | ImportRole::GotFunc
            ) || (!self.base.symbols.is_empty() && self.base.symbols.contains(&imp.name))
            {
                return None;
            }
            let &[def] = self.new_symbols.get(&imp.name)? else {
                return None;
            };
            let e = self
                .module(def.module)
                .info
                .exports
                .get(def.export as usize)?;
            core::hint::black_box(e.weak);
            Some(def)
        }));
    }

    /// The table (index, 64-bit) a new module's lazily bound calls may go through directly,
    /// if they may ([`crate::direct`]): not when the main module defines the table.
    fn direct_table(&self, info: &ModuleInfo) -> Option<crate::direct::TableRef> {
        let pie = self
            .main
            .is_none_or(|main| self.module(main).info.imports_memory());
        if !self.base.config.direct_lazy_calls || !pie {
            return None;
        }
        crate::direct::table_ref(info, self.table.table64)
    }

    /// Rewrite module `m`'s direct calls to its lazily bound imports `lazy` (function index,
    /// type index, target) into indirect calls through the targets' slots; the plan then
    /// instantiates the rewritten bytes. Only the imports it calls get a slot. Whether it
    /// rewrote anything.
    fn redirect_calls(
        &mut self,
        m: ModuleId,
        info: &ModuleInfo,
        lazy: Vec<(u32, u32, LazyTarget)>,
        table: crate::direct::TableRef,
    ) -> Result<bool, Error> {
        let Some(out) = self.modules_out.iter().position(|n| n.id == m) else {
            return Ok(false);
        };
        let parse_error = |path: &str, error| Error::Parse {
            path: path.into(),
            error,
        };
        let funcs: HashSet<u32> = lazy.iter().map(|(f, _, _)| *f).collect();
        let called = crate::direct::called(&self.modules_out[out].bytes, info, &funcs)
            .map_err(|e| parse_error(&self.modules_out[out].path, e))?;
        let mut redirects = Vec::with_capacity(called.len());
        for (func, ty, target) in lazy {
            if !called.contains(&func) {
                continue;
            }
            let slot = match target {
                LazyTarget::Defined { module, func, name } => {
                    self.canonical_slot(module, func, name)?
                }
                // In a threaded program another thread's load may fill a waiting slot:
                // only the trampoline, which runs the safe-point check first, may call
                // through it. A definer of this plan has its slot written in every
                // thread's table before any of them runs this module's code.
                LazyTarget::Pending { .. } if info.shared_memory => continue,
                LazyTarget::Pending { symbol, ty } => {
                    let slot = self.pending_slot(&symbol, Some(ty.clone()), m)?;
                    // Calls through the slot are checked against the type it was first
                    // handed out for: another importer's type would trap there.
                    if self.pending_get(&symbol).and_then(|p| p.ty.as_ref()) != Some(&ty) {
                        continue;
                    }
                    slot
                }
            };
            redirects.push(crate::direct::Redirect {
                func,
                ty,
                slot: slot.0,
            });
        }
        if redirects.is_empty() {
            return Ok(false);
        }
        let out = &mut self.modules_out[out];
        let bytes = crate::direct::rewrite(&out.bytes, &redirects, table)
            .map_err(|e| parse_error(&out.path, e))?;
        if matches!(table, crate::direct::TableRef::Added { .. }) {
            // One more import: what the core knows of the module must say so.
            let info = ModuleInfo::parse(&bytes).map_err(|e| parse_error(&out.path, e))?;
            if let Some(new) = self.new.iter_mut().find(|n| n.id == m) {
                new.info = Arc::new(info);
            }
        }
        out.bytes = bytes.into();
        Ok(true)
    }

    // Inlined into its one caller, [`Txn::link`]: once a name shrank to 16 bytes the
    // compiler kept it out of line, a call with seven arguments per import (more
    // instructions per plan, nearly 3%).
    #[inline(always)]
    fn bind_import(
        &mut self,
        m: ModuleId,
        info: &ModuleInfo,
        imp: &Import,
        host: &dyn HostNames,
        done: &[bool],
        funcs: &HashMap<&str, &Import>,
    ) -> Result<Binding, Error> {
        let import_ty = match imp.ty {
            ImportType::Global { ty, .. } => ty,
            _ => ValType::I32,
        };
        let me = self.module(m);
        let (memory_base, table_base) = (me.memory_base, me.table_base);
        Ok(match &imp.role {
            ImportRole::Memory => Binding::Memory,
            ImportRole::Table => Binding::Table,
            ImportRole::StackPointer => match self
                .main
                .filter(|main| !self.module(*main).info.imports_memory())
            {
                Some(main) => {
                    let exported = self
                        .module(main)
                        .info
                        .export("__stack_pointer")
                        .is_some_and(|e| {
                            matches!(e.kind, ExportKind::Global { mutable: true, .. })
                        });
                    let index = self.module(main).info.export_position("__stack_pointer");
                    let (true, Some(index)) = (exported, index) else {
                        return Err(Error::BadMain {
                            path: self.module(main).path.clone(),
                            message: "side modules share the main module's stack pointer, but it does not export `__stack_pointer` (link it with --export=__stack_pointer or --export-all)".into(),
                        });
                    };
                    Binding::Export {
                        module: main,
                        index,
                        name: "__stack_pointer".into(),
                    }
                }
                None => {
                    let g = match self.stack_pointer {
                        Some(g) => g,
                        None => {
                            let top = self.layout.map_or(0, |l| l.stack_high);
                            let g = self.new_global(import_ty, true, top);
                            self.stack_pointer = Some(g);
                            g
                        }
                    };
                    Binding::Global(g)
                }
            },
            ImportRole::MemoryBase => {
                Binding::Global(self.const_global(import_ty, false, memory_base))
            }
            ImportRole::TableBase | ImportRole::TableBase32 => {
                Binding::Global(self.const_global(import_ty, false, table_base))
            }
            ImportRole::Layout(l) if self.layout.is_some() && self.module(m).is_main => {
                let lay = self.layout.expect("checked");
                let v = match l {
                    LayoutGlobal::HeapBase => lay.heap_base,
                    LayoutGlobal::HeapEnd => lay.heap_end,
                    LayoutGlobal::StackLow => lay.stack_low,
                    LayoutGlobal::StackHigh => lay.stack_high,
                };
                Binding::Global(self.const_global(import_ty, true, v))
            }
            ImportRole::GotMem if &*imp.name == "__dso_handle" && info.needs_own_dso() => {
                let dso = dso_handle(self.module(m)).unwrap_or(0);
                Binding::Global(self.const_global(import_ty, true, dso))
            }
            ImportRole::Layout(_) | ImportRole::GotMem => {
                let sym = &*imp.name;
                match self.lookup(sym, m) {
                    Some(def) => match self.data_address(def, m, sym) {
                        Ok((value, None)) => {
                            self.note_use(m, def.module);
                            Binding::Global(self.const_global(import_ty, true, value))
                        }
                        Ok((value, Some((module, offset)))) => {
                            self.note_use(m, def.module);
                            let g = GlobalId(self.counters.global);
                            self.counters.global += 1;
                            let op = Op::CreateGlobal {
                                global: g,
                                ty: import_ty,
                                mutable: true,
                                value,
                            };
                            self.setup.push_templated(
                                op,
                                LogOp::TlsGlobal {
                                    global: g,
                                    ty: import_ty,
                                    module,
                                    offset,
                                },
                            );
                            Binding::Global(g)
                        }
                        Err(()) => UNRESOLVED,
                    },
                    None => {
                        self.missing(m, sym, SymbolKind::Data, imp.weak, false);
                        Binding::Global(self.const_global(import_ty, true, 0))
                    }
                }
            }
            ImportRole::GotFunc => {
                let sym = &imp.name;
                let own = funcs.get(&**sym).copied();
                let want = own.and_then(|i| match (&i.role, &i.ty) {
                    (ImportRole::Func, ImportType::Func(t)) => Some(info.func_type(*t)),
                    _ => None,
                });
                // `&f` of a function the module imports from another namespace (a host
                // function such as `test.log_int`) is that host function's slot.
                // A `GOT.func` carries no namespace: when the importer (or, failing that, any
                // module of the program) calls it from a host namespace, that is the one.
                let own_host = own.filter(|i| {
                    i.role == ImportRole::Host && host.defines(info.import_module(i), &i.name)
                });
                let ns = match own_host {
                    Some(i) => Some(info.import_module_name(i)),
                    None if own.is_some() => None,
                    None => self.host_namespace_of(sym, m, host),
                };
                if let Some(ns) = ns {
                    let slot = self.host_slot(&ns, sym)?;
                    return Ok(Binding::Global(self.const_global(import_ty, true, slot.0)));
                }
                match self.resolve_func(sym, m, host) {
                    FuncTarget::Def(def) => match self.func_def_ok(def, m, sym, want) {
                        Some(index) => {
                            self.note_use(m, def.module);
                            let name = self.module(def.module).info.exports[def.export as usize]
                                .name
                                .clone();
                            let slot = self.canonical_slot(def.module, index, name)?;
                            Binding::Global(self.const_global(import_ty, true, slot.0))
                        }
                        None => UNRESOLVED,
                    },
                    FuncTarget::Host => {
                        let slot = self.host_slot("env", sym)?;
                        Binding::Global(self.const_global(import_ty, true, slot.0))
                    }
                    FuncTarget::Missing if imp.weak => {
                        self.missing(m, sym, SymbolKind::Func, true, false);
                        Binding::Global(self.const_global(import_ty, true, 0))
                    }
                    FuncTarget::Missing => {
                        let lazy = self.bind == BindMode::Lazy;
                        self.missing(m, sym, SymbolKind::Func, false, lazy);
                        if !lazy {
                            return Ok(UNRESOLVED);
                        }
                        let slot = self.pending_slot(sym, want.cloned(), m)?;
                        Binding::Global(self.const_global(import_ty, true, slot.0))
                    }
                }
            }
            ImportRole::Func => {
                let sym = &imp.name;
                let ImportType::Func(t) = imp.ty else {
                    unreachable!("classified as a function")
                };
                let ty = info.func_type(t);
                match self.resolve_func(sym, m, host) {
                    FuncTarget::Def(def) => match self.func_def_ok(def, m, sym, Some(ty)) {
                        Some(index) => {
                            self.note_use(m, def.module);
                            let name = self.module(def.module).info.exports[def.export as usize]
                                .name
                                .clone();
                            if self.instantiated(def.module, done) {
                                Binding::Export {
                                    module: def.module,
                                    index: def.export,
                                    name,
                                }
                            } else if trampoline::can_forward(ty) {
                                if self.direct.is_some() {
                                    self.direct = Some(Some(LazyTarget::Defined {
                                        module: def.module,
                                        func: index,
                                        name: name.clone(),
                                    }));
                                }
                                self.trampoline(
                                    ty,
                                    Some(SlotValue::Export {
                                        module: def.module,
                                        name,
                                    }),
                                    None,
                                )
                            } else {
                                return Err(Error::Unsupported {
                                    path: self.module(m).path.clone(),
                                    message: format!(
                                        "`{sym}: {ty}` must be bound before its definer is instantiated, and a trampoline cannot forward its types"
                                    ),
                                });
                            }
                        }
                        None => UNRESOLVED,
                    },
                    FuncTarget::Host => Binding::Host(HostName::boxed("env", sym.clone())),
                    FuncTarget::Missing if imp.weak => {
                        self.missing(m, sym, SymbolKind::Func, true, false);
                        Binding::Trap {
                            symbol: sym.clone(),
                            ty: Box::new(ty.clone()),
                        }
                    }
                    FuncTarget::Missing => {
                        let lazy = self.bind == BindMode::Lazy && trampoline::can_forward(ty);
                        self.missing(m, sym, SymbolKind::Func, false, lazy);
                        if !lazy {
                            return Ok(UNRESOLVED);
                        }
                        self.add_waiter(sym, m);
                        if self.direct.is_some() {
                            self.direct = Some(Some(LazyTarget::Pending {
                                symbol: sym.clone(),
                                ty: ty.clone(),
                            }));
                        }
                        let trap = SlotValue::Trap {
                            symbol: sym.clone(),
                            ty: Box::new(ty.clone()),
                        };
                        self.trampoline(ty, Some(trap), Some(sym))
                    }
                }
            }
            ImportRole::Global => {
                let sym = &imp.name;
                let ImportType::Global { ty, mutable } = imp.ty else {
                    unreachable!("classified as a global")
                };
                let found = self.lookup(sym, m).filter(|d| {
                    matches!(self.module(d.module).info.exports[d.export as usize].kind, ExportKind::Global { ty: t, mutable: mu, .. } if t == ty && mu == mutable)
                });
                match found {
                    Some(def) if self.instantiated(def.module, done) => {
                        self.note_use(m, def.module);
                        Binding::Export {
                            module: def.module,
                            index: def.export,
                            name: sym.clone(),
                        }
                    }
                    _ if host.defines("env", sym) => {
                        Binding::Host(HostName::boxed("env", sym.clone()))
                    }
                    _ => {
                        self.missing(m, sym, SymbolKind::Global, false, false);
                        UNRESOLVED
                    }
                }
            }
            ImportRole::Tag => {
                let name = &imp.name;
                let ImportType::Tag(t) = imp.ty else {
                    unreachable!("classified as a tag")
                };
                let exported = self.lookup(name, m).filter(|d| {
                    matches!(
                        self.module(d.module).info.exports[d.export as usize].kind,
                        ExportKind::Tag(_)
                    ) && self.instantiated(d.module, done)
                });
                match exported {
                    Some(def) => Binding::Export {
                        module: def.module,
                        index: def.export,
                        name: name.clone(),
                    },
                    None => Binding::Tag(self.tag(name, info.func_type(t).clone())),
                }
            }
            ImportRole::ThreadSpawn => Binding::ThreadSpawn,
            ImportRole::AfterWait => Binding::AfterWait,
            ImportRole::CatchUp => Binding::CatchUp,
            ImportRole::Seen => Binding::Seen,
            ImportRole::CommitCounter => match self.mem.counter {
                Some(addr) => {
                    let ImportType::Global { ty, .. } = imp.ty else {
                        unreachable!("classified as a pointer global")
                    };
                    Binding::Global(self.const_global(ty, false, addr))
                }
                None => {
                    return Err(Error::Unsupported {
                        path: self.module(m).path.clone(),
                        message: "has thread safe points but the program's memory is not shared; build every module with the same -pthread setting".into(),
                    });
                }
            },
            ImportRole::Dl(func) => Binding::Dl {
                func: *func,
                caller: m,
            },
            ImportRole::Host => {
                if host.defines(info.import_module(imp), &imp.name) {
                    Binding::Host(HostName::boxed(
                        info.import_module_name(imp),
                        imp.name.clone(),
                    ))
                } else {
                    let kind = match imp.ty {
                        ImportType::Func(_) => SymbolKind::Func,
                        ImportType::Tag(_) => SymbolKind::Tag,
                        _ => SymbolKind::Global,
                    };
                    self.missing(
                        m,
                        &format!("{}.{}", info.import_module(imp), imp.name),
                        kind,
                        false,
                        false,
                    );
                    UNRESOLVED
                }
            }
        })
    }

    fn host_slot(&mut self, namespace: &str, sym: &str) -> Result<Slot, Error> {
        let key: Name = format!("{namespace}.{sym}").into();
        let known = self
            .base
            .slot_uses
            .iter()
            .find(|(_, u)| matches!(u, SlotUse::Host(n) if *n == key))
            .map(|(s, _)| Slot(*s));
        if let Some(s) = known.or_else(|| {
            self.host_slots
                .iter()
                .find(|(n, _)| *n == key)
                .map(|(_, s)| *s)
        }) {
            return Ok(s);
        }
        let slot = self.alloc_slots(1, 1)?;
        self.host_slots.push((key.clone(), slot));
        self.slot_uses.push((slot, Some(SlotUse::Host(key))));
        self.body.push(Op::SetSlot {
            slot,
            value: SlotValue::Host(HostName::boxed(namespace, sym)),
        });
        Ok(slot)
    }

    /// The host namespace `sym` comes from, if no module defines it but some module imports
    /// it as a function from a namespace the host defines it in (the importer first).
    fn host_namespace_of(&self, sym: &str, m: ModuleId, host: &dyn HostNames) -> Option<Name> {
        let from = |info: &ModuleInfo| {
            info.imports
                .iter()
                .find(|i| {
                    i.role == ImportRole::Host
                        && matches!(i.ty, ImportType::Func(_))
                        && &*i.name == sym
                        && host.defines(info.import_module(i), &i.name)
                })
                .map(|i| info.import_module_name(i))
        };
        if let Some(ns) = from(&self.module(m).info) {
            return Some(ns);
        }
        if !self.candidates(sym).is_empty() || host.defines("env", sym) {
            return None;
        }
        self.base
            .modules()
            .map(|x| &x.info)
            .chain(self.new.iter().map(|x| &x.info))
            .find_map(|i| from(i))
    }

    fn add_waiter(&mut self, sym: &str, m: ModuleId) {
        let p = self.pending_mut().entry(sym.into()).or_default();
        if !p.waiters.contains(&m) {
            p.waiters.push(m);
        }
    }

    /// The slot handed out as `GOT.func` for a function nothing defines yet; it traps naming
    /// the symbol until a definition arrives, then becomes that function's canonical slot.
    fn pending_slot(
        &mut self,
        sym: &str,
        ty: Option<FuncType>,
        m: ModuleId,
    ) -> Result<Slot, Error> {
        self.add_waiter(sym, m);
        if let Some(s) = self.pending_get(sym).and_then(|p| p.slot) {
            return Ok(s);
        }
        let slot = self.alloc_slots(1, 1)?;
        let ty = ty.unwrap_or_default();
        self.body.push(Op::SetSlot {
            slot,
            value: SlotValue::Trap {
                symbol: sym.into(),
                ty: Box::new(ty.clone()),
            },
        });
        self.slot_uses
            .push((slot, Some(SlotUse::Pending(sym.into()))));
        let p = self.pending_mut().entry(sym.into()).or_default();
        p.slot = Some(slot);
        if p.ty.is_none() {
            p.ty = Some(ty);
        }
        Ok(slot)
    }

    /// Symbols waiting for a definition that the modules now in the global scope provide:
    /// their slots and trampolines are pointed at the definition.
    fn adopt_pending(&mut self, mods: &[ModuleId]) {
        let names: Vec<String> = match &self.pending {
            Some(p) => p.keys().map(|k| k.to_string()).collect(),
            None => self.base.pending.keys().map(|k| k.to_string()).collect(),
        };
        for name in names {
            let Some(def) = self.lookup(&name, mods[0]) else {
                continue;
            };
            if self.global_seq(def.module).is_none() || !mods.contains(&def.module) {
                continue;
            }
            let p = self.pending_get(&name).cloned().unwrap_or_default();
            let m = self.module(def.module);
            let ExportKind::Func { index, ty } = m.info.exports[def.export as usize].kind else {
                continue;
            };
            let have = m.info.func_type(ty).clone();
            // The type is known when a function import declared it (a bare `GOT.func` does not).
            if let Some(want) =
                p.ty.as_ref()
                    .filter(|t| !p.trampolines.is_empty() || **t != FuncType::default())
                && *want != have
            {
                let d = Diagnostic::TypeMismatch {
                    module: p
                        .waiters
                        .first()
                        .map_or(String::new(), |w| self.module(*w).path.clone()),
                    symbol: name.clone(),
                    expected: want.to_string(),
                    exporter: m.path.clone(),
                    found: have.to_string(),
                };
                self.diags.push(d);
                continue;
            }
            let export = m.info.exports[def.export as usize].name.clone();
            let value = SlotValue::Export {
                module: def.module,
                name: export,
            };
            let late = self.is_new(def.module);
            let mut ops = Vec::new();
            if let Some(slot) = p.slot {
                if let Some(existing) = self
                    .base
                    .canonical
                    .get(&(def.module, index))
                    .or_else(|| self.canonical.get(&(def.module, index)))
                {
                    // Already has a canonical slot; the old pending slot forwards to the same function.
                    let _ = existing;
                } else {
                    self.canonical.insert((def.module, index), slot);
                }
                self.slot_uses.push((
                    slot,
                    Some(SlotUse::Func {
                        module: def.module,
                        func: index,
                    }),
                ));
                ops.push(Op::SetSlot {
                    slot,
                    value: value.clone(),
                });
            }
            for (gen_id, i) in &p.trampolines {
                ops.push(Op::SetTrampoline {
                    gen_id: *gen_id,
                    index: *i,
                    value: value.clone(),
                });
            }
            if late {
                self.late.extend(ops)
            } else {
                self.body.extend(ops)
            }
            for w in p.waiters.clone() {
                self.note_use(w, def.module);
            }
            self.pending_mut().remove(name.as_str());
        }
    }

    fn emit_inits(&mut self, order: &[ModuleId]) {
        for &m in order {
            if self.module(m).info.init.apply_data_relocs {
                self.inits.ops.push(Op::Call {
                    module: m,
                    func: InitCall::ApplyDataRelocs,
                });
            }
        }
        for &m in order {
            let info = self.module(m).info.clone();
            if has_tls_block(&info) {
                let block = Addr(self.current_tls_block(m).unwrap_or(0));
                self.inits.push_templated(
                    Op::InitTls { module: m, block },
                    LogOp::InitTls { module: m },
                );
            }
            if info.init.apply_tls_relocs {
                self.inits.ops.push(Op::Call {
                    module: m,
                    func: InitCall::ApplyTlsRelocs,
                });
            } else if info.exports.iter().any(|e| e.tls)
                && !has_tls_block(&info)
                && info.shared_memory
            {
                let module = self.module(m).path.clone();
                self.diags.push(Diagnostic::TlsNotPerThread { module });
            }
        }
        // Constructors: dependencies first; the main module last (a command's `_start` runs
        // its own, so only a reactor's `_initialize` is called).
        let main = self.main;
        for &m in order
            .iter()
            .filter(|m| Some(**m) != main)
            .chain(order.iter().filter(|m| Some(**m) == main))
        {
            let init = self.module(m).info.init;
            let call = if init.initialize {
                Some(InitCall::Initialize)
            } else if Some(m) == main && init.start {
                None
            } else if init.call_ctors {
                Some(InitCall::CallCtors)
            } else {
                None
            };
            if let Some(func) = call {
                self.inits.ops.push(Op::Call { module: m, func });
            }
        }
    }

    fn finish_startup(&mut self, _main: ModuleId) {
        for m in &mut self.new {
            m.pinned = true;
        }
    }

    /// Whether unloading `m` has destructors to run that have not run yet.
    fn has_destructors(&self, m: ModuleId) -> bool {
        let x = self.module(m);
        !x.finalized && (x.info.init.call_dtors || dso_handle(x).is_some())
    }

    /// The destructor calls of `dead` (newest first) that have not run yet: its
    /// `__wasm_call_dtors` and `__cxa_finalize(__dso_handle)`.
    fn destructor_ops(&mut self, dead: &[ModuleId]) {
        for &m in dead {
            if !self.has_destructors(m) {
                continue;
            }
            let info = self.module(m).info.clone();
            if info.init.call_dtors {
                self.body.push(Op::Call {
                    module: m,
                    func: InitCall::CallDtors,
                });
            }
            if let Some(dso) = dso_handle(self.module(m)) {
                let fin = self.lookup("__cxa_finalize", m).filter(|d| {
                    matches!(
                        self.module(d.module).info.exports[d.export as usize].kind,
                        ExportKind::Func { .. }
                    )
                });
                if let Some(fin) = fin {
                    self.body.push(Op::Finalize {
                        libc: fin.module,
                        module: m,
                        dso: Addr(dso),
                    });
                }
            }
        }
    }

    /// Unload `dead` (newest first); their destructors ran in a plan of their own
    /// ([`PlanKind::Destructors`]) or are not to run (a load whose constructors failed).
    fn unload_modules(&mut self, dead: &[ModuleId]) {
        let mut groups = self
            .groups
            .take()
            .unwrap_or_else(|| self.base.groups.clone());
        for &m in dead {
            let x = self.module(m).clone();
            let mut slots: Vec<Slot> = exported_funcs(&x.info)
                .filter_map(|f| self.base.canonical.get(&(m, f)).copied())
                .collect();
            slots.sort();
            slots.dedup();
            let region = x.table_base..x.table_base + x.table_size;
            for s in slots {
                self.slot_uses.push((s, None));
                if region.contains(&s.0) {
                    continue; // cleared with the region below
                }
                self.body.push(Op::SetSlot {
                    slot: s,
                    value: SlotValue::Null,
                });
                self.table.alloc.free(s.0, 1, true);
            }
            if x.table_size > 0 {
                self.body.push(Op::ClearSlots {
                    start: Slot(x.table_base),
                    len: x.table_size,
                });
                self.table.alloc.free(x.table_base, x.table_size, true);
            }
            if x.memory_size > 0 {
                self.mem.alloc.free(x.memory_base, x.memory_size, true);
            }
            for g in groups.states_mut() {
                if let Some(i) = g.tls.iter().position(|(o, _)| *o == m) {
                    let (_, a) = g.tls.remove(i);
                    self.mem.alloc.free(a.0, tls_len(&x.info), true);
                }
            }
            self.body.push(Op::Unload { module: m });
            self.unload.push(m);
        }
        self.groups = Some(groups);
        // Symbols still waiting no longer wait on behalf of unloaded modules.
        let any_waiting = match &self.pending {
            Some(p) => p
                .values()
                .any(|p| p.waiters.iter().any(|w| dead.contains(w))),
            None => self
                .base
                .pending
                .values()
                .any(|p| p.waiters.iter().any(|w| dead.contains(w))),
        };
        if any_waiting {
            for p in self.pending_mut().values_mut() {
                p.waiters.retain(|w| !dead.contains(w));
            }
        }
    }

    fn new_group_state(&mut self) -> Result<GroupState, Error> {
        let dlerror = self.alloc_mem(self.base.config.dl_text_size(), 16)?;
        let mut tls = Vec::new();
        let mods: Vec<ModuleId> = self
            .base
            .modules()
            .filter(|m| has_tls_block(&m.info))
            .map(|m| m.id)
            .collect();
        for m in mods {
            let info = self.module(m).info.clone();
            tls.push((m, self.alloc_mem(tls_len(&info), tls_align(&info))?));
        }
        Ok(GroupState {
            cursor: 0,
            dlerror,
            tls,
        })
    }

    fn grow_ops(&self) -> Vec<Op> {
        let mut ops = Vec::new();
        if !self.creates_memory && self.mem.bytes > self.mem_bytes0 {
            ops.push(Op::GrowMemory {
                from_pages: self.mem_bytes0 / PAGE,
                to_pages: self.mem.bytes / PAGE,
            });
        }
        if !self.create_table && self.table.size > self.table_size0 {
            ops.push(Op::GrowTable {
                from: self.table_size0,
                to: self.table.size,
            });
        }
        ops
    }

    /// Assemble the ops in their fixed order and package the delta.
    fn finish(mut self, kind: PlanKind, outcome: Outcome) -> Result<Plan, Error> {
        if self.diags.iter().any(|d| d.is_error()) {
            return Err(Error::Link {
                diagnostics: self.diags,
            });
        }
        if self.create_table && self.table_min > self.table.size {
            self.table
                .alloc
                .free(self.table.size, self.table_min - self.table.size, false);
            self.table.size = self.table_min;
        }
        self.index_symbols();
        let grow = self.grow_ops();
        // Made before the setup ops are taken: the counter's global is one of them.
        let trampolines = self.gen_id.map(|gen_id| {
            let mut imports = vec![Binding::TrampolineTable {
                slots: self.trampolines.len() as u32,
            }];
            // In a shared-memory program, trampolines run the safe-point check first, once
            // the memory exists before them (not for a non-PIE main's own, which are
            // instantiated before the main that defines the memory).
            let memory_later = self
                .adopt
                .iter()
                .any(|op| matches!(op, Op::AdoptMemory { .. }));
            let checked = self.mem.counter.filter(|_| !memory_later).map(|addr| {
                let ptr = ValType::pointer(self.mem.memory64);
                let counter = self.const_global(ptr, false, addr);
                imports.extend([
                    Binding::Memory,
                    Binding::CatchUp,
                    Binding::Seen,
                    Binding::Global(counter),
                ]);
                MemoryType {
                    min_pages: 0,
                    max_pages: self.mem.max_pages,
                    shared: true,
                    memory64: self.mem.memory64,
                }
            });
            let bytes = self.trampolines.encode(checked);
            Op::InstantiateGenerated {
                gen_id,
                bytes,
                imports,
            }
        });
        let setup = core::mem::take(&mut self.setup);
        let mut all = setup.ops;
        if self.create_table {
            for op in all.iter_mut().take(2) {
                if let Op::CreateTable { min, .. } = op {
                    *min = self.table.size;
                }
            }
        }
        // The sections in order, counted before they are appended so the ops land in one
        // allocation of the exact size; templates are placed by those counts.
        let before_inits = all.len()
            + trampolines.is_some() as usize
            + self.adopt.len()
            + grow.len()
            + self.zero.len()
            + self.body.len()
            + self.late.len();
        let inits = core::mem::take(&mut self.inits);
        let templates: Vec<(u32, LogOp)> = (setup.templates.into_iter())
            .chain((inits.templates.into_iter()).map(|(i, t)| (before_inits as u32 + i, t)))
            .collect();
        // Appended section by section onto the setup section's vector (each a memcpy): a
        // chain of iterators collected at once moved every op through a stack slot per
        // adapter, a seventh of a 100-module startup plan.
        all.reserve_exact(before_inits + inits.ops.len() - all.len());
        all.extend(trampolines);
        all.append(&mut self.adopt);
        all.extend(grow);
        all.append(&mut self.zero);
        all.append(&mut self.body);
        all.append(&mut self.late);
        all.extend(inits.ops);
        // Shared as the vector itself: `Arc<[Op]>` would copy every op once more.
        let ops = Arc::new(all);
        let memory64 = self.mem.memory64;
        let base = self.base;
        // A first load's slot uses come in order: the linker's map is built here, once, so a
        // stored startup plan's copies share it.
        let in_order = base.slot_uses.is_empty()
            && (self.slot_uses.windows(2)).all(|w| w[0].0.0 < w[1].0.0)
            && self.slot_uses.iter().all(|(_, u)| u.is_some());
        let (slot_uses, slot_map) = if in_order && !self.slot_uses.is_empty() {
            let map: SlotMap = (self.slot_uses.into_iter())
                .filter_map(|(slot, u)| Some((slot.0, u?)))
                .collect();
            (Vec::new(), Some(Arc::new(map)))
        } else {
            (self.slot_uses, None)
        };
        let delta = Delta {
            new_modules: self.new,
            updates: self.updates,
            unload: self.unload,
            mem: (self.mem != base.mem).then_some(self.mem),
            table: (self.table != base.table).then_some(self.table),
            symbols: Arc::new(self.new_symbols),
            names: Arc::new(self.new_names),
            canonical: Arc::new(self.canonical),
            slot_uses,
            slot_map,
            pending: self.pending,
            counters: self.counters,
            tags: self.tags,
            got_cache: Arc::new(self.got_cache),
            stack_pointer: self.stack_pointer,
            layout: self.layout,
            main: self.main,
            groups: self.groups,
            // Only what other groups must replay is logged: a plan of shared-memory ops alone
            // leaves the log (and every group's cursor) as it was.
            log: (ops.iter().any(|op| !op.is_memory_op()) || !templates.is_empty())
                .then(|| LogChunk::new(ops.clone(), templates)),
            outcome: Some(outcome),
        };
        Ok(Plan {
            kind,
            group: self.group,
            generation: base.generation,
            memory64,
            modules: self.modules_out,
            ops,
            diagnostics: self.diags,
            delta: Box::new(delta),
        })
    }
}
