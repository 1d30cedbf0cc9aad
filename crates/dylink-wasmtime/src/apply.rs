//! Applying plan ops to a wasmtime store: one `match`, no decisions.

use std::sync::atomic::Ordering;

use dylink_core::{Binding, FuncType, InitCall, Op, SlotValue, ValType};
use wasmtime::{
    AsContextMut, Extern, Func, Global, GlobalType, Instance, MemoryType, Mutability, Ref, RefType,
    Table, TableType, Tag, TagType, Val,
};

use dylink_core::drive::ApplyCtx;

use crate::{Error, Mem, Program, dl, lock};

/// What to restore if a later op of the same plan fails.
#[derive(Default)]
pub(crate) struct Undo {
    instances: Vec<dylink_core::ModuleId>,
    generated: Vec<dylink_core::GenId>,
    /// The group's global count when the plan made its first global: every global from
    /// there on is the plan's (a startup makes thousands, so they are not listed).
    globals_from: Option<usize>,
    /// Globals the plan made below `globals_from`.
    globals: Vec<dylink_core::GlobalId>,
    /// The table's size before the plan: slots from there on were null (the plan grew them),
    /// so writing one records nothing.
    fresh_slots_from: Option<u64>,
    /// Older slots the plan wrote, with what they held.
    slots: Vec<(u64, Option<Func>)>,
}

fn engine_err(context: impl Into<String>) -> impl FnOnce(wasmtime::Error) -> Error {
    let context = context.into();
    move |source| Error::Engine { context, source }
}

/// [`engine_err`] with a context made only on failure (apply runs thousands of ops).
fn engine_err_with(context: impl FnOnce() -> String) -> impl FnOnce(wasmtime::Error) -> Error {
    move |source| Error::Engine {
        context: context(),
        source,
    }
}

/// An instantiation's error, saying what to do when the store is out of instances: a
/// wasmtime store keeps every instance until it is dropped, those of unloaded libraries
/// too, and refuses more than its limit (10,000 unless a limiter says otherwise).
fn instantiate_err(what: impl FnOnce() -> String) -> impl FnOnce(wasmtime::Error) -> Error {
    move |source| {
        let mut context = format!("instantiating {}", what());
        if source
            .root_cause()
            .to_string()
            .contains("instance count too high")
        {
            context.push_str(
                " (the store keeps every instance it made, unloaded libraries' too, until it \
                 is dropped; raise its limit with `Store::limiter` and \
                 `StoreLimitsBuilder::instances`)",
            );
        }
        Error::Engine { context, source }
    }
}

fn fail(context: impl Into<String>, message: impl std::fmt::Display) -> Error {
    Error::Engine {
        context: context.into(),
        source: wasmtime::format_err!("{message}"),
    }
}

pub(crate) fn val_type(t: ValType) -> wasmtime::ValType {
    match t {
        ValType::I32 => wasmtime::ValType::I32,
        ValType::I64 => wasmtime::ValType::I64,
        ValType::F32 => wasmtime::ValType::F32,
        ValType::F64 => wasmtime::ValType::F64,
        ValType::V128 => wasmtime::ValType::V128,
        ValType::FuncRef => wasmtime::ValType::FUNCREF,
        ValType::ExternRef => wasmtime::ValType::EXTERNREF,
        ValType::ExnRef => wasmtime::ValType::EXNREF,
        ValType::OtherRef => wasmtime::ValType::ANYREF,
    }
}

pub(crate) fn func_type(engine: &wasmtime::Engine, ty: &FuncType) -> wasmtime::FuncType {
    wasmtime::FuncType::new(
        engine,
        ty.params.iter().map(|t| val_type(*t)),
        ty.results.iter().map(|t| val_type(*t)),
    )
}

fn int_val(ty: ValType, v: u64) -> Val {
    match ty {
        ValType::I64 => Val::I64(v as i64),
        _ => Val::I32(v as u32 as i32),
    }
}

/// A host function that traps with a message naming `symbol`.
pub(crate) fn trap_func<T: 'static>(
    program: &Program<T>,
    store: impl AsContextMut<Data = T>,
    symbol: &str,
    ty: &FuncType,
    weak: bool,
) -> Func {
    let shared = program.shared.clone();
    let message = if weak {
        format!("dylink: called weak undefined function `{symbol}` (no loaded module defines it)")
    } else {
        format!(
            "dylink: called undefined function `{symbol}` (no loaded library defines it; load one with RTLD_GLOBAL that does)"
        )
    };
    let ty = func_type(&program.shared.engine, ty);
    Func::new(store, ty, move |_, _, _| {
        shared.host_calls.fetch_add(1, Ordering::Relaxed);
        Err(wasmtime::format_err!("{message}"))
    })
}

fn slot_func<T: Send + 'static>(
    program: &Program<T>,
    mut store: impl AsContextMut<Data = T>,
    value: &SlotValue,
) -> Result<Option<Func>, Error> {
    Ok(match value {
        SlotValue::Null => None,
        SlotValue::Export { module, name } => {
            let found = (lock(&program.group).instances.get(*module))
                .map(|l| (l.instance, l.exports.named(name)));
            // By the export's index when the compiled module has it, else by name.
            let f = found.and_then(|(i, export)| match export {
                Some(e) => i.get_module_export(&mut store, &e)?.into_func(),
                None => i.get_func(&mut store, name),
            });
            Some(f.ok_or_else(|| {
                fail(
                    "setting a table slot",
                    format_args!("{module} has no function export `{name}`"),
                )
            })?)
        }
        SlotValue::Host(h) => {
            let e = program
                .shared
                .host
                .get(&mut store, &h.module, &h.name)
                .map_err(engine_err_with(|| format!("host function {h}")))?;
            Some(e.into_func().ok_or_else(|| {
                fail(
                    "setting a table slot",
                    format_args!("host {h} is not a function"),
                )
            })?)
        }
        SlotValue::Trap { symbol, ty } => Some(trap_func(program, store, symbol, ty, false)),
    })
}

fn set_slot(
    table: Table,
    mut store: impl AsContextMut,
    slot: u64,
    f: Option<Func>,
    undo: &mut Undo,
) -> Result<(), Error> {
    let fresh = undo.fresh_slots_from.is_some_and(|from| slot >= from);
    let old = (!fresh)
        .then(|| table.get(&mut store, slot))
        .flatten()
        .and_then(|r| r.as_func().flatten().copied());
    table
        .set(&mut store, slot, Ref::Func(f))
        .map_err(engine_err_with(|| format!("setting table slot {slot}")))?;
    if !fresh {
        undo.slots.push((slot, old));
    }
    Ok(())
}

/// The extern for one import binding. `g` is the group, locked once for a whole import
/// list (making host functions and reading exports never re-enter guest code).
fn binding<T: Send + 'static>(
    program: &Program<T>,
    mut store: impl AsContextMut<Data = T>,
    g: &mut crate::Group,
    b: &Binding,
    memory64: bool,
) -> Result<Extern, Error> {
    let missing = |what: String| fail("instantiating", format_args!("{what} does not exist yet"));
    Ok(match b {
        Binding::Memory => g
            .memory
            .as_ref()
            .ok_or_else(|| missing("the memory".into()))?
            .to_extern(),
        Binding::Table => g.table.ok_or_else(|| missing("the table".into()))?.into(),
        Binding::Global(id) => g
            .global(*id)
            .ok_or_else(|| missing(format!("global {id}")))?
            .into(),
        Binding::Tag(id) => g
            .tag(*id)
            .ok_or_else(|| missing(format!("tag {id}")))?
            .into(),
        Binding::Export {
            module,
            index,
            name,
        } => {
            let loaded =
                (g.instances.get(*module)).ok_or_else(|| missing(format!("module {module}")))?;
            let inst = loaded.instance;
            // By position when the module's export table has it (no name lookup), else by
            // name.
            let by_index = (loaded.exports.at.get(*index as usize).copied().flatten())
                .and_then(|e| inst.get_module_export(&mut store, &e));
            match by_index {
                Some(e) => e,
                None => inst.get_export(&mut store, name).ok_or_else(|| {
                    fail(
                        "instantiating",
                        format_args!("{module} has no export `{name}`"),
                    )
                })?,
            }
        }
        Binding::Generated { gen_id, index } => {
            let inst = g
                .generated
                .get(*gen_id)
                .ok_or_else(|| missing(format!("generated module {gen_id}")))?
                .0;
            let name = dylink_core::trampoline::export_name(*index as usize);
            inst.get_export(&mut store, &name)
                .ok_or_else(|| missing(format!("trampoline {name}")))?
        }
        Binding::Dl { func, caller } => {
            dl::host_func(program, store, *func, *caller, memory64).into()
        }
        Binding::TrampolineTable { .. } => {
            return Err(fail(
                "instantiating",
                "a trampoline table is only for generated modules",
            ));
        }
        Binding::ThreadSpawn => crate::threads::spawn_func(program, store).into(),
        Binding::AfterWait => crate::threads::after_wait_func(program, store).into(),
        Binding::CatchUp => crate::threads::catch_up_func(program, store).into(),
        Binding::Seen => match g.seen_global {
            Some(seen) => seen.into(),
            None => {
                let ty = GlobalType::new(wasmtime::ValType::I32, Mutability::Var);
                let seen = Global::new(&mut store, ty, Val::I32(0))
                    .map_err(engine_err("creating the group's safe-point global"))?;
                g.seen_global = Some(seen);
                seen.into()
            }
        },
        Binding::Trap { symbol, ty } => trap_func(program, store, symbol, ty, true).into(),
        Binding::Host(h) => program
            .shared
            .host
            .get(&mut store, &h.module, &h.name)
            .map_err(engine_err_with(|| format!("host import {h}")))?,
    })
}

/// Apply `ops` in order to this program's group in `store`.
pub(crate) fn apply<T: Send + 'static>(
    program: &Program<T>,
    mut store: impl AsContextMut<Data = T>,
    ops: &[Op],
    ctx: &ApplyCtx<'_>,
    undo: &mut Undo,
) -> Result<(), Error> {
    let engine = program.shared.engine.clone();
    // The group's table, once read (a slot write locked the group twice for it).
    let mut group_table: Option<Table> = None;
    if undo.fresh_slots_from.is_none() {
        let table = lock(&program.group).table;
        undo.fresh_slots_from = Some(table.map_or(0, |t| t.size(&store)));
    }
    if let Some(end) = Op::globals_end(ops) {
        let mut g = lock(&program.group);
        let more = end.saturating_sub(g.globals.len());
        g.globals.reserve_exact(more);
    }
    for op in ops {
        tracing::trace!(target: "dylink::ops", "{op}");
        match op {
            Op::CreateMemory {
                min_pages,
                max_pages,
                shared,
                memory64,
            } => {
                let ty = MemoryType::builder()
                    .min(*min_pages)
                    .max(*max_pages)
                    .shared(*shared)
                    .memory64(*memory64)
                    .build()
                    .map_err(engine_err("describing the memory"))?;
                let mem = if *shared {
                    let m = wasmtime::SharedMemory::new(&engine, ty).map_err(|source| Error::Engine {
                        context: "creating the shared memory (enable it in the wasmtime Config: wasm_threads(true) and shared_memory(true))".into(),
                        source,
                    })?;
                    *lock(&program.shared.shared_memory) = Some(m.clone());
                    Mem::Shared(m)
                } else {
                    Mem::Plain(
                        wasmtime::Memory::new(&mut store, ty)
                            .map_err(engine_err("creating the memory"))?,
                    )
                };
                let _ = program.shared.memory_cell.set(mem.clone());
                lock(&program.group).memory = Some(mem);
            }
            Op::AdoptMemory { module, export } => {
                let inst = lock(&program.group).instance(*module)?;
                let mem = match inst.get_export(&mut store, export) {
                    Some(Extern::Memory(m)) => Mem::Plain(m),
                    Some(Extern::SharedMemory(m)) => Mem::Shared(m),
                    _ => {
                        return Err(fail(
                            "adopting the main module's memory",
                            format_args!("no memory export `{export}`"),
                        ));
                    }
                };
                let _ = program.shared.memory_cell.set(mem.clone());
                lock(&program.group).memory = Some(mem);
            }
            Op::AttachMemory => {
                let m = lock(&program.shared.shared_memory)
                    .clone()
                    .ok_or_else(|| fail("attaching memory", "the program has no shared memory"))?;
                lock(&program.group).memory = Some(Mem::Shared(m));
            }
            Op::CreateTable { min, table64 } => {
                let ty = if *table64 {
                    TableType::new64(RefType::FUNCREF, *min, None)
                } else {
                    TableType::new(RefType::FUNCREF, *min as u32, None)
                };
                let t = Table::new(&mut store, ty, Ref::Func(None))
                    .map_err(engine_err("creating the table"))?;
                lock(&program.group).table = Some(t);
                group_table = None;
            }
            Op::AdoptTable { module, export } => {
                let inst = lock(&program.group).instance(*module)?;
                let t = inst.get_table(&mut store, export).ok_or_else(|| {
                    fail(
                        "adopting the main module's table",
                        format_args!("no table export `{export}`"),
                    )
                })?;
                lock(&program.group).table = Some(t);
                group_table = None;
            }
            Op::GrowMemory {
                from_pages,
                to_pages,
            } => {
                let mem = lock(&program.group)
                    .memory
                    .clone()
                    .ok_or_else(|| fail("growing memory", "no memory"))?;
                let now = mem.pages(&store);
                if now != *from_pages {
                    return Err(fail(
                        "growing memory",
                        format_args!(
                            "it has {now} pages, the plan expected {from_pages}; plan again"
                        ),
                    ));
                }
                mem.grow(&mut store, to_pages - from_pages)
                    .map_err(engine_err_with(|| {
                        format!("growing memory to {to_pages} pages")
                    }))?;
            }
            Op::GrowTable { from, to } => {
                let table = lock(&program.group)
                    .table
                    .ok_or_else(|| fail("growing the table", "no table"))?;
                let now = table.size(&store);
                if now != *from {
                    return Err(fail(
                        "growing the table",
                        format_args!("it has {now} slots, the plan expected {from}; plan again"),
                    ));
                }
                table
                    .grow(&mut store, to - from, Ref::Func(None))
                    .map_err(engine_err_with(|| {
                        format!("growing the table to {to} slots")
                    }))?;
            }
            Op::CreateGlobal {
                global,
                ty,
                mutable,
                value,
            } => {
                let gt = GlobalType::new(
                    val_type(*ty),
                    if *mutable {
                        Mutability::Var
                    } else {
                        Mutability::Const
                    },
                );
                let g = Global::new(&mut store, gt, int_val(*ty, *value))
                    .map_err(engine_err_with(|| format!("creating global {global}")))?;
                let mut grp = lock(&program.group);
                let from = *undo.globals_from.get_or_insert(grp.globals.len());
                if grp.globals.len() <= global.index() {
                    grp.globals.resize(global.index() + 1, None);
                }
                grp.globals[global.index()] = Some(g);
                if global.index() < from {
                    undo.globals.push(*global);
                }
            }
            Op::SetGlobal { global, value } => {
                let g = lock(&program.group).global(*global).ok_or_else(|| {
                    fail("setting a global", format_args!("{global} does not exist"))
                })?;
                let ty = match g.ty(&store).content() {
                    wasmtime::ValType::I64 => ValType::I64,
                    _ => ValType::I32,
                };
                g.set(&mut store, int_val(ty, *value))
                    .map_err(engine_err_with(|| format!("setting {global}")))?;
            }
            Op::CreateTag { tag, ty } => {
                let tt = TagType::new(func_type(&engine, ty));
                let t = Tag::new(&mut store, &tt).map_err(engine_err("creating an exception tag (enable exceptions in the wasmtime Config: wasm_exceptions(true))"))?;
                let mut grp = lock(&program.group);
                if grp.tags.len() <= tag.index() {
                    grp.tags.resize(tag.index() + 1, None);
                }
                grp.tags[tag.index()] = Some(t);
            }
            Op::ZeroMemory { addr, len } => {
                let mem = lock(&program.group)
                    .memory
                    .clone()
                    .ok_or_else(|| fail("zeroing memory", "no memory"))?;
                mem.zero(&mut store, addr.0, *len)
                    .map_err(|m| fail("zeroing a reused region", m))?;
            }
            Op::InstantiateGenerated {
                gen_id,
                bytes,
                imports,
            } => {
                let module =
                    crate::compile(&engine, bytes, "a generated trampoline module")?.module;
                let mut externs: Vec<Extern> = Vec::with_capacity(imports.len());
                let mut own = None;
                let mut g = lock(&program.group);
                for b in imports {
                    if let Binding::TrampolineTable { slots } = b {
                        let ty = TableType::new(RefType::FUNCREF, *slots, None);
                        let t = Table::new(&mut store, ty, Ref::Func(None))
                            .map_err(engine_err("creating a trampoline table"))?;
                        own = Some(t);
                        externs.push(t.into());
                    } else {
                        externs.push(binding(program, &mut store, &mut g, b, ctx.memory64)?);
                    }
                }
                drop(g);
                let inst = Instance::new(&mut store, &module, &externs)
                    .map_err(instantiate_err(|| "trampolines".into()))?;
                lock(&program.group).generated.insert(*gen_id, (inst, own));
                undo.generated.push(*gen_id);
            }
            Op::Instantiate { module, imports } => {
                let compiled = lock(&program.shared.compiled)
                    .get(*module)
                    .cloned()
                    .ok_or_else(|| {
                        fail("instantiating", format_args!("{module} was never compiled"))
                    })?;
                let mut externs = Vec::with_capacity(imports.len());
                let mut g = lock(&program.group);
                for b in imports.iter() {
                    externs.push(binding(program, &mut store, &mut g, b, ctx.memory64)?);
                }
                drop(g);
                if tracing::enabled!(target: "dylink::bindings", tracing::Level::DEBUG) {
                    let path = ctx.path(*module);
                    for (imp, b) in compiled.module.imports().zip(imports.iter()) {
                        tracing::debug!(target: "dylink::bindings", "{path}: {}.{} -> {b}", imp.module(), imp.name());
                    }
                }
                let inst = Instance::new(&mut store, &compiled.module, &externs)
                    .map_err(instantiate_err(|| ctx.path(*module).to_string()))?;
                let loaded = crate::Loaded {
                    instance: inst,
                    exports: compiled.exports,
                };
                lock(&program.group).instances.insert(*module, loaded);
                undo.instances.push(*module);
            }
            Op::SetSlot { slot, value } => {
                let f = slot_func(program, &mut store, value)?;
                let table = match group_table {
                    Some(t) => t,
                    None => *group_table.insert(
                        lock(&program.group)
                            .table
                            .ok_or_else(|| fail("setting a slot", "no table"))?,
                    ),
                };
                set_slot(table, &mut store, slot.0, f, undo)?;
            }
            Op::SetTrampoline {
                gen_id,
                index,
                value,
            } => {
                let f = slot_func(program, &mut store, value)?;
                let table = lock(&program.group)
                    .generated
                    .get(*gen_id)
                    .and_then(|(_, t)| *t)
                    .ok_or_else(|| {
                        fail(
                            "patching a trampoline",
                            format_args!("{gen_id} has no trampoline table"),
                        )
                    })?;
                table
                    .set(&mut store, *index as u64, Ref::Func(f))
                    .map_err(engine_err("patching a trampoline"))?;
            }
            Op::ClearSlots { start, len } => {
                let table = lock(&program.group)
                    .table
                    .ok_or_else(|| fail("clearing slots", "no table"))?;
                table
                    .fill(&mut store, start.0, Ref::Func(None), *len)
                    .map_err(engine_err("clearing an unloaded module's slots"))?;
            }
            Op::Call { module, func } => {
                let inst = lock(&program.group).instance(*module)?;
                let f = inst
                    .get_typed_func::<(), ()>(&mut store, func.export_name())
                    .map_err(engine_err_with(|| {
                        format!("{module}: {}", func.export_name())
                    }))?;
                let what = match func {
                    InitCall::CallCtors | InitCall::Initialize => "running constructors of",
                    InitCall::CallDtors => "running destructors of",
                    _ => "applying relocations of",
                };
                f.call(&mut store, ())
                    .map_err(engine_err_with(|| format!("{what} {}", ctx.path(*module))))?;
            }
            Op::InitTls { module, block } => {
                let inst = lock(&program.group).instance(*module)?;
                let f = inst
                    .get_func(&mut store, "__wasm_init_tls")
                    .ok_or_else(|| {
                        fail(
                            "initialising TLS",
                            format_args!("{module} has no __wasm_init_tls"),
                        )
                    })?;
                let arg = match f.ty(&store).param(0) {
                    Some(wasmtime::ValType::I64) => Val::I64(block.0 as i64),
                    _ => Val::I32(block.0 as u32 as i32),
                };
                f.call(&mut store, &[arg], &mut [])
                    .map_err(engine_err_with(|| format!("initialising TLS of {module}")))?;
            }
            Op::Finalize { libc, module, dso } => {
                let inst = lock(&program.group).instance(*libc)?;
                let f = inst
                    .get_func(&mut store, "__cxa_finalize")
                    .ok_or_else(|| fail("running atexit handlers", "no __cxa_finalize"))?;
                let arg = match f.ty(&store).param(0) {
                    Some(wasmtime::ValType::I64) => Val::I64(dso.0 as i64),
                    _ => Val::I32(dso.0 as u32 as i32),
                };
                f.call(&mut store, &[arg], &mut [])
                    .map_err(engine_err_with(|| {
                        format!(
                            "running destructors of {} (__cxa_finalize)",
                            ctx.path(*module)
                        )
                    }))?;
            }
            Op::StartAllocator { module } => {
                let inst = lock(&program.group).instance(*module)?;
                let what = || format!("starting the allocator of {}", ctx.path(*module));
                let mut func = |name: &str| {
                    inst.get_func(&mut store, name).ok_or_else(|| {
                        fail(
                            "starting the allocator",
                            format_args!("{module} has no {name}"),
                        )
                    })
                };
                let (malloc, free) = (func("malloc")?, func("free")?);
                let zero = match malloc.ty(&store).param(0) {
                    Some(wasmtime::ValType::I64) => Val::I64(0),
                    _ => Val::I32(0),
                };
                let mut block = [zero];
                malloc
                    .call(&mut store, &[zero], &mut block)
                    .map_err(engine_err_with(what))?;
                free.call(&mut store, &block, &mut [])
                    .map_err(engine_err_with(what))?;
            }
            Op::Unload { module } => {
                lock(&program.group).instances.remove(*module);
            }
        }
    }
    Ok(())
}

/// Undo what a failed plan applied: new instances and trampolines are forgotten, table slots
/// get their old contents back. Memory and table growth stay (the core learns the sizes from
/// the next plan's facts and never hands out what it did not plan).
pub(crate) fn rollback<T: Send + 'static>(
    program: &Program<T>,
    mut store: impl AsContextMut<Data = T>,
    undo: Undo,
) {
    let table = lock(&program.group).table;
    if let Some(table) = table {
        for (slot, old) in undo.slots.into_iter().rev() {
            let _ = table.set(&mut store, slot, Ref::Func(old));
        }
        // Slots the plan grew the table by were null before it.
        let (from, size) = (undo.fresh_slots_from.unwrap_or(0), table.size(&store));
        if size > from {
            let _ = table.fill(&mut store, from, Ref::Func(None), size - from);
        }
    }
    let mut g = lock(&program.group);
    for m in undo.instances {
        g.instances.remove(m);
    }
    for gen_id in undo.generated {
        g.generated.remove(gen_id);
    }
    for id in undo.globals {
        if let Some(slot) = g.globals.get_mut(id.index()) {
            *slot = None;
        }
    }
    if let Some(from) = undo.globals_from {
        for slot in g.globals.iter_mut().skip(from) {
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dylink_core::{Addr, ModuleId, Name, Slot, drive::Phase};
    use wasmtime::{Engine, Linker, Store};

    /// A plan failing after it wrote slots, grew the table and made globals leaves the
    /// group's table and globals as they were: old slots get their functions back, the grown
    /// ones (not listed in the undo record) are null, and the new globals are gone.
    #[test]
    fn a_failed_plan_leaves_slots_and_globals_as_they_were() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../conformance/cases/basic_calls/out");
        let engine = Engine::default();
        let mut store = Store::new(&engine, ());
        let mut dirs = crate::DirSource::new();
        dirs.mount("/lib", &dir).unwrap();
        let main = std::fs::read(dir.join("main.wasm")).unwrap();
        let program = Program::load(
            &mut store,
            &Linker::new(&engine),
            crate::Options::dirs(dirs),
            "/lib/main.wasm",
            &main,
        )
        .unwrap();
        let table = program.table();
        let size = table.size(&store);
        let old = (1..size)
            .find(|&s| program.func_at(&mut store, s).is_some())
            .expect("the program has a function pointer");
        let raw = |store: &mut Store<()>, s: u64| {
            program
                .func_at(&mut *store, s)
                .map(|f| f.to_raw(&mut *store) as usize)
        };
        let old_raw = raw(&mut store, old);
        let globals = lock(&program.group).globals.len();
        let trap = || SlotValue::Trap {
            symbol: Name::from("never_called"),
            ty: Box::new(FuncType {
                params: Vec::new().into(),
                results: Vec::new().into(),
            }),
        };
        let ops = [
            Op::GrowTable {
                from: size,
                to: size + 2,
            },
            Op::CreateGlobal {
                global: dylink_core::GlobalId::new(globals + 5),
                ty: ValType::I32,
                mutable: false,
                value: 1,
            },
            Op::SetSlot {
                slot: Slot(size + 1),
                value: trap(),
            },
            Op::SetSlot {
                slot: Slot(old),
                value: trap(),
            },
            Op::InitTls {
                module: ModuleId::new(9999),
                block: Addr(0),
            },
        ];
        let ctx = ApplyCtx {
            core: None,
            new: &[],
            paths: &[],
            memory64: false,
            phase: Phase::Structural,
        };
        let mut undo = Undo::default();
        let err = apply(&program, &mut store, &ops, &ctx, &mut undo).unwrap_err();
        assert!(err.to_string().contains("m9999"), "{err}");
        assert_ne!(raw(&mut store, old), old_raw, "the plan did write the slot");
        rollback(&program, &mut store, undo);
        assert_eq!(
            raw(&mut store, old),
            old_raw,
            "an old slot got its function back"
        );
        assert_eq!(
            raw(&mut store, size + 1),
            None,
            "a grown slot is null again"
        );
        let g = lock(&program.group);
        assert!(g.globals.iter().skip(globals).all(Option::is_none));
    }
}
