//! Direct lazy calls (`dylink_core::direct`): a module's calls to a lazily bound import become
//! one `call_indirect` through the function's slot.

mod common;

use common::*;
use dylink_core::*;
use wasmparser::{Parser, Payload};

fn source(files: &[(&str, std::sync::Arc<[u8]>)]) -> MemorySource {
    let mut s = MemorySource::new();
    for (p, b) in files {
        s.insert(p, b.clone());
    }
    s
}

/// Every operator of every function body, after checking the module validates.
fn operators(bytes: &[u8]) -> Vec<String> {
    wasmparser::Validator::new()
        .validate_all(bytes)
        .unwrap_or_else(|e| panic!("rewritten module does not validate: {e}"));
    let mut out = Vec::new();
    for p in Parser::new(0).parse_all(bytes) {
        if let Payload::CodeSectionEntry(body) = p.unwrap() {
            let mut ops = body.get_operators_reader().unwrap();
            while !ops.eof() {
                out.push(format!("{:?}", ops.read().unwrap()));
            }
        }
    }
    out
}

/// A library that calls `main_cb`, defined by the main module, which is instantiated after
/// it (the main imports `side_fn` from the library): a call and a tail call. With
/// `threaded`, over a shared memory.
fn cycle_in(threaded: bool) -> (std::sync::Arc<[u8]>, MemorySource, std::sync::Arc<[u8]>) {
    let assemble = |src: String| if threaded { shared(&src) } else { wat(&src) };
    let lib = assemble(side_src(
        16,
        0,
        &[],
        r#"(import "env" "main_cb" (func $cb (result i32)))
           (func (export "side_fn") (result i32) call $cb i32.const 1 i32.add)
           (func (export "side_tail") (result i32) return_call $cb)"#,
    ));
    let main = assemble(pie_main_src(
        16,
        &["libside.so"],
        r#"(import "env" "side_fn" (func (result i32)))
           (func (export "main_cb") (result i32) i32.const 41)"#,
    ));
    (main, source(&[("/lib/libside.so", lib.clone())]), lib)
}

fn cycle() -> (std::sync::Arc<[u8]>, MemorySource, std::sync::Arc<[u8]>) {
    cycle_in(false)
}

fn lib_bytes(plan: &Plan) -> std::sync::Arc<[u8]> {
    plan.modules
        .iter()
        .find(|m| m.path == "/lib/libside.so")
        .unwrap()
        .bytes
        .clone()
}

#[test]
fn calls_to_a_definer_instantiated_later_go_through_its_canonical_slot() {
    let (main, src, original) = cycle();
    let l = Linker::new(Config::default());
    let plan = l
        .plan_startup("/app/main.wasm", main, &src, &NoHost)
        .unwrap();
    let mut sim = Sim::default();
    sim.apply(&plan).unwrap_or_else(|e| panic!("{e}\n{plan}"));
    // The canonical slot of `main_cb`, written once the main module is instantiated.
    let slot = plan
        .ops
        .iter()
        .find_map(|op| match op {
            Op::SetSlot {
                slot,
                value: SlotValue::Export { name, .. },
            } if &**name == "main_cb" => Some(slot.0),
            _ => None,
        })
        .expect("main_cb gets a canonical slot");
    let bytes = lib_bytes(&plan);
    assert_ne!(&*bytes, &*original, "the library is rewritten");
    let ops = operators(&bytes);
    // Import 0 is `main_cb` (the only function import): no direct call to it is left.
    assert!(
        !ops.iter().any(|o| o == "Call { function_index: 0 }"),
        "{ops:?}"
    );
    let constant = format!("I32Const {{ value: {slot} }}");
    let call = ops
        .iter()
        .position(|o| o.starts_with("CallIndirect"))
        .expect("a call_indirect");
    assert_eq!(ops[call - 1], constant);
    let tail = ops
        .iter()
        .position(|o| o.starts_with("ReturnCallIndirect"))
        .expect("a return_call_indirect");
    assert_eq!(ops[tail - 1], constant);
    // The import is still bound (to its trampoline), so `ref.func` and exports of it work.
    let info = ModuleInfo::parse(&bytes).unwrap();
    assert_eq!(
        &*info
            .imports
            .iter()
            .find(|i| i.role == ImportRole::Func)
            .unwrap()
            .name,
        "main_cb"
    );
}

#[test]
fn turned_off_the_library_is_left_as_it_was() {
    let (main, src, original) = cycle();
    let l = Linker::new(Config {
        direct_lazy_calls: false,
        ..Config::default()
    });
    let plan = l
        .plan_startup("/app/main.wasm", main, &src, &NoHost)
        .unwrap();
    assert_eq!(&*lib_bytes(&plan), &*original);
}

#[test]
fn calls_to_a_symbol_nothing_defines_yet_wait_in_its_slot_until_a_dlopen_fills_it() {
    let lib = side(
        16,
        0,
        &[],
        r#"(import "env" "later_fn" (func $later (param i32) (result i32)))
           (func (export "side_fn") (result i32) i32.const 2 call $later)"#,
    );
    let main = pie_main(16, &["libside.so"], "");
    let def = side(
        16,
        0,
        &[],
        r#"(func (export "later_fn") (param i32) (result i32) local.get 0)"#,
    );
    let src = source(&[("/lib/libside.so", lib), ("/lib/libdef.so", def)]);
    let mut l = Linker::new(Config::default());
    let mut sim = Sim::default();
    let plan = l
        .plan_startup("/app/main.wasm", main, &src, &NoHost)
        .unwrap();
    sim.apply(&plan).unwrap_or_else(|e| panic!("{e}\n{plan}"));
    // The slot it waits in traps naming the symbol.
    let waiting = plan
        .ops
        .iter()
        .find_map(|op| match op {
            Op::SetSlot {
                slot,
                value: SlotValue::Trap { symbol, .. },
            } if &**symbol == "later_fn" => Some(*slot),
            _ => None,
        })
        .expect("a slot waiting for later_fn");
    let ops = operators(&lib_bytes(&plan));
    let call = ops
        .iter()
        .position(|o| o.starts_with("CallIndirect"))
        .unwrap();
    assert_eq!(
        ops[call - 1],
        format!("I32Const {{ value: {} }}", waiting.0)
    );
    l.commit(plan).unwrap();
    // A library loaded with RTLD_GLOBAL defines it: the same slot now holds it.
    let plan = l
        .plan_dlopen(
            Some("libdef.so"),
            rtld::NOW | rtld::GLOBAL,
            Some(ModuleId(0)),
            MAIN_GROUP,
            Facts {
                memory_bytes: sim.memory_pages * PAGE,
            },
            &src,
            &NoHost,
        )
        .unwrap();
    assert!(
        plan.ops.iter().any(|op| matches!(op,
            Op::SetSlot { slot, value: SlotValue::Export { name, .. } }
                if *slot == waiting && &**name == "later_fn")),
        "{plan}"
    );
}

#[test]
fn a_library_without_the_table_import_gets_one_bound_to_the_program_table() {
    // As clang writes a library that takes no function's address: no table import.
    let lib = wat(r#"(module
      (@dylink.0 (mem-info (memory 16 2)))
      (import "env" "memory" (memory 1))
      (import "env" "__memory_base" (global i32))
      (import "env" "main_cb" (func $cb (result i32)))
      (func (export "side_fn") (result i32) call $cb)
      (func (export "__wasm_call_ctors")))"#);
    let main = pie_main(
        16,
        &["libside.so"],
        r#"(import "env" "side_fn" (func (result i32)))
           (func (export "main_cb") (result i32) i32.const 41)"#,
    );
    let src = source(&[("/lib/libside.so", lib)]);
    let mut l = Linker::new(Config::default());
    let plan = l
        .plan_startup("/app/main.wasm", main, &src, &NoHost)
        .unwrap();
    let mut sim = Sim::default();
    sim.apply(&plan).unwrap_or_else(|e| panic!("{e}\n{plan}"));
    let bytes = lib_bytes(&plan);
    let ops = operators(&bytes);
    assert!(ops.iter().any(|o| o.starts_with("CallIndirect")), "{ops:?}");
    let info = ModuleInfo::parse(&bytes).unwrap();
    let last = info.imports.last().unwrap();
    assert_eq!(last.role, ImportRole::Table);
    let lib_id = plan
        .modules
        .iter()
        .find(|m| m.path == "/lib/libside.so")
        .unwrap()
        .id;
    let bindings = plan
        .ops
        .iter()
        .find_map(|op| match op {
            Op::Instantiate { module, imports } if *module == lib_id => Some(imports.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(bindings.len(), info.imports.len());
    assert_eq!(bindings.last(), Some(&Binding::Table));
    // The linker's record of the module is the rewritten one.
    l.commit(plan).unwrap();
    assert_eq!(
        l.module(lib_id).unwrap().info.imports.len(),
        info.imports.len()
    );
}

#[test]
fn a_lazily_bound_import_the_module_never_calls_gets_no_slot() {
    let lib = side(
        16,
        0,
        &[],
        r#"(import "env" "main_cb" (func $cb (result i32)))
           (import "env" "main_other" (func $other (result i32)))
           (func (export "side_fn") (result i32) call $cb)
           (export "other" (func $other))"#,
    );
    let main = pie_main(
        16,
        &["libside.so"],
        r#"(import "env" "side_fn" (func (result i32)))
           (func (export "main_cb") (result i32) i32.const 41)
           (func (export "main_other") (result i32) i32.const 7)"#,
    );
    let src = source(&[("/lib/libside.so", lib)]);
    let l = Linker::new(Config::default());
    let plan = l
        .plan_startup("/app/main.wasm", main, &src, &NoHost)
        .unwrap();
    let slotted: Vec<&str> = plan
        .ops
        .iter()
        .filter_map(|op| match op {
            Op::SetSlot {
                value: SlotValue::Export { name, .. },
                ..
            } => Some(&**name),
            _ => None,
        })
        .collect();
    assert!(slotted.contains(&"main_cb"), "{plan}");
    assert!(!slotted.contains(&"main_other"), "{plan}");
    let ops = operators(&lib_bytes(&plan));
    assert!(ops.iter().any(|o| o.starts_with("CallIndirect")), "{ops:?}");
}

#[test]
fn in_a_threaded_program_calls_to_a_definer_of_the_same_load_go_through_its_slot_unchecked() {
    let (main, src, lib) = cycle_in(true);
    let mut l = Linker::new(Config::default());
    let plan = l
        .plan_startup("/app/main.wasm", main, &src, &NoHost)
        .unwrap();
    let mut sim = Sim::default();
    sim.apply(&plan).unwrap_or_else(|e| panic!("{e}\n{plan}"));
    let slot = plan
        .ops
        .iter()
        .find_map(|op| match op {
            Op::SetSlot {
                slot,
                value: SlotValue::Export { name, .. },
            } if &**name == "main_cb" => Some(slot.0),
            _ => None,
        })
        .expect("main_cb gets a canonical slot");
    let bytes = lib_bytes(&plan);
    assert_ne!(&*bytes, &*lib, "the library is rewritten");
    let ops = operators(&bytes);
    assert!(
        !ops.iter().any(|o| o == "Call { function_index: 0 }"),
        "{ops:?}"
    );
    let call = ops
        .iter()
        .position(|o| o.starts_with("CallIndirect"))
        .expect("a call_indirect");
    assert_eq!(ops[call - 1], format!("I32Const {{ value: {slot} }}"));
    // No safe-point check before it: the library gained no hook imports.
    let info = ModuleInfo::parse(&bytes).unwrap();
    assert!(
        !info
            .imports
            .iter()
            .any(|i| matches!(i.role, ImportRole::CatchUp | ImportRole::Seen)),
        "{:?}",
        info.imports
    );
    l.commit(plan).unwrap();
    // A new thread's group has the slot filled once its plan is applied, before it runs
    // any of the library's code.
    let group = l
        .plan_group(Facts {
            memory_bytes: sim.memory_pages * PAGE,
        })
        .unwrap();
    let g = group.group();
    sim.apply(&group).unwrap_or_else(|e| panic!("{e}\n{group}"));
    let table = &sim.groups[&g].table;
    assert!(
        table[slot as usize]
            .as_deref()
            .is_some_and(|v| v.ends_with(".main_cb")),
        "{table:?}"
    );
}

#[test]
fn in_a_threaded_program_calls_to_a_symbol_nothing_defines_yet_keep_their_checked_trampoline() {
    let lib = shared(&side_src(
        16,
        0,
        &[],
        r#"(import "env" "later_fn" (func $later (param i32) (result i32)))
           (func (export "side_fn") (result i32) i32.const 2 call $later)"#,
    ));
    let main = shared(&pie_main_src(16, &["libside.so"], ""));
    let src = source(&[("/lib/libside.so", lib.clone())]);
    let l = Linker::new(Config::default());
    let plan = l
        .plan_startup("/app/main.wasm", main, &src, &NoHost)
        .unwrap();
    let mut sim = Sim::default();
    sim.apply(&plan).unwrap_or_else(|e| panic!("{e}\n{plan}"));
    // Another thread's dlopen may fill the slot it waits in; only the trampoline, which
    // catches up first, calls through it.
    assert_eq!(&*lib_bytes(&plan), &*lib);
    assert!(
        plan.ops
            .iter()
            .any(|op| matches!(op, Op::InstantiateGenerated { .. })),
        "{plan}"
    );
}
