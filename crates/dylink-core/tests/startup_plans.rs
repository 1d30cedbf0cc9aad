//! Startup plans kept in the module cache: a program started again gets the plan made the
//! first time only while every file and host name that plan depended on reads the same.

mod common;

use std::sync::Arc;

use common::*;
use dylink_core::*;

const MAIN_PATH: &str = "/app/main.wasm";

fn main_module() -> Arc<[u8]> {
    pie_main(
        64,
        &["liba.so"],
        r#"(import "env" "a" (func (result i32)))
           (import "env" "host_clock" (func (result i64)))
           (import "GOT.mem" "a_data" (global (mut i32)))"#,
    )
}

/// `liba.so`, whose data size grows with `value` (so a changed library plans differently).
fn lib_a(value: i32) -> Arc<[u8]> {
    side(
        32 + 16 * value as u32,
        1,
        &["libb.so"],
        &format!(
            r#"(import "env" "b" (func $b (result i32)))
               (func (export "a") (result i32) call $b i32.const {value} i32.add)
               (global (export "a_data") i32 (i32.const 4))"#
        ),
    )
}

fn lib_b() -> Arc<[u8]> {
    side(
        16,
        0,
        &[],
        r#"(func (export "b") (result i32) i32.const 2)"#,
    )
}

fn files(a: Arc<[u8]>) -> MemorySource {
    let mut src = MemorySource::new();
    src.insert("/lib/liba.so", a);
    src.insert("/lib/libb.so", lib_b());
    src
}

fn clock_host() -> HostSet {
    let mut host = HostSet::new();
    host.insert("env", "host_clock");
    host
}

fn config(cache: &ModuleCache) -> Config {
    Config {
        module_cache: Some(cache.clone()),
        ..Config::default()
    }
}

/// Plan a startup on a new linker, apply it to a simulated store, commit it; the plan's text
/// and the committed linker.
fn run(
    config: &Config,
    main: Arc<[u8]>,
    src: &MemorySource,
    host: &dyn HostNames,
) -> (String, Linker) {
    let mut linker = Linker::new(config.clone());
    let plan = (linker.plan_startup(MAIN_PATH, main, src, host)).unwrap_or_else(|e| panic!("{e}"));
    let text = plan.to_string();
    Sim::default()
        .apply(&plan)
        .unwrap_or_else(|e| panic!("{e}\n{plan}"));
    linker.commit(plan).unwrap();
    (text, linker)
}

#[test]
fn a_program_started_again_gets_the_same_plan_and_ends_in_the_same_state() {
    let cache = ModuleCache::new(1 << 20);
    let cfg = config(&cache);
    let src = files(lib_a(1));
    let (first, l1) = run(&cfg, main_module(), &src, &clock_host());
    assert_eq!((cache.startup_plans(), cache.startup_hits()), (1, 0));
    // The same program from fresh copies of its bytes.
    let copies = files(lib_a(1).to_vec().into());
    let (again, l2) = run(&cfg, main_module().to_vec().into(), &copies, &clock_host());
    assert_eq!(cache.startup_hits(), 1);
    assert_eq!(first, again);
    assert!(l1 == l2, "the committed linkers differ");
    // And what planning afresh gives.
    let (afresh, l3) = run(&Config::default(), main_module(), &src, &clock_host());
    assert_eq!(first, afresh);
    assert_eq!(l3.to_string(), l2.to_string());
    // A linker started from the stored plan goes on as any other: a plugin lands after
    // everything the plan laid out.
    let mut with_plugin = files(lib_a(1));
    with_plugin.insert("/lib/libplug.so", side(8, 1, &["liba.so"], ""));
    let mut linker = Linker::new(cfg.clone());
    let mut sim = Sim::default();
    let plan =
        (linker.plan_startup(MAIN_PATH, main_module(), &with_plugin, &clock_host())).unwrap();
    sim.apply(&plan).unwrap();
    linker.commit(plan).unwrap();
    assert_eq!(cache.startup_hits(), 2);
    let facts = Facts {
        memory_bytes: linker.memory_bytes(),
    };
    let open = linker
        .plan_dlopen(
            Some("libplug.so"),
            rtld::NOW,
            None,
            MAIN_GROUP,
            facts,
            &with_plugin,
            &NoHost,
        )
        .unwrap();
    sim.apply(&open).unwrap_or_else(|e| panic!("{e}\n{open}"));
    let Outcome::Loaded(plug) = linker.commit(open).unwrap() else {
        panic!("no handle")
    };
    let top = (linker.modules())
        .filter(|m| m.id != plug)
        .map(|m| m.memory_base)
        .max()
        .unwrap();
    assert!(linker.module(plug).unwrap().memory_base > top);
}

#[test]
fn a_changed_library_is_planned_afresh_and_replaces_the_stored_plan() {
    let cache = ModuleCache::new(1 << 20);
    let cfg = config(&cache);
    let (first, _) = run(&cfg, main_module(), &files(lib_a(1)), &clock_host());
    let changed = files(lib_a(5));
    let (second, _) = run(&cfg, main_module(), &changed, &clock_host());
    assert_eq!(cache.startup_hits(), 0);
    assert_ne!(first, second);
    assert_eq!(
        second,
        run(&Config::default(), main_module(), &changed, &clock_host()).0
    );
    assert_eq!(
        cache.startup_plans(),
        1,
        "the new plan replaces the old one"
    );
    run(&cfg, main_module(), &changed, &clock_host());
    assert_eq!(cache.startup_hits(), 1);
}

#[test]
fn a_library_appearing_earlier_in_the_search_is_found() {
    let cache = ModuleCache::new(1 << 20);
    let mut cfg = config(&cache);
    cfg.search.library_path = vec!["/opt/lib".into()];
    let mut src = files(lib_a(1));
    let (first, _) = run(&cfg, main_module(), &src, &clock_host());
    assert!(first.contains("/lib/liba.so"));
    src.insert("/opt/lib/liba.so", lib_a(1));
    let (second, l) = run(&cfg, main_module(), &src, &clock_host());
    assert_eq!(cache.startup_hits(), 0);
    assert!(
        l.modules().any(|m| m.path == "/opt/lib/liba.so"),
        "{second}"
    );
}

#[test]
fn a_library_gone_fails_as_it_would_without_the_cache() {
    let cache = ModuleCache::new(1 << 20);
    let cfg = config(&cache);
    run(&cfg, main_module(), &files(lib_a(1)), &clock_host());
    let mut only_a = MemorySource::new();
    only_a.insert("/lib/liba.so", lib_a(1));
    let err = Linker::new(cfg.clone())
        .plan_startup(MAIN_PATH, main_module(), &only_a, &clock_host())
        .unwrap_err();
    assert!(
        matches!(err, Error::NotFound { ref name, .. } if name == "libb.so"),
        "{err}"
    );
    assert_eq!((cache.startup_hits(), cache.startup_plans()), (0, 1));
    // A source that cannot be read is not taken for an unchanged one either.
    struct Broken;
    impl ModuleSource for Broken {
        fn read(&self, path: &str) -> Result<Option<Arc<[u8]>>, String> {
            Err(format!("{path}: permission denied"))
        }
    }
    let err = Linker::new(cfg)
        .plan_startup(MAIN_PATH, main_module(), &Broken, &clock_host())
        .unwrap_err();
    assert!(matches!(err, Error::Source { .. }), "{err}");
    assert_eq!(cache.startup_hits(), 0);
}

#[test]
fn a_host_that_changed_what_it_defines_gets_a_new_plan() {
    let cache = ModuleCache::new(1 << 20);
    let cfg = config(&cache);
    let src = files(lib_a(1));
    let (with_clock, _) = run(&cfg, main_module(), &src, &clock_host());
    // Nothing defines `host_clock` now: bound lazily, to a slot that traps.
    let (without, _) = run(&cfg, main_module(), &src, &NoHost);
    assert_eq!(cache.startup_hits(), 0);
    assert_ne!(with_clock, without);
    assert_eq!(
        without,
        run(&Config::default(), main_module(), &src, &NoHost).0
    );
}

#[test]
fn another_configuration_or_main_module_has_its_own_plan() {
    let cache = ModuleCache::new(1 << 20);
    let cfg = config(&cache);
    let src = files(lib_a(1));
    run(&cfg, main_module(), &src, &clock_host());
    let bigger_stack = Config {
        stack_size: 2 << 20,
        ..cfg.clone()
    };
    let (text, _) = run(&bigger_stack, main_module(), &src, &clock_host());
    assert_eq!(
        text,
        run(
            &Config {
                module_cache: None,
                ..bigger_stack.clone()
            },
            main_module(),
            &src,
            &clock_host()
        )
        .0
    );
    let other_main = pie_main(
        128,
        &["liba.so"],
        r#"(import "env" "a" (func (result i32)))"#,
    );
    run(&cfg, other_main.clone(), &src, &clock_host());
    assert_eq!((cache.startup_hits(), cache.startup_plans()), (0, 3));
    run(&cfg, other_main, &src, &clock_host());
    run(&bigger_stack, main_module(), &src, &clock_host());
    assert_eq!(cache.startup_hits(), 2);
    cache.clear();
    assert_eq!(cache.startup_plans(), 0);
}

#[test]
fn turned_off_or_failed_nothing_is_kept() {
    let cache = ModuleCache::new(1 << 20);
    let src = files(lib_a(1));
    let off = Config {
        reuse_startup_plans: false,
        ..config(&cache)
    };
    run(&off, main_module(), &src, &clock_host());
    run(&off, main_module(), &src, &clock_host());
    assert_eq!((cache.startup_plans(), cache.startup_hits()), (0, 0));
    // Bound now, with nothing defining `host_clock`: an error, not a plan to keep.
    let now = Config {
        bind: BindMode::Now,
        ..config(&cache)
    };
    assert!(
        Linker::new(now)
            .plan_startup(MAIN_PATH, main_module(), &src, &NoHost)
            .is_err()
    );
    assert_eq!(cache.startup_plans(), 0);
}

#[test]
fn an_aborted_stored_plan_leaves_the_linker_as_it_was_and_can_be_had_again() {
    let cache = ModuleCache::new(1 << 20);
    let cfg = config(&cache);
    let src = files(lib_a(1));
    run(&cfg, main_module(), &src, &clock_host());
    let linker = Linker::new(cfg.clone());
    let before = linker.clone();
    let plan = linker
        .plan_startup(MAIN_PATH, main_module(), &src, &clock_host())
        .unwrap();
    linker.abort(plan);
    assert!(linker == before);
    run(&cfg, main_module(), &src, &clock_host());
    assert_eq!(cache.startup_hits(), 2);
}

#[test]
fn at_most_the_limit_of_plans_is_kept_oldest_leaving_first() {
    let cache = ModuleCache::new(1 << 20);
    let src = files(lib_a(1));
    let sized = |n: u64| Config {
        stack_size: (n + 1) << 16,
        ..config(&cache)
    };
    for n in 0..=ModuleCache::STARTUP_PLANS as u64 {
        run(&sized(n), main_module(), &src, &clock_host());
    }
    assert_eq!(cache.startup_plans(), ModuleCache::STARTUP_PLANS);
    run(&sized(0), main_module(), &src, &clock_host());
    assert_eq!(cache.startup_hits(), 0, "the oldest left");
    run(
        &sized(ModuleCache::STARTUP_PLANS as u64),
        main_module(),
        &src,
        &clock_host(),
    );
    assert_eq!(cache.startup_hits(), 1);
}

#[test]
fn a_library_whose_code_alone_changed_is_instantiated_from_its_new_bytes() {
    let cache = ModuleCache::new(1 << 20);
    let cfg = config(&cache);
    let b_returning = |v: i32| {
        side(
            16,
            0,
            &[],
            &format!(r#"(func (export "b") (result i32) i32.const {v})"#),
        )
    };
    let mut src = files(lib_a(1));
    src.insert("/lib/libb.so", b_returning(2));
    let (first, _) = run(&cfg, main_module(), &src, &clock_host());
    src.insert("/lib/libb.so", b_returning(3));
    let plan = Linker::new(cfg)
        .plan_startup(MAIN_PATH, main_module(), &src, &clock_host())
        .unwrap();
    // The same layout and ops, but the module to compile is the new one.
    assert_eq!(plan.to_string(), first);
    assert_eq!(cache.startup_hits(), 0);
    let b = plan
        .modules
        .iter()
        .find(|m| m.path == "/lib/libb.so")
        .unwrap();
    assert_eq!(b.bytes[..], b_returning(3)[..]);
    drop(plan);
}

#[test]
fn linkers_started_from_one_stored_plan_change_apart() {
    let cache = ModuleCache::new(1 << 20);
    let cfg = config(&cache);
    let mut src = files(lib_a(1));
    // A plugin that takes a function pointer and a data address from `liba.so` and needs a
    // new GOT global and slot of its own: its load changes every table the stored plan's
    // linkers share (names, canonical slots, slot uses, constant globals).
    src.insert(
        "/lib/libplug.so",
        side(
            8,
            1,
            &["liba.so"],
            r#"(import "GOT.func" "a" (global (mut i32)))
               (import "GOT.mem" "a_data" (global (mut i32)))
               (import "GOT.func" "plug" (global (mut i32)))
               (func (export "plug"))"#,
        ),
    );
    let (_, untouched) = run(&cfg, main_module(), &src, &clock_host());
    let mut changed = Linker::new(cfg.clone());
    let mut sim = Sim::default();
    let plan = (changed.plan_startup(MAIN_PATH, main_module(), &src, &clock_host())).unwrap();
    sim.apply(&plan).unwrap();
    changed.commit(plan).unwrap();
    assert_eq!(cache.startup_hits(), 1);
    let before = changed.clone();
    let facts = Facts {
        memory_bytes: changed.memory_bytes(),
    };
    let open = (changed.plan_dlopen(
        Some("libplug.so"),
        rtld::NOW | rtld::GLOBAL,
        None,
        MAIN_GROUP,
        facts,
        &src,
        &NoHost,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    sim.apply(&open).unwrap_or_else(|e| panic!("{e}\n{open}"));
    let Outcome::Loaded(plug) = changed.commit(open).unwrap() else {
        panic!("no handle")
    };
    assert!(changed.module(plug).is_some());
    assert!(changed != before, "the dlopen changed nothing");
    // The other linker started from the same plan, and a third started now, are as the
    // plan left them.
    let (_, third) = run(&cfg, main_module(), &src, &clock_host());
    assert!(
        untouched == before,
        "a dlopen in one linker changed another"
    );
    assert!(third == before, "a dlopen changed the stored plan");
    // Unloading the plugin again changes the first linker alone, too.
    let close = changed.plan_dlclose(plug, MAIN_GROUP).unwrap();
    sim.apply(&close).unwrap_or_else(|e| panic!("{e}\n{close}"));
    changed.commit(close).unwrap();
    assert!(changed.module(plug).is_none());
    assert!(untouched == before && third == before);
}
