//! The process-wide compile cache: emptied while programs run, filled from many threads at
//! once (its own process: the other tests count what the cache holds).

use dylink_wasmtime::{
    MemorySource, Options, Program, clear_compiled_modules, compiled_modules, rtld,
};
use wasmtime::{Engine, Linker, Store};

/// The tests here count what the process-wide cache holds: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A main module calling `answer` from `libanswer.so`, and a source holding the library.
fn program() -> (MemorySource, Vec<u8>) {
    let lib = wat::parse_str(
        r#"(module (@dylink.0 (mem-info (memory 8 2)))
             (import "env" "memory" (memory 1))
             (import "env" "__memory_base" (global i32))
             (func (export "answer") (result i32) i32.const 42))"#,
    )
    .unwrap();
    let main = wat::parse_str(
        r#"(module (@dylink.0 (mem-info (memory 0 0)) (needed "libanswer.so"))
             (import "env" "memory" (memory 1))
             (import "env" "answer" (func $a (result i32)))
             (func (export "run") (result i32) call $a))"#,
    )
    .unwrap();
    let mut src = MemorySource::new();
    src.insert("/lib/libanswer.so", lib);
    (src, main)
}

#[test]
fn clearing_the_compile_cache_leaves_loaded_programs_working() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (src, main) = program();
    let engine = Engine::default();
    let linker = Linker::new(&engine);
    let mut store = Store::new(&engine, ());
    let options = Options::new(src.clone());
    let program = Program::load(&mut store, &linker, options, "/app/main.wasm", &main).unwrap();
    assert_eq!(compiled_modules(&engine), 2);
    clear_compiled_modules();
    assert_eq!(compiled_modules(&engine), 0);
    // The program keeps what it compiled: it runs, and a dlopen of its library needs nothing.
    let run = program.main_func(&mut store, "run").unwrap();
    let run = run.typed::<(), i32>(&store).unwrap();
    assert_eq!(run.call(&mut store, ()).unwrap(), 42);
    program
        .dlopen(&mut store, Some("libanswer.so"), rtld::NOW)
        .unwrap();
    // A new program compiles again.
    let mut store = Store::new(&engine, ());
    let options = Options::new(src);
    Program::load(&mut store, &linker, options, "/app/main.wasm", &main).unwrap();
    assert_eq!(compiled_modules(&engine), 2);
}

#[test]
fn programs_loaded_on_many_threads_at_once_share_one_compiled_copy() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    clear_compiled_modules();
    let (src, main) = program();
    let engine = Engine::default();
    let start = std::sync::Barrier::new(4);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let linker = Linker::new(&engine);
                let mut store = Store::new(&engine, ());
                start.wait();
                let options = Options::new(src.clone());
                let program =
                    Program::load(&mut store, &linker, options, "/app/main.wasm", &main).unwrap();
                let run = program.main_func(&mut store, "run").unwrap();
                let run = run.typed::<(), i32>(&store).unwrap();
                assert_eq!(run.call(&mut store, ()).unwrap(), 42);
            });
        }
    });
    // Threads that compiled the same bytes at once keep the first copy made.
    assert_eq!(compiled_modules(&engine), 2);
}
