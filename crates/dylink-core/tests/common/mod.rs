//! Shared test support: WAT fixtures and an engine-free simulated store that applies plans
//! and checks every op against what it refers to.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use dylink_core::*;

/// Assemble WAT (with `(@dylink.0 …)` annotations) to bytes.
pub fn wat(src: &str) -> Arc<[u8]> {
    wat::parse_str(src)
        .unwrap_or_else(|e| panic!("fixture does not assemble: {e}\n{src}"))
        .into()
}

/// A side module in clang's shape. `body` is extra module fields.
pub fn side(mem: u32, table: u32, needed: &[&str], body: &str) -> Arc<[u8]> {
    wat(&side_src(mem, table, needed, body))
}

/// [`side`]'s text.
pub fn side_src(mem: u32, table: u32, needed: &[&str], body: &str) -> String {
    let needed = if needed.is_empty() {
        String::new()
    } else {
        format!(
            "(needed {})",
            needed
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(" ")
        )
    };
    format!(
        r#"(module
  (@dylink.0 (mem-info (memory {mem} 2) (table {table} 0)) {needed})
  (import "env" "memory" (memory 1))
  (import "env" "__indirect_function_table" (table 0 funcref))
  (import "env" "__memory_base" (global $__memory_base i32))
  (import "env" "__table_base" (global $__table_base i32))
  (import "env" "__stack_pointer" (global $__stack_pointer (mut i32)))
  {body}
  (func (export "__wasm_apply_data_relocs"))
  (func (export "__wasm_call_ctors"))
)"#
    )
}

/// A PIE main in clang's shape.
pub fn pie_main(mem: u32, needed: &[&str], body: &str) -> Arc<[u8]> {
    wat(&pie_main_src(mem, needed, body))
}

/// [`pie_main`]'s text.
pub fn pie_main_src(mem: u32, needed: &[&str], body: &str) -> String {
    let needed = if needed.is_empty() {
        String::new()
    } else {
        format!(
            "(needed {})",
            needed
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(" ")
        )
    };
    format!(
        r#"(module
  (@dylink.0 (mem-info (memory {mem} 4) (table 0 0)) {needed})
  (import "env" "memory" (memory 1))
  (import "env" "__indirect_function_table" (table 0 funcref))
  (import "env" "__memory_base" (global $__memory_base i32))
  (import "env" "__table_base" (global $__table_base i32))
  (import "env" "__stack_pointer" (global $__stack_pointer (mut i32)))
  (import "GOT.mem" "__heap_base" (global $__heap_base (mut i32)))
  {body}
  (func (export "__wasm_apply_data_relocs"))
  (func (export "_start"))
)"#
    )
}

/// A module's text with its memory import shared: a threaded program's module.
pub fn shared(src: &str) -> Arc<[u8]> {
    let memory = r#"(import "env" "memory" (memory 1))"#;
    assert!(src.contains(memory), "no memory import to share:\n{src}");
    wat(&src.replace(memory, r#"(import "env" "memory" (memory 1 100 shared))"#))
}

/// What the simulated store holds for one group.
#[derive(Default, Debug)]
pub struct SimGroup {
    pub memory_pages: Option<u64>,
    pub table: Vec<Option<String>>,
    pub globals: HashMap<GlobalId, (bool, u64)>,
    pub tags: HashSet<TagId>,
    pub instances: HashMap<ModuleId, Arc<ModuleInfo>>,
    pub generated: HashMap<GenId, (ModuleInfo, Vec<Option<String>>)>,
    pub calls: Vec<String>,
    pub zeroed: Vec<(u64, u64)>,
}

/// Applies plans op by op and checks each against the state it acts on, the way an engine
/// would refuse a bad instantiation.
#[derive(Default, Debug)]
pub struct Sim {
    pub modules: HashMap<ModuleId, Arc<ModuleInfo>>,
    pub groups: HashMap<GroupId, SimGroup>,
    pub memory_pages: u64,
    /// Fail at this op index (to test abort).
    pub fail_at: Option<usize>,
}

impl Sim {
    pub fn apply(&mut self, plan: &Plan) -> Result<(), String> {
        for m in &plan.modules {
            let info = ModuleInfo::parse(&m.bytes).map_err(|e| e.to_string())?;
            self.modules.insert(m.id, Arc::new(info));
        }
        let group = plan.group();
        self.apply_ops(group, &plan.ops)
    }

    pub fn apply_ops(&mut self, group: GroupId, ops: &[Op]) -> Result<(), String> {
        for (i, op) in ops.iter().enumerate() {
            if self.fail_at == Some(i) {
                return Err(format!("injected failure at op {i}: {op}"));
            }
            self.op(group, op)
                .map_err(|e| format!("op {i} `{op}`: {e}"))?;
        }
        Ok(())
    }

    fn op(&mut self, group: GroupId, op: &Op) -> Result<(), String> {
        let memory_pages = self.memory_pages;
        let g = self.groups.entry(group).or_default();
        match op {
            Op::CreateMemory { min_pages, .. } => {
                self.memory_pages = *min_pages;
                g.memory_pages = Some(*min_pages);
            }
            Op::AttachMemory => g.memory_pages = Some(memory_pages),
            Op::AdoptMemory { module, .. } => {
                let info = g
                    .instances
                    .get(module)
                    .ok_or("adopt from missing instance")?;
                self.memory_pages = info.defined_memory.ok_or("no memory")?.min_pages;
                g.memory_pages = Some(self.memory_pages);
            }
            Op::CreateTable { min, .. } => g.table = vec![None; *min as usize],
            Op::AdoptTable { module, .. } => {
                let info = g
                    .instances
                    .get(module)
                    .ok_or("adopt from missing instance")?;
                g.table = vec![None; info.defined_table.ok_or("no table")?.min as usize];
            }
            Op::GrowMemory {
                from_pages,
                to_pages,
            } => {
                if *from_pages != self.memory_pages {
                    return Err(format!(
                        "memory is {} pages, not {from_pages}",
                        self.memory_pages
                    ));
                }
                self.memory_pages = *to_pages;
            }
            Op::GrowTable { from, to } => {
                if *from as usize != g.table.len() {
                    return Err(format!("table is {} slots, not {from}", g.table.len()));
                }
                g.table.resize(*to as usize, None);
            }
            Op::CreateGlobal {
                global,
                mutable,
                value,
                ..
            } => {
                if g.globals.insert(*global, (*mutable, *value)).is_some() {
                    return Err(format!("{global} created twice"));
                }
            }
            Op::SetGlobal { global, value } => {
                g.globals.get_mut(global).ok_or("unknown global")?.1 = *value;
            }
            Op::CreateTag { tag, .. } => {
                g.tags.insert(*tag);
            }
            Op::ZeroMemory { addr, len } => {
                if addr.0 + len > self.memory_pages * PAGE {
                    return Err("zeroing past the end of memory".into());
                }
                g.zeroed.push((addr.0, *len));
            }
            Op::InstantiateGenerated {
                gen_id,
                bytes,
                imports,
            } => {
                let info = ModuleInfo::parse(bytes).map_err(|e| e.to_string())?;
                if info.imports.len() != imports.len() {
                    return Err("generated import count".into());
                }
                let n = match imports.first() {
                    Some(Binding::TrampolineTable { slots }) => *slots as usize,
                    _ => return Err("a generated module imports its own table".into()),
                };
                for (imp, b) in info.imports.iter().zip(imports.iter()).skip(1) {
                    check_binding(g, imp, b).map_err(|e| {
                        format!(
                            "trampoline import {}.{}: {e}",
                            info.import_module(imp),
                            imp.name
                        )
                    })?;
                }
                g.generated.insert(*gen_id, (info, vec![None; n]));
            }
            Op::Instantiate { module, imports } => {
                let info = self
                    .modules
                    .get(module)
                    .ok_or("module was never compiled")?
                    .clone();
                if g.instances.contains_key(module) {
                    return Err("instantiated twice".into());
                }
                if info.imports.len() != imports.len() {
                    return Err(format!(
                        "{} imports, {} bindings",
                        info.imports.len(),
                        imports.len()
                    ));
                }
                for (imp, b) in info.imports.iter().zip(imports.iter()) {
                    check_binding(g, imp, b).map_err(|e| {
                        format!("import {}.{}: {e}", info.import_module(imp), imp.name)
                    })?;
                }
                g.instances.insert(*module, info);
            }
            Op::SetSlot { slot, value } => {
                let v = slot_value(g, value)?;
                *g.table
                    .get_mut(slot.0 as usize)
                    .ok_or_else(|| format!("{slot} past the table end"))? = v;
            }
            Op::SetTrampoline {
                gen_id,
                index,
                value,
            } => {
                let v = slot_value(g, value)?;
                let (_, t) = g
                    .generated
                    .get_mut(gen_id)
                    .ok_or("unknown generated module")?;
                *t.get_mut(*index as usize).ok_or("trampoline index")? = v;
            }
            Op::ClearSlots { start, len } => {
                for s in start.0..start.0 + len {
                    *g.table.get_mut(s as usize).ok_or("clear past end")? = None;
                }
            }
            Op::Call { module, func } => {
                let info = g
                    .instances
                    .get(module)
                    .ok_or("call into missing instance")?;
                info.export(func.export_name()).ok_or("no such export")?;
                g.calls.push(format!("{module}.{}", func.export_name()));
            }
            Op::InitTls { module, block } => {
                g.instances
                    .get(module)
                    .ok_or("init_tls of missing instance")?;
                g.calls.push(format!("{module}.__wasm_init_tls({block})"));
            }
            Op::Finalize { libc, dso, .. } => {
                g.instances
                    .get(libc)
                    .ok_or("finalize via missing instance")?;
                g.calls.push(format!("{libc}.__cxa_finalize({dso})"));
            }
            Op::StartAllocator { module } => {
                let info = g
                    .instances
                    .get(module)
                    .ok_or("start-allocator of missing instance")?;
                if !info.exports_allocator() {
                    return Err("start-allocator of a module without malloc and free".into());
                }
                g.calls.push(format!("{module}.free({module}.malloc(0))"));
            }
            Op::Unload { module } => {
                g.instances
                    .remove(module)
                    .ok_or("unload of missing instance")?;
            }
        }
        Ok(())
    }
}

fn slot_value(g: &SimGroup, v: &SlotValue) -> Result<Option<String>, String> {
    Ok(match v {
        SlotValue::Null => None,
        SlotValue::Export { module, name } => {
            let info = g
                .instances
                .get(module)
                .ok_or_else(|| format!("slot refers to {module}, not instantiated"))?;
            match info.export(name).map(|e| &e.kind) {
                Some(ExportKind::Func { .. }) => Some(format!("{module}.{name}")),
                _ => return Err(format!("{module} exports no function `{name}`")),
            }
        }
        SlotValue::Host(h) => Some(format!("host:{h}")),
        SlotValue::Trap { symbol, .. } => Some(format!("trap:{symbol}")),
    })
}

fn check_binding(g: &SimGroup, imp: &Import, b: &Binding) -> Result<(), String> {
    match (b, &imp.ty) {
        (Binding::Memory, ImportType::Memory(_)) => {
            g.memory_pages.map(|_| ()).ok_or("no memory yet".into())
        }
        (Binding::Table, ImportType::Table(_)) => Ok(()),
        (Binding::Global(id), ImportType::Global { mutable, .. }) => match g.globals.get(id) {
            Some((m, _)) if m == mutable => Ok(()),
            Some(_) => Err("mutability differs".into()),
            None => Err(format!("{id} not created")),
        },
        (Binding::Tag(t), ImportType::Tag(_)) => g
            .tags
            .contains(t)
            .then_some(())
            .ok_or("tag not created".into()),
        (
            Binding::Export {
                module,
                index,
                name,
            },
            _,
        ) => {
            let info = g
                .instances
                .get(module)
                .ok_or_else(|| format!("{module} not instantiated yet"))?;
            info.export(name)
                .ok_or_else(|| format!("{module} has no export {name}"))?;
            // Adapters may fetch the export by position: it must be the one named.
            match info.exports.get(*index as usize) {
                Some(e) if e.name == *name => Ok(()),
                _ => Err(format!("{module}'s export {index} is not `{name}`")),
            }
        }
        (Binding::Generated { gen_id, index }, ImportType::Func(_)) => {
            let (info, _) = g.generated.get(gen_id).ok_or("generated module missing")?;
            // The trampoline is the module's export at `index`, named `t{index}`.
            let name = dylink_core::trampoline::export_name(*index as usize);
            match info.exports.get(*index as usize) {
                Some(e) if *e.name == *name => Ok(()),
                _ => Err(format!(
                    "generated {gen_id} has no trampoline {name} at {index}"
                )),
            }
        }
        (
            Binding::Dl { .. }
            | Binding::ThreadSpawn
            | Binding::AfterWait
            | Binding::CatchUp
            | Binding::Trap { .. }
            | Binding::Host(_),
            ImportType::Func(_),
        ) => Ok(()),
        (
            Binding::Seen,
            ImportType::Global {
                ty: ValType::I32,
                mutable: true,
            },
        ) => Ok(()),
        (Binding::Host(_), _) => Ok(()),
        (Binding::TrampolineTable { .. }, ImportType::Table(_)) => Ok(()),
        (b, t) => Err(format!("binding {b} does not fit {t:?}")),
    }
}

/// The value of the `GOT.*` import `module.name` of `m` in group `g`, read through its binding.
pub fn got_value(
    plan_ops: &[Op],
    sim: &Sim,
    group: GroupId,
    m: ModuleId,
    module: &str,
    name: &str,
) -> Option<u64> {
    let info = sim.modules.get(&m)?;
    let idx = info
        .imports
        .iter()
        .position(|i| info.import_module(i) == module && &*i.name == name)?;
    let binding = plan_ops.iter().find_map(|op| match op {
        Op::Instantiate { module, imports } if *module == m => Some(imports[idx].clone()),
        _ => None,
    })?;
    match binding {
        Binding::Global(id) => sim.groups.get(&group)?.globals.get(&id).map(|(_, v)| *v),
        _ => None,
    }
}
