//! Applying plan ops to a wasmer store: one `match`, no decisions.

use std::sync::atomic::Ordering;

use dylink_core::{Binding, FuncType, InitCall, ModuleId, Op, SlotValue, ValType};
use wasmer::{
    AsStoreMut, Extern, Function, FunctionType, Global, Instance, Memory, MemoryType, Pages,
    RuntimeError, Table, TableType, Tag, Type, Value,
};

use dylink_core::drive::ApplyCtx;

use crate::{Error, Mem, Program, dl, lock};

/// What to restore if a later op of the same plan fails.
#[derive(Default)]
pub(crate) struct Undo {
    instances: Vec<ModuleId>,
    generated: Vec<dylink_core::GenId>,
    /// The group's global count when the plan made its first global: every global from
    /// there on is the plan's (a startup makes thousands, so they are not listed).
    globals_from: Option<usize>,
    /// Globals the plan made below `globals_from`.
    globals: Vec<dylink_core::GlobalId>,
    /// The table's size before the plan: slots from there on were null (the plan grew them),
    /// so writing one records nothing.
    fresh_slots_from: Option<u32>,
    /// Older slots the plan wrote, with what they held.
    slots: Vec<(u32, Option<Function>)>,
}

fn fail(context: impl Into<String>, message: impl std::fmt::Display) -> Error {
    Error::Engine {
        context: context.into(),
        message: message.to_string(),
    }
}

/// The message of a trap, without wasmer's backtrace.
fn trap(context: impl Into<String>, e: RuntimeError) -> Error {
    fail(context, e.message())
}

pub(crate) fn val_type(t: ValType) -> Type {
    match t {
        ValType::I32 => Type::I32,
        ValType::I64 => Type::I64,
        ValType::F32 => Type::F32,
        ValType::F64 => Type::F64,
        ValType::V128 => Type::V128,
        ValType::FuncRef => Type::FuncRef,
        ValType::ExternRef | ValType::OtherRef => Type::ExternRef,
        ValType::ExnRef => Type::ExceptionRef,
    }
}

pub(crate) fn func_type(ty: &FuncType) -> FunctionType {
    FunctionType::new(
        ty.params.iter().map(|t| val_type(*t)).collect::<Vec<_>>(),
        ty.results.iter().map(|t| val_type(*t)).collect::<Vec<_>>(),
    )
}

fn int_val(ty: ValType, v: u64) -> Value {
    match ty {
        ValType::I64 => Value::I64(v as i64),
        _ => Value::I32(v as u32 as i32),
    }
}

fn slot(s: u64) -> Result<u32, Error> {
    u32::try_from(s).map_err(|_| {
        fail(
            "setting a table slot",
            format_args!("slot {s} is beyond wasmer's 32-bit tables"),
        )
    })
}

fn trap_message(symbol: &str, weak: bool) -> String {
    if weak {
        format!("dylink: called weak undefined function `{symbol}` (no loaded module defines it)")
    } else {
        format!(
            "dylink: called undefined function `{symbol}` (no loaded library defines it; load one with RTLD_GLOBAL that does)"
        )
    }
}

/// A host function that traps with a message naming `symbol` (as an import).
pub(crate) fn trap_func(
    program: &Program,
    store: &mut impl AsStoreMut,
    symbol: &str,
    ty: &FuncType,
    weak: bool,
) -> Function {
    let shared = program.shared.clone();
    let message = trap_message(symbol, weak);
    Function::new(store, func_type(ty), move |_| {
        shared.host_calls.fetch_add(1, Ordering::Relaxed);
        Err(RuntimeError::new(message.clone()))
    })
}

struct TrapEnv {
    shared: std::sync::Arc<crate::Shared>,
    message: String,
}

fn raise(env: wasmer::FunctionEnvMut<'_, TrapEnv>) -> Result<(), RuntimeError> {
    env.data().shared.host_calls.fetch_add(1, Ordering::Relaxed);
    Err(RuntimeError::new(env.data().message.clone()))
}

/// A wasm function of type `ty` that traps naming `symbol`, for table slots: wasmer keeps
/// host functions of arbitrary type out of tables, so a generated stub calls a typed one.
fn trap_stub(
    program: &Program,
    store: &mut impl AsStoreMut,
    symbol: &str,
    ty: &FuncType,
) -> Result<Function, Error> {
    let bytes: std::sync::Arc<[u8]> = dylink_core::trampoline::encode_trap_stub(ty).into();
    let module = crate::compile(&program.shared.engine, &bytes, "a trap stub", None)?;
    let env = wasmer::FunctionEnv::new(
        store,
        TrapEnv {
            shared: program.shared.clone(),
            message: trap_message(symbol, false),
        },
    );
    let raise = Function::new_typed_with_env(store, &env, raise);
    let inst = Instance::new_by_index(store, &module, &[Extern::Function(raise)])
        .map_err(|e| fail("instantiating a trap stub", e))?;
    Ok(inst
        .exports
        .get_function("stub")
        .map_err(|e| fail("instantiating a trap stub", e))?
        .clone())
}

/// The host's `module.name` for this group: its own imports when it has them (a thread's
/// store), else the program's.
fn host_export(program: &Program, module: &str, name: &str) -> Option<Extern> {
    let own = lock(&program.group)
        .host
        .as_ref()
        .map(|h| h.get_export(module, name));
    own.unwrap_or_else(|| program.shared.host.get_export(module, name))
}

fn slot_func(
    program: &Program,
    store: &mut impl AsStoreMut,
    value: &SlotValue,
) -> Result<Option<Function>, Error> {
    Ok(match value {
        SlotValue::Null => None,
        SlotValue::Export { module, name } => {
            // Looked up in place: cloning a wasmer `Instance` copies its whole export map.
            let f = lock(&program.group)
                .instances
                .get(*module)
                .and_then(|i| i.exports.get_function(name).ok().cloned());
            Some(f.ok_or_else(|| {
                fail(
                    "setting a table slot",
                    format_args!("{module} has no function export `{name}`"),
                )
            })?)
        }
        SlotValue::Host(h) => match host_export(program, &h.module, &h.name) {
            Some(Extern::Function(f)) => Some(f),
            _ => {
                return Err(fail(
                    "setting a table slot",
                    format_args!("the host defines no function {h}"),
                ));
            }
        },
        SlotValue::Trap { symbol, ty } => Some(trap_stub(program, store, symbol, ty)?),
    })
}

fn set_slot(
    table: &Table,
    store: &mut impl AsStoreMut,
    at: u32,
    f: Option<Function>,
    undo: &mut Undo,
) -> Result<(), Error> {
    let fresh = undo.fresh_slots_from.is_some_and(|from| at >= from);
    let old = match (!fresh).then(|| table.get(store, at)).flatten() {
        Some(Value::FuncRef(f)) => f,
        _ => None,
    };
    table
        .set(store, at, Value::FuncRef(f))
        .map_err(|e| trap(format!("setting table slot {at}"), e))?;
    if !fresh {
        undo.slots.push((at, old));
    }
    Ok(())
}

fn binding(
    program: &Program,
    store: &mut impl AsStoreMut,
    b: &Binding,
    memory64: bool,
) -> Result<Extern, Error> {
    let missing = |what: String| fail("instantiating", format_args!("{what} does not exist yet"));
    let g = lock(&program.group);
    Ok(match b {
        Binding::Memory => Extern::Memory(
            g.memory
                .as_ref()
                .ok_or_else(|| missing("the memory".into()))?
                .0
                .clone(),
        ),
        Binding::Table => {
            Extern::Table(g.table.clone().ok_or_else(|| missing("the table".into()))?)
        }
        Binding::Global(id) => Extern::Global(
            g.global(*id)
                .ok_or_else(|| missing(format!("global {id}")))?,
        ),
        Binding::Tag(id) => Extern::Tag(g.tag(*id).ok_or_else(|| missing(format!("tag {id}")))?),
        Binding::Export { module, name, .. } => {
            let inst = g
                .instances
                .get(*module)
                .ok_or_else(|| missing(format!("module {module}")))?;
            inst.exports.get_extern(name).cloned().ok_or_else(|| {
                fail(
                    "instantiating",
                    format_args!("{module} has no export `{name}`"),
                )
            })?
        }
        Binding::Generated { gen_id, index } => {
            let inst = &g
                .generated
                .get(*gen_id)
                .ok_or_else(|| missing(format!("generated module {gen_id}")))?
                .0;
            let name = dylink_core::trampoline::export_name(*index as usize);
            inst.exports
                .get_extern(&name)
                .cloned()
                .ok_or_else(|| missing(format!("trampoline {name}")))?
        }
        Binding::Dl { func, caller } => {
            drop(g);
            Extern::Function(dl::host_func(program, store, *func, *caller, memory64))
        }
        Binding::ThreadSpawn => {
            drop(g);
            Extern::Function(crate::threads::spawn_func(program, store))
        }
        Binding::AfterWait => {
            drop(g);
            Extern::Function(crate::threads::after_wait_func(program, store))
        }
        Binding::CatchUp => {
            drop(g);
            Extern::Function(crate::threads::catch_up_func(program, store))
        }
        Binding::Seen => match &g.seen_global {
            Some(seen) => Extern::Global(seen.clone()),
            None => {
                drop(g);
                let seen = Global::new_mut(store, Value::I32(0));
                lock(&program.group).seen_global = Some(seen.clone());
                Extern::Global(seen)
            }
        },
        Binding::Trap { symbol, ty } => {
            drop(g);
            Extern::Function(trap_func(program, store, symbol, ty, true))
        }
        Binding::TrampolineTable { .. } => {
            return Err(fail(
                "instantiating",
                "a trampoline table is only for generated modules",
            ));
        }
        Binding::Host(h) => {
            drop(g);
            host_export(program, &h.module, &h.name).ok_or_else(|| {
                fail(
                    "instantiating",
                    format_args!("the host no longer defines {h}"),
                )
            })?
        }
    })
}

fn call_with_ptr(
    store: &mut impl AsStoreMut,
    f: &Function,
    v: u64,
    context: String,
) -> Result<(), Error> {
    let arg = match f.ty(store).params().first() {
        Some(Type::I64) => Value::I64(v as i64),
        _ => Value::I32(v as u32 as i32),
    };
    f.call(store, &[arg])
        .map(|_| ())
        .map_err(|e| trap(context, e))
}

/// Apply `ops` in order to this program's group in `store`.
pub(crate) fn apply(
    program: &Program,
    store: &mut impl AsStoreMut,
    ops: &[Op],
    ctx: &ApplyCtx<'_>,
    undo: &mut Undo,
) -> Result<(), Error> {
    if undo.fresh_slots_from.is_none() {
        let table = lock(&program.group).table.clone();
        undo.fresh_slots_from = Some(table.map_or(0, |t| t.size(store)));
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
                if *memory64 {
                    return Err(fail(
                        "creating the memory",
                        "wasmer 7.4 does not support memory64 (wasm64) programs",
                    ));
                }
                let pages = |p: u64| {
                    u32::try_from(p)
                        .map(Pages)
                        .map_err(|_| fail("creating the memory", "too many pages"))
                };
                let max = max_pages.map(pages).transpose()?;
                let ty = MemoryType::new(pages(*min_pages)?, max, *shared);
                let m = Memory::new(store, ty).map_err(|e| fail("creating the memory", e))?;
                if *shared {
                    // Kept so that other instance groups (threads) can attach it to their stores.
                    *lock(&program.shared.shared_memory) = m.as_shared(store);
                }
                let _ = program.shared.memory_cell.set(Mem(m.clone()));
                lock(&program.group).memory = Some(Mem(m));
            }
            Op::AdoptMemory { module, export } => {
                let m = lock(&program.group)
                    .instance(*module)?
                    .exports
                    .get_memory(export)
                    .map_err(|_| {
                        fail(
                            "adopting the main module's memory",
                            format_args!("no memory export `{export}`"),
                        )
                    })?
                    .clone();
                let _ = program.shared.memory_cell.set(Mem(m.clone()));
                lock(&program.group).memory = Some(Mem(m));
            }
            Op::AttachMemory => {
                let shared = lock(&program.shared.shared_memory)
                    .clone()
                    .ok_or_else(|| fail("attaching memory", "the program has no shared memory"))?;
                lock(&program.group).memory = Some(Mem(shared.attach(store)));
            }
            Op::CreateTable { min, table64 } => {
                if *table64 {
                    return Err(fail(
                        "creating the table",
                        "wasmer 7.4 does not support 64-bit tables",
                    ));
                }
                let t = Table::new(
                    store,
                    TableType::new(Type::FuncRef, slot(*min)?, None),
                    Value::FuncRef(None),
                )
                .map_err(|e| trap("creating the table", e))?;
                lock(&program.group).table = Some(t);
            }
            Op::AdoptTable { module, export } => {
                let t = lock(&program.group)
                    .instance(*module)?
                    .exports
                    .get_table(export)
                    .map_err(|_| {
                        fail(
                            "adopting the main module's table",
                            format_args!("no table export `{export}`"),
                        )
                    })?
                    .clone();
                lock(&program.group).table = Some(t);
            }
            Op::GrowMemory {
                from_pages,
                to_pages,
            } => {
                let mem = lock(&program.group)
                    .memory
                    .clone()
                    .ok_or_else(|| fail("growing memory", "no memory"))?;
                let now = mem.pages(store);
                if now != *from_pages {
                    return Err(fail(
                        "growing memory",
                        format_args!(
                            "it has {now} pages, the plan expected {from_pages}; plan again"
                        ),
                    ));
                }
                mem.grow(store, to_pages - from_pages)
                    .map_err(|e| fail(format!("growing memory to {to_pages} pages"), e))?;
            }
            Op::GrowTable { from, to } => {
                let table = lock(&program.group)
                    .table
                    .clone()
                    .ok_or_else(|| fail("growing the table", "no table"))?;
                let now = table.size(store) as u64;
                if now != *from {
                    return Err(fail(
                        "growing the table",
                        format_args!("it has {now} slots, the plan expected {from}; plan again"),
                    ));
                }
                table
                    .grow(store, slot(to - from)?, Value::FuncRef(None))
                    .map_err(|e| trap(format!("growing the table to {to} slots"), e))?;
            }
            Op::CreateGlobal {
                global,
                ty,
                mutable,
                value,
            } => {
                let v = int_val(*ty, *value);
                let g = if *mutable {
                    Global::new_mut(store, v)
                } else {
                    Global::new(store, v)
                };
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
                let v = match g.get(store) {
                    Value::I64(_) => Value::I64(*value as i64),
                    _ => Value::I32(*value as u32 as i32),
                };
                g.set(store, v)
                    .map_err(|e| trap(format!("setting {global}"), e))?;
            }
            Op::CreateTag { tag, ty } => {
                let t = Tag::new(
                    store,
                    ty.params.iter().map(|t| val_type(*t)).collect::<Vec<_>>(),
                );
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
                mem.zero(store, addr.0, *len)
                    .map_err(|m| fail("zeroing a reused region", m))?;
            }
            Op::InstantiateGenerated {
                gen_id,
                bytes,
                imports,
            } => {
                let module = crate::compile(
                    &program.shared.engine,
                    bytes,
                    "a generated trampoline module",
                    None,
                )?;
                let mut externs = Vec::with_capacity(imports.len());
                let mut own = None;
                for b in imports {
                    if let Binding::TrampolineTable { slots } = b {
                        let t = Table::new(
                            store,
                            TableType::new(Type::FuncRef, *slots, None),
                            Value::FuncRef(None),
                        )
                        .map_err(|e| trap("creating a trampoline table", e))?;
                        own = Some(t.clone());
                        externs.push(Extern::Table(t));
                    } else {
                        externs.push(binding(program, store, b, ctx.memory64)?);
                    }
                }
                let inst = Instance::new_by_index(store, &module, &externs)
                    .map_err(|e| fail("instantiating trampolines", e))?;
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
                for b in imports.iter() {
                    externs.push(binding(program, store, b, ctx.memory64)?);
                }
                if tracing::enabled!(target: "dylink::bindings", tracing::Level::DEBUG) {
                    let path = ctx.path(*module);
                    for (imp, b) in compiled.imports().zip(imports.iter()) {
                        tracing::debug!(target: "dylink::bindings", "{path}: {}.{} -> {b}", imp.module(), imp.name());
                    }
                }
                let inst = Instance::new_by_index(store, &compiled, &externs)
                    .map_err(|e| fail(format!("instantiating {}", ctx.path(*module)), e))?;
                lock(&program.group).instances.insert(*module, inst);
                undo.instances.push(*module);
            }
            Op::SetSlot { slot: s, value } => {
                let f = slot_func(program, store, value)?;
                let table = lock(&program.group)
                    .table
                    .clone()
                    .ok_or_else(|| fail("setting a slot", "no table"))?;
                set_slot(&table, store, slot(s.0)?, f, undo)?;
            }
            Op::SetTrampoline {
                gen_id,
                index,
                value,
            } => {
                let f = slot_func(program, store, value)?;
                let table = lock(&program.group)
                    .generated
                    .get(*gen_id)
                    .and_then(|(_, t)| t.clone())
                    .ok_or_else(|| {
                        fail(
                            "patching a trampoline",
                            format_args!("{gen_id} has no trampoline table"),
                        )
                    })?;
                table
                    .set(store, *index, Value::FuncRef(f))
                    .map_err(|e| trap("patching a trampoline", e))?;
            }
            Op::ClearSlots { start, len } => {
                let table = lock(&program.group)
                    .table
                    .clone()
                    .ok_or_else(|| fail("clearing slots", "no table"))?;
                for s in start.0..start.0 + len {
                    table
                        .set(store, slot(s)?, Value::FuncRef(None))
                        .map_err(|e| trap("clearing an unloaded module's slots", e))?;
                }
            }
            Op::Call { module, func } => {
                let f = lock(&program.group)
                    .instance(*module)?
                    .exports
                    .get_function(func.export_name())
                    .map_err(|_| {
                        fail(
                            "calling an init function",
                            format_args!("{module} has no {}", func.export_name()),
                        )
                    })?
                    .clone();
                let what = match func {
                    InitCall::CallCtors | InitCall::Initialize => "running constructors of",
                    InitCall::CallDtors => "running destructors of",
                    _ => "applying relocations of",
                };
                f.call(store, &[])
                    .map_err(|e| trap(format!("{what} {}", ctx.path(*module)), e))?;
            }
            Op::StartAllocator { module } => {
                let exports = lock(&program.group).instance(*module)?.exports.clone();
                let func = |name: &str| {
                    exports.get_function(name).cloned().map_err(|_| {
                        fail(
                            "starting the allocator",
                            format_args!("{module} has no {name}"),
                        )
                    })
                };
                let (malloc, free) = (func("malloc")?, func("free")?);
                let what = || format!("starting the allocator of {}", ctx.path(*module));
                let zero = match malloc.ty(store).params().first() {
                    Some(Type::I64) => Value::I64(0),
                    _ => Value::I32(0),
                };
                let block = malloc.call(store, &[zero]).map_err(|e| trap(what(), e))?;
                free.call(store, &block).map_err(|e| trap(what(), e))?;
            }
            Op::InitTls { module, block } => {
                let f = lock(&program.group)
                    .instance(*module)?
                    .exports
                    .get_function("__wasm_init_tls")
                    .map_err(|_| {
                        fail(
                            "initialising TLS",
                            format_args!("{module} has no __wasm_init_tls"),
                        )
                    })?
                    .clone();
                call_with_ptr(
                    store,
                    &f,
                    block.0,
                    format!("initialising TLS of {}", ctx.path(*module)),
                )?;
            }
            Op::Finalize { libc, module, dso } => {
                let f = lock(&program.group)
                    .instance(*libc)?
                    .exports
                    .get_function("__cxa_finalize")
                    .map_err(|_| fail("running atexit handlers", "no __cxa_finalize"))?
                    .clone();
                call_with_ptr(
                    store,
                    &f,
                    dso.0,
                    format!(
                        "running destructors of {} (__cxa_finalize)",
                        ctx.path(*module)
                    ),
                )?;
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
pub(crate) fn rollback(program: &Program, store: &mut impl AsStoreMut, undo: Undo) {
    let table = lock(&program.group).table.clone();
    if let Some(table) = table {
        for (s, old) in undo.slots.into_iter().rev() {
            let _ = table.set(store, s, Value::FuncRef(old));
        }
        // Slots the plan grew the table by were null before it.
        for s in undo.fresh_slots_from.unwrap_or(0)..table.size(store) {
            let _ = table.set(store, s, Value::FuncRef(None));
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
    use dylink_core::{Addr, FuncType, Name, Slot, drive::Phase};
    use wasmer::{Imports, Store};

    /// A plan failing after it wrote slots, grew the table and made globals leaves the
    /// group's table and globals as they were: old slots get their functions back, the grown
    /// ones (not listed in the undo record) are null, and the new globals are gone.
    #[test]
    fn a_failed_plan_leaves_slots_and_globals_as_they_were() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../conformance/cases/basic_calls/out");
        let mut store = Store::default();
        let mut dirs = crate::DirSource::new();
        dirs.mount("/lib", &dir).unwrap();
        let main = std::fs::read(dir.join("main.wasm")).unwrap();
        let program = Program::load(
            &mut store,
            &Imports::new(),
            crate::Options::dirs(dirs),
            "/lib/main.wasm",
            &main,
        )
        .unwrap();
        let size = program.table().size(&store) as u64;
        let old = (1..size)
            .find(|&s| program.func_at(&mut store, s).is_some())
            .expect("the program has a function pointer");
        // A slot's function by its engine-level reference (wasmer makes a new handle for
        // every read of a table, so handles of the same function differ).
        let raw = |store: &mut Store, s: u64| -> usize {
            let v = Value::FuncRef(program.func_at(&mut *store, s));
            let raw = v.as_raw(&*store);
            // SAFETY: the raw value of a `FuncRef` is its `funcref` field, a plain usize.
            #[allow(unsafe_code)]
            unsafe {
                raw.funcref
            }
        };
        let old_func = raw(&mut store, old);
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
                ty: dylink_core::ValType::I32,
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
        assert_ne!(raw(&mut store, old), old_func, "the plan wrote the slot");
        rollback(&program, &mut store, undo);
        assert_eq!(
            raw(&mut store, old),
            old_func,
            "an old slot got its function back"
        );
        assert_eq!(raw(&mut store, size + 1), 0, "a grown slot is null again");
        let g = lock(&program.group);
        assert!(g.globals.iter().skip(globals).all(Option::is_none));
    }
}
