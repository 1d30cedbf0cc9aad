//! Instance groups: a second thread with its own store over the same shared memory.

use std::path::Path;

use dylink_wasmtime::{DirSource, Options, Program};
use wasmtime::{Config, Engine, Linker, Store};

fn case_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance/cases/tls_side_module/out")
}

fn call(program: &Program<()>, store: &mut Store<()>, name: &str, arg: Option<i32>) -> i32 {
    let f = program.main_func(&mut *store, name).unwrap();
    match arg {
        Some(a) => f
            .typed::<i32, i32>(&*store)
            .unwrap()
            .call(&mut *store, a)
            .unwrap(),
        None => f
            .typed::<(), i32>(&*store)
            .unwrap()
            .call(&mut *store, ())
            .unwrap(),
    }
}

#[test]
fn a_second_group_has_its_own_tls_and_catches_up_with_dlopen() {
    let mut config = Config::new();
    config.wasm_threads(true).shared_memory(true);
    let engine = Engine::new(&config).unwrap();
    let mut store = Store::new(&engine, ());
    let linker = Linker::new(&engine);
    let mut dirs = DirSource::new();
    dirs.mount("/lib", case_dir()).unwrap();
    let main = std::fs::read(case_dir().join("main.wasm")).unwrap();
    let program = Program::load(
        &mut store,
        &linker,
        Options::dirs(dirs),
        "/lib/main.wasm",
        &main,
    )
    .unwrap();
    assert_eq!(call(&program, &mut store, "set", Some(7)), 71);

    let (engine2, program2) = (engine.clone(), program.clone());
    let handle = std::thread::spawn(move || {
        let mut store1 = Store::new(&engine2, ());
        let group = program2.new_group(&mut store1).unwrap();
        // Fresh thread-local data, initialised from .tdata, not the main thread's values.
        let fresh = call(&group, &mut store1, "get", None);
        let set = call(&group, &mut store1, "set", Some(3));
        (store1, group, fresh, set)
    });
    let (mut store1, group, fresh, set) = handle.join().unwrap();
    assert_eq!((fresh, set), (50, 31));
    assert_eq!(
        call(&program, &mut store, "get", None),
        71,
        "the main thread's TLS is untouched"
    );

    // The main group dlopens a TLS library; the other group catches up and gets its own copy.
    assert_eq!(call(&program, &mut store, "later", None), 404142);
    group.catch_up(&mut store1).unwrap();
    assert_eq!(
        call(&group, &mut store1, "later", None),
        404142,
        "its own later_tv starts at 40"
    );
    assert_eq!(
        call(&program, &mut store, "later", None),
        424344,
        "the main thread's copy moved on"
    );
    group.exit_group().unwrap();
}
