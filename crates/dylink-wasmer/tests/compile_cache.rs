//! The process-wide compile cache can be emptied while programs run (its own process: the
//! other tests count what the cache holds).

use dylink_wasmer::{
    MemorySource, Options, Program, clear_compiled_modules, compiled_modules, rtld,
};
use wasmer::{Imports, Store, Value};

#[test]
fn clearing_the_compile_cache_leaves_loaded_programs_working() {
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
    let imports = Imports::new();
    let mut store = Store::default();
    let options = Options::new(src.clone());
    let program = Program::load(&mut store, &imports, options, "/app/main.wasm", &main).unwrap();
    assert_eq!(compiled_modules(store.engine()), 2);
    clear_compiled_modules();
    assert_eq!(compiled_modules(store.engine()), 0);
    // The program keeps what it compiled: it runs, and a dlopen of its library needs nothing.
    let run = program.main_func(&mut store, "run").unwrap();
    assert_eq!(run.call(&mut store, &[]).unwrap()[0], Value::I32(42));
    program
        .dlopen(&mut store, Some("libanswer.so"), rtld::NOW)
        .unwrap();
    // A new program on the same engine compiles again.
    let mut second = Store::new(store.engine().clone());
    let options = Options::new(src);
    Program::load(&mut second, &imports, options, "/app/main.wasm", &main).unwrap();
    assert_eq!(compiled_modules(store.engine()), 2);
}
