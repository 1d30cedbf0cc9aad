//! Linking scenarios, applied to the simulated store.

mod common;

use common::*;
use dylink_core::*;

fn source(files: &[(&str, std::sync::Arc<[u8]>)]) -> MemorySource {
    let mut s = MemorySource::new();
    for (p, b) in files {
        s.insert(p, b.clone());
    }
    s
}

fn startup(
    linker: &mut Linker,
    sim: &mut Sim,
    main: std::sync::Arc<[u8]>,
    src: &MemorySource,
    host: &dyn HostNames,
) -> Plan {
    let plan = linker
        .plan_startup("/app/main.wasm", main, src, host)
        .unwrap_or_else(|e| panic!("{e}"));
    sim.apply(&plan).unwrap_or_else(|e| panic!("{e}\n{plan}"));
    plan
}

fn commit(linker: &mut Linker, plan: Plan) -> Outcome {
    linker.commit(plan).unwrap()
}

const LIB_ADD: &str = r#"
  (import "GOT.mem" "counter" (global $counter (mut i32)))
  (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
  (global (export "table_of_things") i32 (i32.const 8))
"#;

#[test]
fn main_calls_side_directly_and_side_data_is_relocated() {
    let lib = side(32, 1, &[], LIB_ADD);
    let main = pie_main(
        64,
        &["libadd.so"],
        r#"(import "env" "add" (func $add (param i32 i32) (result i32)))
           (import "GOT.mem" "table_of_things" (global (mut i32)))
           (global (export "counter") i32 (i32.const 4))"#,
    );
    let src = source(&[("/lib/libadd.so", lib)]);
    let mut l = Linker::new(Config::default());
    let mut sim = Sim::default();
    let plan = startup(&mut l, &mut sim, main, &src, &NoHost);
    let ops = plan.ops.clone();
    let Outcome::Loaded(main_id) = commit(&mut l, plan) else {
        panic!()
    };
    let lib_id = l.modules().find(|m| m.path == "/lib/libadd.so").unwrap().id;
    let (mainm, libm) = (l.module(main_id).unwrap(), l.module(lib_id).unwrap());
    // Main's data sits at a non-zero, aligned base; the library's region does not overlap.
    assert!(mainm.memory_base >= 1024 && mainm.memory_base % 16 == 0);
    assert!(libm.memory_base >= mainm.memory_base + 64 && libm.memory_base % 4 == 0);
    assert!(libm.table_base >= 1, "slot 0 stays null");
    // The library is instantiated first, so main binds `add` straight to its export.
    let main_inst = ops
        .iter()
        .find_map(|o| match o {
            Op::Instantiate { module, imports } if *module == main_id => Some(imports.clone()),
            _ => None,
        })
        .unwrap();
    assert!(main_inst.iter().any(|b| matches!(b,
        Binding::Export { module, name, .. } if *module == lib_id && &**name == "add")));
    // GOT.mem values are absolute: base + the exporter's unrelocated value.
    assert_eq!(
        got_value(
            &ops,
            &sim,
            MAIN_GROUP,
            main_id,
            "GOT.mem",
            "table_of_things"
        ),
        Some(libm.memory_base + 8)
    );
    assert_eq!(
        got_value(&ops, &sim, MAIN_GROUP, lib_id, "GOT.mem", "counter"),
        Some(mainm.memory_base + 4)
    );
    // Layout globals: heap after stack, inside the initial memory.
    let lay = l.main_layout().unwrap();
    assert_eq!(
        got_value(&ops, &sim, MAIN_GROUP, main_id, "GOT.mem", "__heap_base"),
        Some(lay.heap_base)
    );
    assert!(
        lay.stack_low >= libm.memory_base + 32
            && lay.stack_high > lay.stack_low
            && lay.heap_end <= sim.memory_pages * PAGE
    );
    // Init order: relocations of both, then the library's constructors; main's `_start` is
    // left to the embedder.
    let calls = &sim.groups[&MAIN_GROUP].calls;
    assert_eq!(
        calls,
        &[
            format!("{lib_id}.__wasm_apply_data_relocs"),
            format!("{main_id}.__wasm_apply_data_relocs"),
            format!("{lib_id}.__wasm_call_ctors")
        ]
    );
}

/// A library whose `g` calls `from_main`, which the main module defines.
fn calls_main() -> std::sync::Arc<[u8]> {
    side(
        0,
        0,
        &[],
        r#"(import "env" "from_main" (func (param i32) (result i32)))
        (func (export "g") (result i32) i32.const 1 call 0)"#,
    )
}

#[test]
fn side_calls_main_through_a_trampoline_patched_after_instantiation() {
    let lib = calls_main();
    // The main calls the library back: a cycle, so one side waits for the other.
    let main = pie_main(
        16,
        &["libg.so"],
        r#"(import "env" "g" (func (result i32)))
        (func (export "from_main") (param i32) (result i32) local.get 0)"#,
    );
    let src = source(&[("/lib/libg.so", lib)]);
    let mut l = Linker::new(Config::default());
    let mut sim = Sim::default();
    let plan = startup(&mut l, &mut sim, main, &src, &NoHost);
    let main_id = ModuleId(0);
    // The trampoline's table entry points at main's export once main exists.
    let g = &sim.groups[&MAIN_GROUP];
    let (_, tramp_table) = g.generated.values().next().expect("a trampoline module");
    assert_eq!(
        tramp_table[0].as_deref(),
        Some(format!("{main_id}.from_main").as_str())
    );
    commit(&mut l, plan);
}

#[test]
fn function_pointers_are_canonical_across_modules() {
    let a = side(
        0,
        0,
        &[],
        r#"(import "GOT.func" "shared_fn" (global (mut i32)))"#,
    );
    let b = side(
        0,
        0,
        &[],
        r#"(import "GOT.func" "shared_fn" (global (mut i32)))
        (func (export "shared_fn") (param i32) (result i32) local.get 0)"#,
    );
    let main = pie_main(
        0,
        &["liba.so", "libb.so"],
        r#"(import "GOT.func" "shared_fn" (global (mut i32)))"#,
    );
    let src = source(&[("/lib/liba.so", a), ("/lib/libb.so", b)]);
    let mut l = Linker::new(Config::default());
    let mut sim = Sim::default();
    let plan = startup(&mut l, &mut sim, main, &src, &NoHost);
    let ops = plan.ops.clone();
    commit(&mut l, plan);
    let vals: Vec<u64> = (0..3)
        .map(|m| got_value(&ops, &sim, MAIN_GROUP, ModuleId(m), "GOT.func", "shared_fn").unwrap())
        .collect();
    assert!(
        vals[0] != 0 && vals.iter().all(|v| *v == vals[0]),
        "{vals:?}"
    );
    assert_eq!(
        sim.groups[&MAIN_GROUP].table[vals[0] as usize].as_deref(),
        Some("m2.shared_fn")
    );
    // dlsym hands out the same slot.
    let DlsymAnswer::Ready(SymbolValue::Func(s)) = l
        .plan_dlsym(Handle::Default, "shared_fn", None, MAIN_GROUP)
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(s.0, vals[0]);
}

#[test]
fn needed_cycles_and_diamonds_load_each_module_once() {
    // a -> b, c; b -> d; c -> d; d -> a (cycle back)
    let a = side(4, 0, &["libb.so", "libc.so"], r#"(func (export "fa"))"#);
    let b = side(
        4,
        0,
        &["libd.so"],
        r#"(import "env" "fd" (func)) (func (export "fb"))"#,
    );
    let c = side(4, 0, &["libd.so"], r#"(func (export "fc"))"#);
    let d = side(
        4,
        0,
        &["liba.so"],
        r#"(import "env" "fa" (func)) (func (export "fd"))"#,
    );
    let main = pie_main(0, &["liba.so"], "");
    let src = source(&[
        ("/lib/liba.so", a),
        ("/lib/libb.so", b),
        ("/lib/libc.so", c),
        ("/lib/libd.so", d),
    ]);
    let mut l = Linker::new(Config::default());
    let mut sim = Sim::default();
    let plan = startup(&mut l, &mut sim, main, &src, &NoHost);
    assert_eq!(plan.modules.len(), 5);
    let order: Vec<ModuleId> = plan
        .ops
        .iter()
        .filter_map(|o| match o {
            Op::Instantiate { module, .. } => Some(*module),
            _ => None,
        })
        .collect();
    assert_eq!(order.len(), 5);
    let pos = |p: &str| {
        let id = plan.modules.iter().find(|m| m.path == p).unwrap().id;
        order.iter().position(|m| *m == id).unwrap()
    };
    // Instances follow the calls (b calls d, d calls a: no cycle, so no trampoline) ...
    assert!(pos("/lib/liba.so") < pos("/lib/libd.so") && pos("/lib/libd.so") < pos("/lib/libb.so"));
    assert_eq!(pos("/app/main.wasm"), 4);
    assert!(
        !plan
            .ops
            .iter()
            .any(|o| matches!(o, Op::InstantiateGenerated { .. })),
        "{plan}"
    );
    // ... constructors follow NEEDED, dependencies first (the cycle cut where first met).
    let name = |id: &ModuleId| {
        let p = &plan.modules.iter().find(|m| m.id == *id).unwrap().path;
        p.trim_start_matches("/lib/").to_string()
    };
    let ctors: Vec<String> = plan
        .ops
        .iter()
        .filter_map(|o| match o {
            Op::Call {
                module,
                func: InitCall::CallCtors,
            } => Some(name(module)),
            _ => None,
        })
        .collect();
    assert_eq!(ctors, ["libd.so", "libb.so", "libc.so", "liba.so"]);
    commit(&mut l, plan);
}

/// The main module and its libraries, each library calling `f` of the one after it and the
/// last calling the first: every NEEDED order instantiates all but one before its definer.
fn ring(n: usize) -> (std::sync::Arc<[u8]>, MemorySource) {
    let mut files = Vec::new();
    for i in 0..n {
        let next = (i + 1) % n;
        files.push((
            format!("/lib/lib{i}.so"),
            side(
                0,
                0,
                &[],
                &format!(
                    r#"(import "env" "f{next}" (func $g (result i32)))
                       (func (export "f{i}") (result i32) call $g)"#
                ),
            ),
        ));
    }
    let names: Vec<String> = (0..n).map(|i| format!("lib{i}.so")).collect();
    let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let main = pie_main(16, &names, "");
    let mut src = MemorySource::new();
    for (p, b) in files {
        src.insert(&p, b);
    }
    (main, src)
}

#[test]
fn modules_are_instantiated_after_the_definers_of_what_they_call() {
    // A library calling the main module, which calls nothing back: the main comes first
    // and the call is bound directly, with no trampoline; relocations and constructors
    // keep their order.
    let lib = calls_main();
    let main = pie_main(
        16,
        &["libg.so"],
        r#"(func (export "from_main") (param i32) (result i32) local.get 0)"#,
    );
    let src = source(&[("/lib/libg.so", lib)]);
    let mut l = Linker::new(Config::default());
    let mut sim = Sim::default();
    let plan = startup(&mut l, &mut sim, main, &src, &NoHost);
    let instantiated: Vec<ModuleId> = plan
        .ops
        .iter()
        .filter_map(|o| match o {
            Op::Instantiate { module, .. } => Some(*module),
            _ => None,
        })
        .collect();
    let (main_id, lib_id) = (ModuleId(0), plan.modules[1].id);
    assert_eq!(instantiated, [main_id, lib_id]);
    assert!(sim.groups[&MAIN_GROUP].generated.is_empty(), "{plan}");
    assert_eq!(
        sim.groups[&MAIN_GROUP].calls,
        [
            format!("{lib_id}.__wasm_apply_data_relocs"),
            format!("{main_id}.__wasm_apply_data_relocs"),
            format!("{lib_id}.__wasm_call_ctors")
        ]
    );
    commit(&mut l, plan);

    // A ring of calls: one import waits for its definer, not all but one.
    for n in [2, 3, 10] {
        let (main, src) = ring(n);
        let mut l = Linker::new(Config::default());
        let mut sim = Sim::default();
        let plan = startup(&mut l, &mut sim, main, &src, &NoHost);
        let tramp = plan.ops.iter().find_map(|o| match o {
            Op::InstantiateGenerated { imports, .. } => Some(imports.clone()),
            _ => None,
        });
        // One trampoline: the generated module's table holds one slot.
        assert_eq!(
            tramp.as_deref().and_then(|i| i.first()),
            Some(&Binding::TrampolineTable { slots: 1 }),
            "ring of {n}: {plan}"
        );
        commit(&mut l, plan);
    }
}

#[test]
fn missing_symbols_are_all_reported_with_bind_now_and_deferred_when_lazy() {
    let lib = side(
        0,
        0,
        &[],
        r#"
        (import "env" "nowhere" (func (param i32)))
        (import "env" "also_nowhere" (func))
        (import "GOT.mem" "no_data" (global (mut i32)))"#,
    );
    let main = pie_main(0, &["libm.so"], "");
    let src = source(&[("/lib/libm.so", lib.clone())]);
    let cfg = Config {
        bind: BindMode::Now,
        ..Config::default()
    };
    let err = Linker::new(cfg)
        .plan_startup("/app/main.wasm", main.clone(), &src, &NoHost)
        .unwrap_err();
    let Error::Link { diagnostics } = &err else {
        panic!("{err}")
    };
    assert_eq!(
        diagnostics.iter().filter(|d| d.is_error()).count(),
        3,
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("`nowhere`") && msg.contains("`also_nowhere`") && msg.contains("`no_data`"),
        "{msg}"
    );
    // Lazy: functions are deferred, but undefined data is still an error.
    let err = Linker::new(Config::default())
        .plan_startup("/app/main.wasm", main.clone(), &src, &NoHost)
        .unwrap_err();
    let Error::Link { diagnostics } = &err else {
        panic!()
    };
    assert_eq!(
        diagnostics.iter().filter(|d| d.is_error()).count(),
        1,
        "{err}"
    );
    // Without the data import, a lazy link succeeds and the function traps by name.
    let lib = side(0, 0, &[], r#"(import "env" "nowhere" (func (param i32)))"#);
    let src = source(&[("/lib/libm.so", lib)]);
    let mut l = Linker::new(Config::default());
    let mut sim = Sim::default();
    let plan = startup(&mut l, &mut sim, main, &src, &NoHost);
    assert!(
        plan.diagnostics
            .iter()
            .any(|d| matches!(d, Diagnostic::Missing { deferred: true, .. }))
    );
    let (_, t) = sim.groups[&MAIN_GROUP].generated.values().next().unwrap();
    assert_eq!(t[0].as_deref(), Some("trap:nowhere"));
    commit(&mut l, plan);
}

#[test]
fn weak_undefined_function_traps_and_weak_data_is_null() {
    let lib = wat(r#"(module
      (@dylink.0 (mem-info (memory 0 0)) (import-info "env" "maybe" binding-weak undefined) (import-info "env" "maybe_data" binding-weak undefined))
      (import "env" "maybe" (func (result i32)))
      (import "GOT.func" "maybe" (global (mut i32)))
      (import "GOT.mem" "maybe_data" (global (mut i32))))"#);
    let main = pie_main(0, &["libw.so"], "");
    let src = source(&[("/lib/libw.so", lib)]);
    let mut l = Linker::new(Config {
        bind: BindMode::Now,
        ..Config::default()
    });
    let mut sim = Sim::default();
    let plan = startup(&mut l, &mut sim, main, &src, &NoHost);
    let ops = plan.ops.clone();
    let lib_id = ModuleId(1);
    assert_eq!(
        got_value(&ops, &sim, MAIN_GROUP, lib_id, "GOT.func", "maybe"),
        Some(0)
    );
    assert_eq!(
        got_value(&ops, &sim, MAIN_GROUP, lib_id, "GOT.mem", "maybe_data"),
        Some(0)
    );
    let inst = ops
        .iter()
        .find_map(|o| match o {
            Op::Instantiate { module, imports } if *module == lib_id => Some(imports.clone()),
            _ => None,
        })
        .unwrap();
    assert!(matches!(&inst[0], Binding::Trap { symbol, .. } if &**symbol == "maybe"));
    assert_eq!(
        plan.diagnostics
            .iter()
            .filter(|d| matches!(d, Diagnostic::WeakMissing { .. }))
            .count(),
        3
    );
    commit(&mut l, plan);
}

#[test]
fn type_mismatch_names_both_modules_and_both_types() {
    let a = side(
        0,
        0,
        &[],
        r#"(func (export "bar") (param i64) (result i32) i32.const 0)"#,
    );
    let b = side(
        0,
        0,
        &["liba.so"],
        r#"(import "env" "bar" (func (param i32) (result i32)))"#,
    );
    let main = pie_main(0, &["libb.so"], "");
    let src = source(&[("/lib/liba.so", a), ("/lib/libb.so", b)]);
    let err = Linker::new(Config::default())
        .plan_startup("/app/main.wasm", main, &src, &NoHost)
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(
            "/lib/libb.so needs `bar: (i32) -> i32` but /lib/liba.so exports `bar: (i64) -> i32`"
        ),
        "{msg}"
    );
}

#[test]
fn duplicates_resolve_to_the_first_in_scope_and_are_reported() {
    let a = side(
        0,
        0,
        &[],
        r#"(func (export "dup") (result i32) i32.const 1)"#,
    );
    let b = side(
        0,
        0,
        &[],
        r#"(func (export "dup") (result i32) i32.const 2)"#,
    );
    let main = pie_main(
        0,
        &["liba.so", "libb.so"],
        r#"(import "env" "dup" (func (result i32)))"#,
    );
    let src = source(&[("/lib/liba.so", a), ("/lib/libb.so", b)]);
    let mut l = Linker::new(Config::default());
    let mut sim = Sim::default();
    let plan = startup(&mut l, &mut sim, main, &src, &NoHost);
    let main_inst = plan
        .ops
        .iter()
        .find_map(|o| match o {
            Op::Instantiate {
                module: ModuleId(0),
                imports,
            } => Some(imports.clone()),
            _ => None,
        })
        .unwrap();
    assert!(matches!(
        main_inst.last().unwrap(),
        Binding::Export { module: ModuleId(1), name, .. } if &**name == "dup"
    ));
    assert!(plan.diagnostics.iter().any(|d| matches!(d, Diagnostic::Duplicate { symbol, chosen, .. } if symbol == "dup" && chosen == "/lib/liba.so")));
    commit(&mut l, plan);
}

#[test]
fn search_reports_every_path_tried_and_refuses_escapes() {
    let main = pie_main(0, &["libnope.so"], "");
    let mut cfg = Config::default();
    cfg.search.library_path = vec!["/opt/lib".into()];
    let err = Linker::new(cfg.clone())
        .plan_startup("/app/main.wasm", main, &MemorySource::new(), &NoHost)
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("/opt/lib/libnope.so")
            && msg.contains("/usr/local/lib/libnope.so")
            && msg.contains("needed by /app/main.wasm"),
        "{msg}"
    );
    let main = pie_main(0, &["../../etc/secret.so"], "");
    cfg.search.roots = vec!["/app".into(), "/lib".into()];
    let err = Linker::new(cfg)
        .plan_startup("/app/main.wasm", main, &MemorySource::new(), &NoHost)
        .unwrap_err();
    assert!(matches!(err, Error::OutsideRoots { .. }), "{err}");
}

#[test]
fn runtime_path_origin_finds_libraries_next_to_the_requester() {
    let dep = side(0, 0, &[], "");
    let lib = wat(
        r#"(module (@dylink.0 (mem-info (memory 0 0)) (needed "libdep.so") (runtime-path "$ORIGIN/deps")))"#,
    );
    let main = pie_main(0, &["plugins/libp.so"], "");
    let src = source(&[
        ("/app/plugins/libp.so", lib),
        ("/app/plugins/deps/libdep.so", dep),
    ]);
    let mut cfg = Config::default();
    cfg.search.cwd = "/app".into();
    let mut l = Linker::new(cfg);
    let mut sim = Sim::default();
    let plan = startup(&mut l, &mut sim, main, &src, &NoHost);
    assert!(
        plan.modules
            .iter()
            .any(|m| m.path == "/app/plugins/deps/libdep.so")
    );
    commit(&mut l, plan);
}

fn program_with_heap() -> (Linker, Sim) {
    let main = pie_main(
        16,
        &[],
        r#"(import "env" "dlopen" (func (param i32 i32) (result i32)))
        (func (export "main_fn") (result i32) i32.const 7)"#,
    );
    let mut l = Linker::new(Config::default());
    let mut sim = Sim::default();
    let plan = startup(&mut l, &mut sim, main, &MemorySource::new(), &NoHost);
    commit(&mut l, plan);
    (l, sim)
}

fn plugin_source() -> MemorySource {
    let util = side(
        64,
        2,
        &[],
        r#"(func (export "util") (result i32) i32.const 3)
        (global (export "util_data") i32 (i32.const 0))"#,
    );
    let plugin = side(
        128,
        1,
        &["libutil.so"],
        r#"
        (import "env" "util" (func (result i32)))
        (import "env" "main_fn" (func (result i32)))
        (import "GOT.func" "util" (global (mut i32)))
        (func (export "run") (result i32) call 0 call 1 i32.add)
        (global (export "plugin_data") i32 (i32.const 16))"#,
    );
    source(&[("/lib/libplugin.so", plugin), ("/lib/libutil.so", util)])
}

/// `dlopen(name, flags)` from the host in `group`, planned, applied to `sim` and committed:
/// the handle.
fn dlopen_applied(
    l: &mut Linker,
    sim: &mut Sim,
    src: &MemorySource,
    name: &str,
    flags: i32,
    group: GroupId,
) -> ModuleId {
    let plan = l
        .plan_dlopen(Some(name), flags, None, group, facts(sim), src, &NoHost)
        .unwrap();
    sim.apply(&plan).unwrap();
    let Outcome::Loaded(h) = commit(l, plan) else {
        panic!("dlopen yields a module")
    };
    h
}

fn facts(sim: &Sim) -> Facts {
    Facts {
        memory_bytes: sim.memory_pages * PAGE,
    }
}

#[test]
fn dlopen_dlsym_dlclose_reuses_memory_and_slots() {
    let (mut l, mut sim) = program_with_heap();
    let src = plugin_source();
    let before = l.clone();
    let plan = l
        .plan_dlopen(
            Some("libplugin.so"),
            rtld::NOW,
            Some(ModuleId(0)),
            MAIN_GROUP,
            facts(&sim),
            &src,
            &NoHost,
        )
        .unwrap();
    // New memory comes from new pages above the program's heap, never from inside it.
    assert!(plan.ops.iter().any(|o| matches!(o, Op::GrowMemory { .. })));
    sim.apply(&plan).unwrap_or_else(|e| panic!("{e}\n{plan}"));
    let Outcome::Loaded(h) = commit(&mut l, plan) else {
        panic!()
    };
    let p = l.module(h).unwrap().clone();
    assert!(p.memory_base >= l.main_layout().unwrap().heap_end);
    // dlsym of data and of a function; the function gets a slot once and keeps it.
    let DlsymAnswer::Ready(SymbolValue::Data(a)) = l
        .plan_dlsym(Handle::Module(h), "plugin_data", None, MAIN_GROUP)
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(a.0, p.memory_base + 16);
    let DlsymAnswer::Plan(plan) = l
        .plan_dlsym(Handle::Module(h), "run", None, MAIN_GROUP)
        .unwrap()
    else {
        panic!("needs a slot")
    };
    sim.apply(&plan).unwrap();
    let Outcome::Symbol(SymbolValue::Func(slot)) = commit(&mut l, plan) else {
        panic!()
    };
    let DlsymAnswer::Ready(SymbolValue::Func(again)) = l
        .plan_dlsym(Handle::Module(h), "run", None, MAIN_GROUP)
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(slot, again);
    // A symbol of the dependency through the handle; RTLD_LOCAL keeps it out of the default scope.
    assert!(
        l.plan_dlsym(Handle::Module(h), "util", None, MAIN_GROUP)
            .is_ok()
    );
    assert!(matches!(
        l.plan_dlsym(Handle::Default, "util", None, MAIN_GROUP),
        Err(Error::SymbolNotFound { .. })
    ));
    // dladdr
    let info = l.dladdr(slot.0).unwrap();
    assert_eq!(
        (info.path.as_str(), info.symbol.as_deref()),
        ("/lib/libplugin.so", Some("run"))
    );
    let info = l.dladdr(p.memory_base + 20).unwrap();
    assert_eq!(info.symbol.as_deref(), Some("plugin_data"));
    // A second dlopen only counts a reference.
    let plan = l
        .plan_dlopen(
            Some("libplugin.so"),
            rtld::NOW,
            None,
            MAIN_GROUP,
            facts(&sim),
            &src,
            &NoHost,
        )
        .unwrap();
    assert!(plan.ops.is_empty());
    commit(&mut l, plan);
    let plan = l.plan_dlclose(h, MAIN_GROUP).unwrap();
    assert!(plan.ops.is_empty(), "still referenced once");
    commit(&mut l, plan);
    let plan = l.plan_dlclose(h, MAIN_GROUP).unwrap();
    assert!(
        plan.ops
            .iter()
            .any(|o| matches!(o, Op::Unload { module } if *module == h))
    );
    assert_eq!(
        plan.ops
            .iter()
            .filter(|o| matches!(o, Op::Unload { .. }))
            .count(),
        2,
        "the dependency goes too"
    );
    assert!(
        plan.ops
            .iter()
            .any(|o| matches!(o, Op::SetSlot { slot: s, value: SlotValue::Null } if *s == slot)),
        "dangling pointer traps"
    );
    sim.apply(&plan).unwrap();
    commit(&mut l, plan);
    assert!(l.module(h).is_none());
    assert!(l.dladdr(p.memory_base + 20).is_none());
    // Re-opening reuses the reclaimed memory (zeroed first) instead of growing.
    let plan = l
        .plan_dlopen(
            Some("libplugin.so"),
            rtld::NOW,
            None,
            MAIN_GROUP,
            facts(&sim),
            &src,
            &NoHost,
        )
        .unwrap();
    assert!(
        !plan.ops.iter().any(|o| matches!(o, Op::GrowMemory { .. })),
        "{plan}"
    );
    assert!(
        plan.ops.iter().any(|o| matches!(o, Op::ZeroMemory { .. })),
        "{plan}"
    );
    sim.apply(&plan).unwrap();
    let Outcome::Loaded(h2) = commit(&mut l, plan) else {
        panic!()
    };
    assert_ne!(h, h2, "handles are never reused");
    assert_eq!(l.module(h2).unwrap().memory_base, p.memory_base);
    let _ = before;
}

#[test]
fn a_dlopen_of_a_loaded_library_done_in_place_is_the_plan_committed() {
    let (mut l, mut sim) = program_with_heap();
    let src = plugin_source();
    let dlopen = |l: &mut Linker, sim: &mut Sim, flags| {
        dlopen_applied(l, sim, &src, "libplugin.so", flags, MAIN_GROUP)
    };
    // Nothing loaded under the name yet: the full plan decides.
    assert_eq!(l.dlopen_loaded("libplugin.so", rtld::NOW, MAIN_GROUP), None);
    let h = dlopen(&mut l, &mut sim, rtld::NOW | rtld::LOCAL);
    // Each case against the same call planned and committed from the same state (a plan
    // with no ops: the simulated store is not changed by it).
    for flags in [
        rtld::NOW,
        rtld::LAZY,
        rtld::NOW | rtld::NOLOAD,
        rtld::LAZY | rtld::NODELETE,
    ] {
        let mut planned = l.clone();
        assert_eq!(dlopen(&mut planned, &mut sim, flags), h);
        assert_eq!(l.dlopen_loaded("libplugin.so", flags, MAIN_GROUP), Some(h));
        assert!(l == planned, "flags {flags:#x}");
    }
    assert_eq!(l.module(h).unwrap().refs, 5);
    assert!(l.module(h).unwrap().pinned);
    // What it leaves to the plan: a path, a name not loaded, and RTLD_GLOBAL for a library
    // outside the global scope (it must be promoted, and its pending symbols adopted).
    let before = l.clone();
    for (name, flags) in [
        ("/lib/libplugin.so", rtld::NOW),
        ("libother.so", rtld::NOW),
        ("libplugin.so", rtld::NOW | rtld::GLOBAL),
    ] {
        assert_eq!(l.dlopen_loaded(name, flags, MAIN_GROUP), None, "{name}");
    }
    assert!(l == before, "a refusal changes nothing");
    // Neither RTLD_LAZY nor RTLD_NOW: taken as RTLD_LAZY (musl, Emscripten), in place too.
    for flags in [0, rtld::NODELETE] {
        let mut planned = l.clone();
        assert_eq!(dlopen(&mut planned, &mut sim, flags), h);
        let mut in_place = l.clone();
        assert_eq!(
            in_place.dlopen_loaded("libplugin.so", flags, MAIN_GROUP),
            Some(h)
        );
        assert!(in_place == planned, "flags {flags:#x}");
    }
    // Once promoted, RTLD_GLOBAL changes nothing more and is done in place too.
    dlopen(&mut l, &mut sim, rtld::NOW | rtld::GLOBAL);
    let mut planned = l.clone();
    dlopen(&mut planned, &mut sim, rtld::NOW | rtld::GLOBAL);
    assert_eq!(
        l.dlopen_loaded("libplugin.so", rtld::NOW | rtld::GLOBAL, MAIN_GROUP),
        Some(h)
    );
    assert!(l == planned);
    // A plan made before an in-place dlopen no longer commits (as after any commit).
    let stale = l.plan_dlclose(h, MAIN_GROUP).unwrap();
    l.dlopen_loaded("libplugin.so", rtld::NOW, MAIN_GROUP);
    assert!(matches!(l.commit(stale), Err(Error::StalePlan)));
}

/// A threaded program with a second group, which has dlopened `libwork.so` (handle
/// returned with the group) while the main group has not replayed it.
fn second_group_dlopens_libwork() -> (Linker, Sim, GroupId, ModuleId) {
    let (mut l, mut sim, src) = threaded_program_with_libwork();
    let plan = l.plan_group(facts(&sim)).unwrap();
    let g1 = plan.group();
    sim.apply(&plan).unwrap();
    commit(&mut l, plan);
    let h = dlopen_applied(&mut l, &mut sim, &src, "libwork.so", rtld::NOW, g1);
    (l, sim, g1, h)
}

#[test]
fn an_in_place_dlopen_waits_for_a_group_behind_the_log() {
    let (mut l, mut sim, g1, h) = second_group_dlopens_libwork();
    // The main group has not replayed the load: it must catch up first.
    assert_eq!(l.dlopen_loaded("libwork.so", rtld::NOW, MAIN_GROUP), None);
    let (ops, cursor) = l.pending_ops(MAIN_GROUP).unwrap();
    sim.apply_ops(MAIN_GROUP, &ops).unwrap();
    l.caught_up(MAIN_GROUP, cursor);
    assert_eq!(
        l.dlopen_loaded("libwork.so", rtld::NOW, MAIN_GROUP),
        Some(h)
    );
    assert_eq!(l.dlopen_loaded("libwork.so", rtld::NOW, g1), Some(h));
    assert_eq!(l.module(h).unwrap().refs, 3);
}

#[test]
fn an_aborted_dlopen_leaves_the_linker_exactly_as_before_at_every_step() {
    let (mut l, sim0) = program_with_heap();
    let src = plugin_source();
    let snapshot = l.clone();
    let probe = l
        .plan_dlopen(
            Some("libplugin.so"),
            rtld::NOW | rtld::GLOBAL,
            None,
            MAIN_GROUP,
            facts(&sim0),
            &src,
            &NoHost,
        )
        .unwrap();
    let n = probe.ops.len();
    l.abort(probe);
    for fail_at in 0..n {
        let mut sim = Sim {
            memory_pages: sim0.memory_pages,
            fail_at: Some(fail_at),
            ..Sim::default()
        };
        sim.modules = sim0.modules.clone();
        let plan = l
            .plan_dlopen(
                Some("libplugin.so"),
                rtld::NOW | rtld::GLOBAL,
                None,
                MAIN_GROUP,
                facts(&sim0),
                &src,
                &NoHost,
            )
            .unwrap();
        assert!(sim.apply(&plan).is_err());
        l.abort(plan);
        assert!(
            l == snapshot,
            "state changed after a failure at op {fail_at}"
        );
    }
    // A failure deep in the tree (a dependency that is not a wasm module) leaves no trace either.
    let mut bad = plugin_source();
    bad.insert("/lib/libutil.so", b"\0asm\x01\0\0\0garbage".to_vec());
    let err = l
        .plan_dlopen(
            Some("libplugin.so"),
            rtld::NOW,
            None,
            MAIN_GROUP,
            facts(&sim0),
            &bad,
            &NoHost,
        )
        .unwrap_err();
    assert!(err.to_string().contains("/lib/libutil.so"), "{err}");
    assert!(l == snapshot);
    // And the next successful load gets the same layout as if nothing had failed.
    let plan = l
        .plan_dlopen(
            Some("libplugin.so"),
            rtld::NOW,
            None,
            MAIN_GROUP,
            facts(&sim0),
            &src,
            &NoHost,
        )
        .unwrap();
    let fresh = snapshot
        .plan_dlopen(
            Some("libplugin.so"),
            rtld::NOW,
            None,
            MAIN_GROUP,
            facts(&sim0),
            &src,
            &NoHost,
        )
        .unwrap();
    assert_eq!(plan.ops, fresh.ops);
    l.abort(fresh);
    commit(&mut l, plan);
}

#[test]
fn rtld_local_isolates_and_global_promotion_satisfies_lazy_symbols() {
    let (mut l, mut sim) = program_with_heap();
    let provider = side(
        0,
        0,
        &[],
        r#"(func (export "late_fn") (param i32) (result i32) local.get 0)"#,
    );
    let consumer = side(
        0,
        0,
        &[],
        r#"(import "env" "late_fn" (func (param i32) (result i32)))
        (import "GOT.func" "late_fn" (global (mut i32)))"#,
    );
    let src = source(&[("/lib/libprov.so", provider), ("/lib/libcons.so", consumer)]);
    // The consumer loads lazily: `late_fn` is pending.
    let plan = l
        .plan_dlopen(
            Some("libcons.so"),
            rtld::LAZY | rtld::GLOBAL,
            None,
            MAIN_GROUP,
            facts(&sim),
            &src,
            &NoHost,
        )
        .unwrap();
    let cons_ops = plan.ops.clone();
    sim.apply(&plan).unwrap();
    let Outcome::Loaded(cons) = commit(&mut l, plan) else {
        panic!()
    };
    let pending_slot = got_value(&cons_ops, &sim, MAIN_GROUP, cons, "GOT.func", "late_fn").unwrap();
    assert_eq!(
        sim.groups[&MAIN_GROUP].table[pending_slot as usize].as_deref(),
        Some("trap:late_fn")
    );
    // Loaded locally, the provider does not satisfy it.
    let prov = dlopen_applied(
        &mut l,
        &mut sim,
        &src,
        "libprov.so",
        rtld::LAZY | rtld::LOCAL,
        MAIN_GROUP,
    );
    assert_eq!(
        sim.groups[&MAIN_GROUP].table[pending_slot as usize].as_deref(),
        Some("trap:late_fn")
    );
    // Promoted to global, it does: the pending slot becomes the canonical slot.
    let plan = l
        .plan_dlopen(
            Some("libprov.so"),
            rtld::LAZY | rtld::GLOBAL,
            None,
            MAIN_GROUP,
            facts(&sim),
            &src,
            &NoHost,
        )
        .unwrap();
    sim.apply(&plan).unwrap();
    commit(&mut l, plan);
    assert_eq!(
        sim.groups[&MAIN_GROUP].table[pending_slot as usize].as_deref(),
        Some(format!("{prov}.late_fn").as_str())
    );
    let (_, t) = sim.groups[&MAIN_GROUP].generated.values().next().unwrap();
    assert_eq!(t[0].as_deref(), Some(format!("{prov}.late_fn").as_str()));
    let DlsymAnswer::Ready(SymbolValue::Func(s)) = l
        .plan_dlsym(Handle::Default, "late_fn", None, MAIN_GROUP)
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(s.0, pending_slot, "one function, one pointer");
    // RTLD_NOLOAD of something never loaded
    assert!(matches!(
        l.plan_dlopen(
            Some("libzz.so"),
            rtld::NOW | rtld::NOLOAD,
            None,
            MAIN_GROUP,
            facts(&sim),
            &src,
            &NoHost
        ),
        Err(Error::NotLoaded { .. })
    ));
    // The consumer now depends on the provider: closing the provider keeps it loaded.
    let plan = l.plan_dlclose(prov, MAIN_GROUP).unwrap();
    commit(&mut l, plan);
    let plan = l.plan_dlclose(prov, MAIN_GROUP).unwrap();
    assert!(
        !plan.ops.iter().any(|o| matches!(o, Op::Unload { .. })),
        "{plan}"
    );
    commit(&mut l, plan);
    assert!(l.module(prov).is_some());
}

#[test]
fn rtld_next_finds_the_next_definition() {
    let (mut l, mut sim) = program_with_heap();
    let a = side(
        0,
        0,
        &[],
        r#"(func (export "hook") (result i32) i32.const 1)"#,
    );
    let b = side(
        0,
        0,
        &[],
        r#"(func (export "hook") (result i32) i32.const 2)"#,
    );
    let src = source(&[("/lib/liba.so", a), ("/lib/libb.so", b)]);
    let mut ids = vec![];
    for n in ["liba.so", "libb.so"] {
        let plan = l
            .plan_dlopen(
                Some(n),
                rtld::NOW | rtld::GLOBAL,
                None,
                MAIN_GROUP,
                facts(&sim),
                &src,
                &NoHost,
            )
            .unwrap();
        sim.apply(&plan).unwrap();
        let Outcome::Loaded(id) = commit(&mut l, plan) else {
            panic!()
        };
        ids.push(id);
    }
    let mut def = |h, c| match l.plan_dlsym(h, "hook", c, MAIN_GROUP).unwrap() {
        DlsymAnswer::Ready(v) => v,
        DlsymAnswer::Plan(p) => {
            sim.apply(&p).unwrap();
            match l.commit(p).unwrap() {
                Outcome::Symbol(v) => v,
                o => panic!("{o:?}"),
            }
        }
    };
    let first = def(Handle::Default, None);
    let next = def(Handle::Next, Some(ids[0]));
    assert_ne!(first, next);
    let again = def(Handle::Module(ids[1]), None);
    assert_eq!(next, again, "RTLD_NEXT from liba finds libb's definition");
    assert_eq!(l.dladdr(first.as_u64()).unwrap().path, "/lib/liba.so");
    assert!(matches!(
        l.plan_dlsym(Handle::Next, "hook", Some(ids[1]), MAIN_GROUP),
        Err(Error::SymbolNotFound { .. })
    ));
}

#[test]
fn non_pie_main_adopts_its_memory_and_side_modules_grow_above_it() {
    let main = wat(r#"(module
      (import "env" "greet" (func $greet (result i32)))
      (import "GOT.mem" "greeting" (global (mut i32)))
      (memory (export "memory") 2)
      (table (export "__indirect_function_table") 1 funcref)
      (global $sp (export "__stack_pointer") (mut i32) (i32.const 65536))
      (func (export "printf") (param i32 i32) (result i32) i32.const 0)
      (func (export "_start") call $greet drop))"#);
    let lib = side(
        16,
        0,
        &[],
        r#"(import "env" "printf" (func (param i32 i32) (result i32)))
        (func (export "greet") (result i32) i32.const 0 i32.const 0 call 0)
        (global (export "greeting") i32 (i32.const 4))"#,
    );
    let src = source(&[("/lib/libgreet.so", lib)]);
    let mut l = Linker::new(Config {
        preload: vec!["libgreet.so".into()],
        ..Config::default()
    });
    let mut sim = Sim::default();
    let plan = startup(&mut l, &mut sim, main, &src, &NoHost);
    // Main first (it owns memory and libc), then memory grows for the library.
    let kinds: Vec<String> = plan
        .ops
        .iter()
        .map(|o| o.to_string().split(' ').next().unwrap().to_string())
        .collect();
    let first_inst = kinds.iter().position(|k| k == "instantiate").unwrap();
    assert!(
        kinds[first_inst..].starts_with(&[
            "instantiate".into(),
            "instantiate".into(),
            "adopt-memory".into(),
            "adopt-table".into(),
            "grow-memory".into()
        ]),
        "{plan}"
    );
    let ops = plan.ops.clone();
    commit(&mut l, plan);
    let lib = l.modules().find(|m| m.path == "/lib/libgreet.so").unwrap();
    assert!(lib.memory_base >= 2 * PAGE);
    assert_eq!(
        got_value(&ops, &sim, MAIN_GROUP, ModuleId(0), "GOT.mem", "greeting"),
        Some(lib.memory_base + 4)
    );
}

/// A non-PIE main carrying libc owns the heap from its `__heap_base`; wasi-libc's allocator
/// takes all memory up to the memory's size at its first call. Started right after the
/// main's memory is adopted, before memory grows for the libraries, it grows past them.
/// Only a main exporting both `malloc` and `free` of the pointer type is asked to.
#[test]
fn a_non_pie_main_allocator_starts_before_libraries_take_memory() {
    let main_with = |exports: &str| {
        wat(&format!(
            r#"(module
          (import "env" "greet" (func $greet (result i32)))
          {exports}
          (memory (export "memory") 2)
          (table (export "__indirect_function_table") 1 funcref)
          (global $sp (export "__stack_pointer") (mut i32) (i32.const 65536))
          (func (export "_start") call $greet drop))"#
        ))
    };
    let lib = side(
        16,
        0,
        &[],
        r#"(func (export "greet") (result i32) i32.const 7)"#,
    );
    let src = source(&[("/lib/libgreet.so", lib)]);
    let allocator = r#"(func (export "malloc") (param i32) (result i32) i32.const 1024)
          (func (export "free") (param i32))"#;
    // (the main's allocator, whether it is started, whether the user is told it cannot be)
    let cases = [
        (allocator, true, false),
        // No free, a malloc of the wrong type: not an allocator it can start; the user is
        // told when the main defines a `malloc` (its name section says so).
        (
            r#"(func $malloc (export "malloc") (param i32) (result i32) i32.const 0)"#,
            false,
            true,
        ),
        (
            r#"(func (export "malloc") (param i64) (result i64) i64.const 0)
          (func (export "free") (param i64))"#,
            false,
            false,
        ),
        (
            r#"(func $malloc (param i32) (result i32) i32.const 0) (func $free (param i32))"#,
            false,
            true,
        ),
        // An allocator the main imports (from a library) and exports again, or only imports.
        (
            r#"(import "env" "malloc" (func $m (param i32) (result i32)))
          (export "malloc" (func $m))
          (func (export "free") (param i32))"#,
            false,
            false,
        ),
        (
            r#"(import "env" "malloc" (func $malloc (param i32) (result i32)))"#,
            false,
            false,
        ),
    ];
    for (exports, starts, warns) in cases {
        let mut l = Linker::new(Config {
            preload: vec!["libgreet.so".into()],
            ..Config::default()
        });
        let mut sim = Sim::default();
        let plan = startup(&mut l, &mut sim, main_with(exports), &src, &NoHost);
        let kinds: Vec<String> = (plan.ops.iter())
            .map(|o| o.to_string().split(' ').next().unwrap().to_string())
            .collect();
        let adopt = kinds.iter().position(|k| k == "adopt-table").unwrap();
        let started = kinds.iter().position(|k| k == "start-allocator");
        if starts {
            assert_eq!(started, Some(adopt + 1), "{plan}");
            assert_eq!(kinds[adopt + 2], "grow-memory", "{plan}");
            assert!(
                sim.groups[&MAIN_GROUP]
                    .calls
                    .contains(&"m0.free(m0.malloc(0))".into())
            );
        } else {
            assert_eq!(started, None, "{plan}");
        }
        let warned = (plan.diagnostics.iter()).any(
            |d| matches!(d, Diagnostic::AllocatorNotExported { module } if module == "/app/main.wasm"),
        );
        assert_eq!(warned, warns, "{exports}: {:?}", plan.diagnostics);
        if let Some(at) = started {
            // A guest call on the shared memory: a thread's new group does not replay it.
            assert!(plan.ops[at].is_guest_call() && plan.ops[at].is_memory_op());
        }
        commit(&mut l, plan);
    }
}

#[test]
fn instance_groups_replay_the_log_with_their_own_tls() {
    let tls_lib = wat(r#"(module
      (@dylink.0 (mem-info (memory 8 2)) (export-info "tv" tls))
      (import "env" "memory" (memory 1 100 shared))
      (import "env" "__memory_base" (global i32))
      (global $tls_base (export "__tls_base") (mut i32) (i32.const 0))
      (global (export "__tls_size") i32 (i32.const 16))
      (global (export "__tls_align") i32 (i32.const 8))
      (global (export "tv") i32 (i32.const 4))
      (func (export "__wasm_init_tls") (param i32) local.get 0 global.set $tls_base)
      (func (export "__wasm_call_ctors")))"#);
    let user = wat(r#"(module
      (@dylink.0 (mem-info (memory 0 0)) (needed "libtls.so"))
      (import "env" "memory" (memory 1 100 shared))
      (import "GOT.mem" "tv" (global (mut i32))))"#);
    let main = wat(r#"(module
      (@dylink.0 (mem-info (memory 0 0)) (needed "libuser.so"))
      (import "env" "memory" (memory 1 100 shared))
      (import "env" "__indirect_function_table" (table 0 funcref))
      (func (export "_start")))"#);
    let src = source(&[("/lib/libtls.so", tls_lib), ("/lib/libuser.so", user)]);
    let mut l = Linker::new(Config::default());
    let mut sim = Sim::default();
    let plan = startup(&mut l, &mut sim, main, &src, &NoHost);
    let ops0 = plan.ops.clone();
    commit(&mut l, plan);
    let (tls_id, user_id) = (ModuleId(2), ModuleId(1));
    let block0 = l.tls_block(MAIN_GROUP, tls_id).unwrap();
    assert_eq!(
        got_value(&ops0, &sim, MAIN_GROUP, user_id, "GOT.mem", "tv"),
        Some(block0.0 + 4)
    );
    // A new group: same slots and modules, its own TLS block and TLS GOT values.
    let plan = l.plan_group(facts(&sim)).unwrap();
    let g1 = plan.group();
    let ops1 = plan.ops.clone();
    sim.apply(&plan).unwrap_or_else(|e| panic!("{e}\n{plan}"));
    commit(&mut l, plan);
    let block1 = l.tls_block(g1, tls_id).unwrap();
    assert_ne!(block0, block1);
    assert_eq!(
        got_value(&ops1, &sim, g1, user_id, "GOT.mem", "tv"),
        Some(block1.0 + 4)
    );
    assert!(
        sim.groups[&g1]
            .calls
            .contains(&format!("{tls_id}.__wasm_init_tls({block1})"))
    );
    assert!(
        !sim.groups[&g1].calls.iter().any(|c| c.contains("ctors")),
        "constructors are not re-run"
    );
    assert_eq!(
        sim.groups[&g1].table.len(),
        sim.groups[&MAIN_GROUP].table.len()
    );
    // A dlopen in group 0 reaches group 1 through its pending ops.
    let extra = wat(
        r#"(module (@dylink.0 (mem-info (memory 0 0))) (import "env" "memory" (memory 1 100 shared)) (func (export "x")))"#,
    );
    let mut src2 = src.clone();
    src2.insert("/lib/libx.so", extra);
    let (pending, cursor) = l.pending_ops(g1).unwrap();
    assert!(pending.is_empty());
    l.caught_up(g1, cursor);
    // Creating the group grew memory (a shared-memory op only): the main group is not left
    // behind and can still commit its own plans.
    assert!(l.pending_ops(MAIN_GROUP).unwrap().0.is_empty());
    let plan = l
        .plan_dlopen(
            Some("libx.so"),
            rtld::NOW,
            None,
            MAIN_GROUP,
            facts(&sim),
            &src2,
            &NoHost,
        )
        .unwrap();
    sim.apply(&plan).unwrap();
    l.commit(plan).expect("the main group is caught up");
    let (pending, cursor) = l.pending_ops(g1).unwrap();
    assert!(
        pending.iter().any(|o| matches!(o, Op::Instantiate { .. })),
        "{pending:?}"
    );
    sim.apply_ops(g1, &pending).unwrap();
    l.caught_up(g1, cursor);
    // Exit frees the group's blocks.
    let plan = l.plan_group_exit(g1).unwrap();
    commit(&mut l, plan);
    assert!(l.tls_block(g1, tls_id).is_none());
}

#[test]
fn threads_that_come_and_go_leave_nothing_behind() {
    let tls_lib = wat(r#"(module
      (@dylink.0 (mem-info (memory 8 2)) (export-info "tv" tls))
      (import "env" "memory" (memory 1 100 shared))
      (import "env" "__memory_base" (global i32))
      (global $tls_base (export "__tls_base") (mut i32) (i32.const 0))
      (global (export "__tls_size") i32 (i32.const 16))
      (global (export "__tls_align") i32 (i32.const 8))
      (global (export "tv") i32 (i32.const 4))
      (func (export "__wasm_init_tls") (param i32) local.get 0 global.set $tls_base))"#);
    let main = wat(r#"(module
      (@dylink.0 (mem-info (memory 0 0)) (needed "libtls.so"))
      (import "env" "memory" (memory 1 100 shared))
      (import "env" "__indirect_function_table" (table 0 funcref))
      (func (export "_start")))"#);
    let src = source(&[("/lib/libtls.so", tls_lib)]);
    let mut l = Linker::new(Config::default());
    let mut sim = Sim::default();
    let plan = startup(&mut l, &mut sim, main, &src, &NoHost);
    commit(&mut l, plan);
    let cycle = |l: &mut Linker, sim: &mut Sim| {
        let plan = l.plan_group(facts(sim)).unwrap();
        let g = plan.group();
        sim.apply(&plan).unwrap();
        commit(l, plan);
        let plan = l.plan_group_exit(g).unwrap();
        commit(l, plan);
        g
    };
    let first = cycle(&mut l, &mut sim);
    let (state, bytes) = (l.to_string(), l.memory_bytes());
    let mut last = first;
    for _ in 0..1000 {
        last = cycle(&mut l, &mut sim);
    }
    assert_eq!(last.0, first.0 + 1000, "ids are not reused");
    assert_eq!(l.groups().collect::<Vec<_>>(), vec![MAIN_GROUP]);
    assert_eq!(l.memory_bytes(), bytes, "TLS blocks are reused");
    assert_eq!(
        l.to_string(),
        state,
        "the state is as after the first thread"
    );
    assert!(l.tls_block(last, ModuleId(1)).is_none());
    assert!(
        l.plan_group_exit(last).is_err(),
        "an exited group stays invalid"
    );
}

/// A started shared-memory program, and a source with `libwork.so` (exports `work`).
fn threaded_program_with_libwork() -> (Linker, Sim, MemorySource) {
    let shared_main = wat(r#"(module
      (@dylink.0 (mem-info (memory 0 0)))
      (import "env" "memory" (memory 1 100 shared))
      (import "env" "__indirect_function_table" (table 0 funcref))
      (func (export "_start")))"#);
    let lib = wat(r#"(module
      (@dylink.0 (mem-info (memory 16 2)))
      (import "env" "memory" (memory 1 100 shared))
      (import "env" "__memory_base" (global i32))
      (func (export "work") (result i32) i32.const 5))"#);
    let src = source(&[("/lib/libwork.so", lib)]);
    let mut l = Linker::new(Config::default());
    let mut sim = Sim::default();
    let plan = startup(&mut l, &mut sim, shared_main, &src, &NoHost);
    commit(&mut l, plan);
    (l, sim, src)
}

#[test]
fn a_dlopen_in_one_group_reaches_the_others() {
    // Group 1 dlopens and takes a function pointer.
    let (mut l, mut sim, g1, h) = second_group_dlopens_libwork();
    let DlsymAnswer::Plan(plan) = l.plan_dlsym(Handle::Module(h), "work", None, g1).unwrap() else {
        panic!()
    };
    sim.apply(&plan).unwrap();
    let Outcome::Symbol(SymbolValue::Func(slot)) = commit(&mut l, plan) else {
        panic!()
    };
    // Group 0 catches up: same module, same slot content, no memory ops repeated.
    let (ops, cursor) = l.pending_ops(MAIN_GROUP).unwrap();
    assert!(ops.iter().all(|o| !o.is_memory_op()), "{ops:?}");
    sim.apply_ops(MAIN_GROUP, &ops).unwrap();
    l.caught_up(MAIN_GROUP, cursor);
    assert_eq!(
        sim.groups[&MAIN_GROUP].table[slot.0 as usize],
        sim.groups[&g1].table[slot.0 as usize]
    );
    assert_eq!(sim.groups[&MAIN_GROUP].table, sim.groups[&g1].table);
    assert!(l.pending_ops(MAIN_GROUP).unwrap().0.is_empty());
}

#[test]
fn the_log_forgets_unloaded_libraries_once_every_group_has_seen_them_go() {
    let (mut l, mut sim, src) = threaded_program_with_libwork();
    let plan = l.plan_group(facts(&sim)).unwrap();
    let lagging = plan.group();
    sim.apply(&plan).unwrap();
    commit(&mut l, plan);
    let bootstrap_len = |l: &Linker, sim: &Sim| l.plan_group(facts(sim)).unwrap().ops.len();
    // Load, take a function pointer, unload: ten times, while one group never catches up.
    let cycle = |l: &mut Linker, sim: &mut Sim| {
        let h = dlopen_applied(l, sim, &src, "libwork.so", rtld::NOW, MAIN_GROUP);
        let DlsymAnswer::Plan(plan) = l
            .plan_dlsym(Handle::Module(h), "work", None, MAIN_GROUP)
            .unwrap()
        else {
            panic!()
        };
        sim.apply(&plan).unwrap();
        commit(l, plan);
        let plan = l.plan_dlclose(h, MAIN_GROUP).unwrap();
        sim.apply(&plan).unwrap();
        commit(l, plan);
        h
    };
    let first = cycle(&mut l, &mut sim);
    // (The first cycle leaves a constant global for the library's memory base: an address
    // reused by every later load.)
    let fresh = bootstrap_len(&l, &sim);
    for _ in 1..10 {
        cycle(&mut l, &mut sim);
    }
    // A new group skips what was unloaded, though the log still holds it for the laggard.
    assert_eq!(bootstrap_len(&l, &sim), fresh);
    let (ops, cursor) = l.pending_ops(lagging).unwrap();
    let count = |f: fn(&Op) -> bool| ops.iter().filter(|o| f(o)).count();
    assert_eq!(count(|o| matches!(o, Op::Instantiate { .. })), 10);
    assert_eq!(count(|o| matches!(o, Op::Unload { .. })), 10);
    assert!(
        l.may_instantiate(first),
        "the laggard may still replay its load: adapters keep its code"
    );
    assert_eq!(l.take_uninstantiable(), vec![]);
    sim.apply_ops(lagging, &ops).unwrap();
    l.caught_up(lagging, cursor);
    assert_eq!(sim.groups[&lagging].table, sim.groups[&MAIN_GROUP].table);
    assert!(
        !l.may_instantiate(first),
        "no group can instantiate it any more"
    );
    // Each unloaded library is handed out once, for the adapter to drop its code.
    let gone = l.take_uninstantiable();
    assert_eq!(gone.len(), 10);
    assert_eq!(gone[0], first);
    assert!(gone.iter().all(|m| !l.may_instantiate(*m)));
    assert_eq!(l.take_uninstantiable(), vec![]);
    // Everyone has seen the unloads: the log keeps nothing of them.
    let state = l.to_string();
    for _ in 0..100 {
        cycle(&mut l, &mut sim);
        let (ops, cursor) = l.pending_ops(lagging).unwrap();
        sim.apply_ops(lagging, &ops).unwrap();
        l.caught_up(lagging, cursor);
    }
    assert_eq!(bootstrap_len(&l, &sim), fresh);
    assert!(l.pending_ops(lagging).unwrap().0.is_empty());
    assert_eq!(l.to_string(), state);
    assert_eq!(l.take_uninstantiable().len(), 100);
    assert_eq!(sim.groups[&lagging].table, sim.groups[&MAIN_GROUP].table);
}

/// A group made now: its table, globals and instances must be the main group's (checked
/// by the caller), then it exits.
fn new_group_matches_main(l: &mut Linker, sim: &mut Sim, when: &str) {
    let plan = l.plan_group(facts(sim)).unwrap();
    let g = plan.group();
    sim.apply(&plan).unwrap();
    commit(l, plan);
    let (new, main) = (&sim.groups[&g], &sim.groups[&MAIN_GROUP]);
    assert_eq!(new.table, main.table, "{when}: table");
    let mut ids: Vec<_> = new.instances.keys().collect();
    let mut main_ids: Vec<_> = main.instances.keys().collect();
    ids.sort();
    main_ids.sort();
    assert_eq!(ids, main_ids, "{when}: instances");
    for (id, v) in &new.globals {
        assert_eq!(main.globals.get(id), Some(v), "{when}: global {id:?}");
    }
    let plan = l.plan_group_exit(g).unwrap();
    sim.apply(&plan).unwrap();
    commit(l, plan);
}

#[test]
fn a_thread_started_between_loads_and_unloads_gets_the_table_the_others_have() {
    // Startup: libside waits for `later_fn`, which libdef defines; libwork is loaded and
    // unloaded beside it. Compactions pass over entries they compacted already unless a
    // newer entry writes their slots (the waiting slot) or unloads their modules.
    let side = shared(&side_src(
        16,
        0,
        &[],
        r#"(import "env" "later_fn" (func $later (param i32) (result i32)))
           (import "GOT.func" "later_fn" (global (mut i32)))
           (func (export "side_fn") (result i32) i32.const 2 call $later)"#,
    ));
    let def = shared(&side_src(
        16,
        0,
        &[],
        r#"(func (export "later_fn") (param i32) (result i32) local.get 0)
           (func (export "def_other") (result i32) i32.const 7)"#,
    ));
    let work = shared(&side_src(
        16,
        1,
        &[],
        r#"(import "env" "side_fn" (func (result i32)))
           (func (export "work") (result i32) call 0)"#,
    ));
    let plain = shared(&side_src(
        16,
        0,
        &[],
        r#"(func (export "plain") (result i32) i32.const 3)"#,
    ));
    let main = shared(&pie_main_src(16, &["libside.so"], ""));
    let src = source(&[
        ("/lib/libside.so", side),
        ("/lib/libdef.so", def),
        ("/lib/libwork.so", work),
        ("/lib/libplain.so", plain),
    ]);
    let mut l = Linker::new(Config::default());
    let mut sim = Sim::default();
    let plan = startup(&mut l, &mut sim, main, &src, &NoHost);
    commit(&mut l, plan);
    let pointer = |l: &mut Linker, sim: &mut Sim, h: ModuleId, name: &str| {
        if let DlsymAnswer::Plan(plan) = l
            .plan_dlsym(Handle::Module(h), name, None, MAIN_GROUP)
            .unwrap()
        {
            sim.apply(&plan).unwrap();
            commit(l, plan);
        }
    };
    let close = |l: &mut Linker, sim: &mut Sim, h: ModuleId| {
        let plan = l.plan_dlclose(h, MAIN_GROUP).unwrap();
        sim.apply(&plan).unwrap();
        commit(l, plan);
    };
    new_group_matches_main(&mut l, &mut sim, "after startup");
    // A first unload compacts the startup entry, its waiting slot's write included, and
    // libplain's load: that entry writes no slot, only its unload finds it.
    let plain = dlopen_applied(&mut l, &mut sim, &src, "libplain.so", rtld::NOW, MAIN_GROUP);
    let work = dlopen_applied(&mut l, &mut sim, &src, "libwork.so", rtld::NOW, MAIN_GROUP);
    close(&mut l, &mut sim, work);
    new_group_matches_main(&mut l, &mut sim, "after a first unload");
    close(&mut l, &mut sim, plain);
    new_group_matches_main(&mut l, &mut sim, "after unloading a library with no slots");
    // A group that catches up only now and then keeps entries uncompacted for a while.
    let plan = l.plan_group(facts(&sim)).unwrap();
    let lagging = plan.group();
    sim.apply(&plan).unwrap();
    commit(&mut l, plan);
    let mut log_lens = Vec::new();
    for round in 0..12 {
        let def = dlopen_applied(
            &mut l,
            &mut sim,
            &src,
            "libdef.so",
            rtld::NOW | rtld::GLOBAL,
            MAIN_GROUP,
        );
        pointer(&mut l, &mut sim, def, "def_other");
        let work = dlopen_applied(&mut l, &mut sim, &src, "libwork.so", rtld::NOW, MAIN_GROUP);
        pointer(&mut l, &mut sim, work, "work");
        new_group_matches_main(&mut l, &mut sim, &format!("round {round}, both loaded"));
        // Unload in either order.
        let (first, second) = if round % 2 == 0 {
            (def, work)
        } else {
            (work, def)
        };
        close(&mut l, &mut sim, first);
        new_group_matches_main(&mut l, &mut sim, &format!("round {round}, one unloaded"));
        close(&mut l, &mut sim, second);
        new_group_matches_main(&mut l, &mut sim, &format!("round {round}, both unloaded"));
        if round % 3 == 2 && round < 6 {
            let (ops, cursor) = l.pending_ops(lagging).unwrap();
            sim.apply_ops(lagging, &ops).unwrap();
            l.caught_up(lagging, cursor);
            assert_eq!(sim.groups[&lagging].table, sim.groups[&MAIN_GROUP].table);
            log_lens.push(l.plan_group(facts(&sim)).unwrap().ops.len());
        }
        if round == 6 {
            // Then it leaves: later rounds compact as they go.
            let plan = l.plan_group_exit(lagging).unwrap();
            sim.apply(&plan).unwrap();
            commit(&mut l, plan);
        }
        if round >= 6 {
            log_lens.push(l.plan_group(facts(&sim)).unwrap().ops.len());
        }
    }
    // What a new group replays does not grow with the rounds.
    assert!(log_lens.windows(2).all(|w| w[0] == w[1]), "{log_lens:?}");
}

#[test]
fn destructors_run_in_a_plan_of_their_own_before_the_dlclose_unloads() {
    let (mut l, mut sim) = program_with_heap();
    // libdtor has destructors and needs libplain; libplain has none.
    let dtor = side(
        16,
        0,
        &["libplain.so"],
        r#"(func (export "__wasm_call_dtors"))"#,
    );
    let plain = side(
        16,
        0,
        &[],
        r#"(func (export "plain") (result i32) i32.const 1)"#,
    );
    let src = source(&[("/lib/libdtor.so", dtor), ("/lib/libplain.so", plain)]);
    let h = dlopen_applied(&mut l, &mut sim, &src, "libdtor.so", rtld::NOW, MAIN_GROUP);
    let before = l.module(h).unwrap().refs;
    // First the destructors: guest calls only, all after the commit; nothing released.
    let plan = l.plan_dlclose(h, MAIN_GROUP).unwrap();
    assert_eq!(plan.kind(), PlanKind::Destructors);
    assert_eq!(plan.guest_tail(), 0, "every op runs after the commit");
    assert_eq!(
        plan.ops.as_slice(),
        [Op::Call {
            module: h,
            func: InitCall::CallDtors
        }]
    );
    sim.apply(&plan).unwrap();
    commit(&mut l, plan);
    let m = l.module(h).unwrap();
    assert!(
        m.finalized && m.refs == before,
        "loaded, its destructors marked as run"
    );
    // Then the dlclose proper: no destructor runs twice; both libraries go.
    let plan = l.plan_dlclose(h, MAIN_GROUP).unwrap();
    assert_eq!(plan.kind(), PlanKind::Dlclose);
    assert!(!plan.ops.iter().any(|op| op.is_guest_call()), "{plan}");
    sim.apply(&plan).unwrap();
    commit(&mut l, plan);
    assert!(l.module(h).is_none());
    assert_eq!(l.modules().count(), 1, "only the main module is left");
    // A dlclose that unloads nothing with destructors is one plan, as before; so is one of
    // a library with a `__dso_handle` but no `__cxa_finalize` anywhere to pass it to.
    let h = dlopen_applied(&mut l, &mut sim, &src, "libplain.so", rtld::NOW, MAIN_GROUP);
    assert_eq!(
        l.plan_dlclose(h, MAIN_GROUP).unwrap().kind(),
        PlanKind::Dlclose
    );
    let dso = side(
        16,
        0,
        &[],
        r#"(global (export "__dso_handle") i32 (i32.const 0))"#,
    );
    let src = source(&[("/lib/libdso.so", dso)]);
    let h = dlopen_applied(&mut l, &mut sim, &src, "libdso.so", rtld::NOW, MAIN_GROUP);
    assert_eq!(
        l.plan_dlclose(h, MAIN_GROUP).unwrap().kind(),
        PlanKind::Dlclose
    );
}

#[test]
fn closures_allocate_batches_and_free_for_reuse() {
    let (mut l, mut sim) = program_with_heap();
    let plan = l.plan_closures(8, MAIN_GROUP).unwrap();
    sim.apply(&plan).unwrap();
    let Outcome::Slots(first, 8) = commit(&mut l, plan) else {
        panic!()
    };
    let plan = l
        .plan_set_closure(
            first,
            SlotValue::Export {
                module: ModuleId(0),
                name: "main_fn".into(),
            },
            MAIN_GROUP,
        )
        .unwrap();
    sim.apply(&plan).unwrap();
    commit(&mut l, plan);
    assert_eq!(
        sim.groups[&MAIN_GROUP].table[first.0 as usize].as_deref(),
        Some("m0.main_fn")
    );
    let plan = l.plan_free_closures(first, 8, MAIN_GROUP).unwrap();
    sim.apply(&plan).unwrap();
    commit(&mut l, plan);
    assert!(
        l.plan_set_closure(first, SlotValue::Null, MAIN_GROUP)
            .is_err()
    );
    let plan = l.plan_closures(8, MAIN_GROUP).unwrap();
    let Outcome::Slots(again, _) = commit(&mut l, plan) else {
        panic!()
    };
    assert_eq!(again, first, "freed slots are reused");
}

#[test]
fn stale_plans_are_refused() {
    let (mut l, sim) = program_with_heap();
    let src = plugin_source();
    let a = l
        .plan_dlopen(
            Some("libutil.so"),
            rtld::NOW,
            None,
            MAIN_GROUP,
            facts(&sim),
            &src,
            &NoHost,
        )
        .unwrap();
    let b = l
        .plan_dlopen(
            Some("libutil.so"),
            rtld::NOW,
            None,
            MAIN_GROUP,
            facts(&sim),
            &src,
            &NoHost,
        )
        .unwrap();
    commit(&mut l, a);
    assert_eq!(l.commit(b).unwrap_err(), Error::StalePlan);
}

#[test]
fn a_threaded_program_gets_a_commit_counter_and_its_safe_points_are_bound() {
    // A library that calls through a function pointer and calls `later`, which nothing
    // defines yet (a trampoline).
    let caller = wat(r#"(module
      (@dylink.0 (mem-info (memory 16 2)))
      (import "env" "memory" (memory 1 100 shared))
      (import "env" "__indirect_function_table" (table 0 funcref))
      (import "env" "__memory_base" (global i32))
      (import "env" "later" (func $later (param i32) (result i32)))
      (type $t (func (param i32) (result i32)))
      (func (export "call") (param i32) (result i32)
        (call $later (call_indirect (type $t) (i32.const 1) (local.get 0)))))"#);
    let main = wat(r#"(module
      (@dylink.0 (mem-info (memory 0 0)) (needed "libcaller.so"))
      (import "env" "memory" (memory 1 100 shared))
      (import "env" "__indirect_function_table" (table 0 funcref))
      (func (export "_start")))"#);
    let src = source(&[("/lib/libcaller.so", caller)]);
    let mut l = Linker::new(Config::default());
    let mut sim = Sim::default();
    let plan = startup(&mut l, &mut sim, main, &src, &NoHost);
    let ops = plan.ops.clone();
    commit(&mut l, plan);

    let counter = l
        .commit_counter()
        .expect("a shared-memory program has a counter");
    assert_eq!(counter % 8, 0);
    let (dlerror, _) = l.dlerror_buffer(MAIN_GROUP).unwrap();
    assert!(counter + 8 <= dlerror.0, "placed before the dlerror buffer");
    for m in l.modules() {
        let end = m.memory_base + m.memory_size;
        assert!(
            counter + 8 <= m.memory_base || counter >= end,
            "{} overlaps",
            m.path
        );
    }

    // The library's appended imports: catch-up, its group's `seen`, the counter's address.
    let lib = ModuleId(1);
    let info = sim.modules[&lib].clone();
    let bindings = ops
        .iter()
        .find_map(|o| match o {
            Op::Instantiate { module, imports } if *module == lib => Some(imports.clone()),
            _ => None,
        })
        .unwrap();
    let role = |r: ImportRole| info.imports.iter().position(|i| i.role == r).unwrap();
    assert_eq!(bindings[role(ImportRole::CatchUp)], Binding::CatchUp);
    assert_eq!(bindings[role(ImportRole::Seen)], Binding::Seen);
    assert_eq!(
        got_value(&ops, &sim, MAIN_GROUP, lib, "dylink", "commit_counter"),
        Some(counter)
    );
    // The trampoline for `later` checks too: it imports the memory and the same three.
    let tramp = ops
        .iter()
        .find_map(|o| match o {
            Op::InstantiateGenerated { imports, bytes, .. } => {
                Some((imports.clone(), bytes.clone()))
            }
            _ => None,
        })
        .unwrap();
    assert!(matches!(
        &tramp.0[1..],
        [
            Binding::Memory,
            Binding::CatchUp,
            Binding::Seen,
            Binding::Global(_)
        ]
    ));
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(&tramp.1)
        .expect("checked trampolines validate");

    // A program without a shared memory has none of it.
    let mut l = Linker::new(Config::default());
    let mut sim = Sim::default();
    let unshared = |s: &str| wat(&s.replace(" 1 100 shared", " 1"));
    let src = source(&[(
        "/lib/libcaller.so",
        unshared(
            r#"(module
      (@dylink.0 (mem-info (memory 16 2)))
      (import "env" "memory" (memory 1 100 shared))
      (import "env" "__indirect_function_table" (table 0 funcref))
      (type $t (func (param i32) (result i32)))
      (func (export "call") (param i32) (result i32)
        (call_indirect (type $t) (i32.const 1) (local.get 0))))"#,
        ),
    )]);
    let main = unshared(
        r#"(module
      (@dylink.0 (mem-info (memory 0 0)) (needed "libcaller.so"))
      (import "env" "memory" (memory 1 100 shared))
      (import "env" "__indirect_function_table" (table 0 funcref))
      (func (export "_start")))"#,
    );
    let plan = startup(&mut l, &mut sim, main, &src, &NoHost);
    assert!(!plan.ops.iter().any(|o| matches!(o, Op::Instantiate { imports, .. } if imports.iter().any(|b| matches!(b, Binding::CatchUp | Binding::Seen)))));
    commit(&mut l, plan);
    assert_eq!(l.commit_counter(), None);
}
