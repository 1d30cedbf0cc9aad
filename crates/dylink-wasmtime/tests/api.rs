//! The embedder API: in-memory sources, the compile cache, errors a user reads.

use dylink_wasmtime::{MemorySource, Options, Program, compiled_modules, rtld};
use wasmtime::{Config, Engine, Linker, Store, StoreLimitsBuilder};

fn side(body: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module (@dylink.0 (mem-info (memory 8 2)))
             (import "env" "memory" (memory 1))
             (import "env" "__memory_base" (global $mb i32))
             {body})"#
    ))
    .unwrap()
}

fn main_module(needed: &str, body: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module (@dylink.0 (mem-info (memory 0 0)) (needed {needed}))
             (import "env" "memory" (memory 1))
             {body})"#
    ))
    .unwrap()
}

fn program_source() -> MemorySource {
    let mut src = MemorySource::new();
    src.insert(
        "/lib/libanswer.so",
        side(r#"(func (export "answer") (result i32) i32.const 42)"#),
    );
    src
}

#[test]
fn loads_from_memory_and_compiles_each_module_once() {
    let engine = Engine::default();
    let linker = Linker::new(&engine);
    let main = main_module(
        r#""libanswer.so""#,
        r#"(import "env" "answer" (func $a (result i32))) (func (export "run") (result i32) call $a)"#,
    );
    let mut results = Vec::new();
    let mut compiled = Vec::new();
    for _ in 0..2 {
        let before = compiled_modules(&engine);
        let mut store = Store::new(&engine, ());
        let program = Program::load(
            &mut store,
            &linker,
            Options::new(program_source()),
            "/app/main.wasm",
            &main,
        )
        .unwrap();
        let run = program
            .main_func(&mut store, "run")
            .unwrap()
            .typed::<(), i32>(&store)
            .unwrap();
        results.push(run.call(&mut store, ()).unwrap());
        // dlopen of an already loaded library compiles nothing either.
        program
            .dlopen(&mut store, Some("libanswer.so"), rtld::NOW)
            .unwrap();
        compiled.push(compiled_modules(&engine) - before);
    }
    assert_eq!(results, [42, 42]);
    assert_eq!(
        compiled[0], 2,
        "the first program compiles its main module and its library"
    );
    assert_eq!(
        compiled[1], 0,
        "a second program on the same engine reuses every compiled module"
    );
}

#[test]
fn errors_are_one_line_naming_module_symbol_and_remedy() {
    let engine = Engine::default();
    let linker = Linker::new(&engine);
    let mut store = Store::new(&engine, ());
    let main = main_module(r#""libmissing.so""#, "");
    let err = Program::load(
        &mut store,
        &linker,
        Options::new(MemorySource::new()),
        "/app/main.wasm",
        &main,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "{msg}");
    assert!(
        msg.contains("libmissing.so")
            && msg.contains("/app/main.wasm")
            && msg.contains("add its directory"),
        "{msg}"
    );

    let main = main_module(
        r#""libanswer.so""#,
        r#"(import "env" "answer" (func (param i64) (result i32)))"#,
    );
    let err = Program::load(
        &mut store,
        &linker,
        Options::new(program_source()),
        "/app/main.wasm",
        &main,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("/app/main.wasm needs `answer: (i64) -> i32` but /lib/libanswer.so exports `answer: () -> i32`"), "{msg}");

    // A host dlopen error leaves the program usable.
    let main = main_module(r#""libanswer.so""#, "");
    let program = Program::load(
        &mut store,
        &linker,
        Options::new(program_source()),
        "/app/main.wasm",
        &main,
    )
    .unwrap();
    let err = program
        .dlopen(&mut store, Some("../../etc/passwd"), rtld::NOW)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("outside the configured library roots")
            || err.to_string().contains("not found"),
        "{err}"
    );
    assert!(
        program
            .dlopen(&mut store, Some("libanswer.so"), rtld::NOW | rtld::NOLOAD)
            .is_ok()
    );
}

#[test]
fn shared_memory_without_engine_support_says_how_to_enable_it() {
    let mut config = Config::new();
    config.shared_memory(false);
    let engine = Engine::new(&config).unwrap();
    let linker = Linker::new(&engine);
    let mut store = Store::new(&engine, ());
    let main = wat::parse_str(r#"(module (@dylink.0 (mem-info (memory 0 0))) (import "env" "memory" (memory 1 100 shared)))"#).unwrap();
    let err = Program::load(
        &mut store,
        &linker,
        Options::new(MemorySource::new()),
        "/app/main.wasm",
        &main,
    )
    .unwrap_err();
    assert!(err.to_string().contains("shared_memory(true)"), "{err}");
}

#[test]
fn a_trapping_constructor_fails_the_load_with_the_trap_message() {
    let engine = Engine::default();
    let linker = Linker::new(&engine);
    let mut store = Store::new(&engine, ());
    let mut src = MemorySource::new();
    src.insert(
        "/lib/libboom.so",
        side(r#"(func (export "__wasm_call_ctors") unreachable)"#),
    );
    let main = main_module(r#""libboom.so""#, "");
    let err = Program::load(
        &mut store,
        &linker,
        Options::new(src),
        "/app/main.wasm",
        &main,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("running constructors of /lib/libboom.so") && msg.contains("unreachable"),
        "{msg}"
    );
}

/// A non-PIE main's allocator is started before its libraries are placed; one that traps
/// fails the start with the trap, naming the main.
#[test]
fn a_trapping_allocator_fails_the_start_with_the_trap_message() {
    let engine = Engine::default();
    let linker = Linker::new(&engine);
    let mut store = Store::new(&engine, ());
    let main = wat::parse_str(
        r#"(module
             (import "env" "answer" (func (result i32)))
             (memory (export "memory") 2)
             (table (export "__indirect_function_table") 1 funcref)
             (global (export "__stack_pointer") (mut i32) (i32.const 65536))
             (func (export "malloc") (param i32) (result i32) unreachable)
             (func (export "free") (param i32))
             (func (export "_start")))"#,
    )
    .unwrap();
    let mut options = Options::new(program_source());
    options.config.preload = vec!["libanswer.so".into()];
    let err = Program::load(&mut store, &linker, options, "/app/main.wasm", &main).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("starting the allocator of /app/main.wasm") && msg.contains("unreachable"),
        "{msg}"
    );
}

#[test]
fn a_program_started_again_reuses_its_startup_plan_until_a_library_changes() {
    let engine = Engine::default();
    let linker = Linker::new(&engine);
    let cache = dylink_wasmtime::core::ModuleCache::new(1 << 20);
    let main = main_module(
        r#""libanswer.so""#,
        r#"(import "env" "answer" (func $a (result i32))) (func (export "run") (result i32) call $a)"#,
    );
    let run = |src: MemorySource| {
        let mut options = Options::new(src);
        options.config.module_cache = Some(cache.clone());
        let mut store = Store::new(&engine, ());
        let program = Program::load(&mut store, &linker, options, "/app/main.wasm", &main).unwrap();
        let run = program.main_func(&mut store, "run").unwrap();
        run.typed::<(), i32>(&store)
            .unwrap()
            .call(&mut store, ())
            .unwrap()
    };
    assert_eq!(run(program_source()), 42);
    assert_eq!(run(program_source()), 42);
    assert_eq!(
        cache.startup_hits(),
        1,
        "the second start used the stored plan"
    );
    // The library replaced on disk: planned afresh, and the new code runs.
    let mut changed = MemorySource::new();
    changed.insert(
        "/lib/libanswer.so",
        side(r#"(func (export "answer") (result i32) i32.const 43)"#),
    );
    assert_eq!(run(changed), 43);
    assert_eq!(cache.startup_hits(), 1);
}

#[test]
fn a_store_out_of_instances_says_how_to_raise_its_limit() {
    let engine = Engine::default();
    let linker = Linker::new(&engine);
    // The main module and libanswer.so: no room for another instance.
    let mut store = Store::new(&engine, StoreLimitsBuilder::new().instances(2).build());
    store.limiter(|limits| limits);
    let mut src = program_source();
    src.insert(
        "/lib/libmore.so",
        side(r#"(func (export "more") (result i32) i32.const 7)"#),
    );
    let main = main_module(
        r#""libanswer.so""#,
        r#"(import "env" "answer" (func $a (result i32))) (func (export "run") (result i32) call $a)"#,
    );
    let program = Program::load(
        &mut store,
        &linker,
        Options::new(src),
        "/app/main.wasm",
        &main,
    )
    .unwrap();
    let err = program
        .dlopen(&mut store, Some("libmore.so"), rtld::NOW)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("instantiating /lib/libmore.so")
            && err.contains("StoreLimitsBuilder::instances")
            && err.contains("instance count too high"),
        "{err}"
    );
    // The failed dlopen left nothing: the program runs and the library is not loaded.
    let run = program
        .main_func(&mut store, "run")
        .unwrap()
        .typed::<(), i32>(&store)
        .unwrap();
    assert_eq!(run.call(&mut store, ()).unwrap(), 42);
    assert!(
        program
            .dlopen(&mut store, Some("libmore.so"), rtld::NOW | rtld::NOLOAD)
            .is_err()
    );
}

#[test]
fn a_library_the_engine_cannot_compile_fails_its_dlopen_and_changes_nothing() {
    // The linker reads it (its sections are well formed); the engine's validation refuses
    // the body, and that compilation happens without the linker's lock.
    let mut src = program_source();
    src.insert(
        "/lib/libbad.so",
        side(r#"(func (export "bad") (result i32) i32.add)"#),
    );
    let main = main_module(
        r#""libanswer.so""#,
        r#"(import "env" "answer" (func $a (result i32))) (func (export "run") (result i32) call $a)"#,
    );
    let engine = Engine::default();
    let linker = Linker::new(&engine);
    let mut store = Store::new(&engine, ());
    let program = Program::load(
        &mut store,
        &linker,
        Options::new(src),
        "/app/main.wasm",
        &main,
    )
    .unwrap();
    let loaded = |program: &Program<_>| program.with_core(|c| c.modules().count());
    let before = loaded(&program);
    for _ in 0..2 {
        let err = program
            .dlopen(&mut store, Some("libbad.so"), rtld::NOW)
            .unwrap_err()
            .to_string();
        assert!(err.contains("compiling /lib/libbad.so"), "{err}");
        assert_eq!(loaded(&program), before, "nothing stays loaded");
    }
    assert!(
        program
            .dlsym(
                &mut store,
                dylink_wasmtime::core::Handle::Default,
                "bad",
                None
            )
            .is_err()
    );
    let run = program
        .main_func(&mut store, "run")
        .unwrap()
        .typed::<(), i32>(&store)
        .unwrap();
    assert_eq!(run.call(&mut store, ()).unwrap(), 42);
    program
        .dlopen(&mut store, Some("libanswer.so"), rtld::NOW)
        .unwrap();
}
