//! Instance groups: a second thread with its own store over the same shared memory.

use std::path::Path;
use std::sync::mpsc;

use dylink_wasmer::core::{Handle, SymbolValue};
use dylink_wasmer::{DirSource, Options, Program};
use wasmer::{Imports, Store, Value};

fn case_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance/cases/tls_side_module/out")
}

fn call(program: &Program, store: &mut Store, name: &str, arg: Option<i32>) -> i32 {
    let f = program.main_func(store, name).unwrap();
    let args: Vec<Value> = arg.into_iter().map(Value::I32).collect();
    match f.call(store, &args).unwrap()[0] {
        Value::I32(v) => v,
        ref other => panic!("{other:?}"),
    }
}

#[test]
fn a_second_group_has_its_own_tls_and_catches_up_with_dlopen() {
    let mut store = Store::default();
    let engine = store.engine().clone();
    let mut dirs = DirSource::new();
    dirs.mount("/lib", case_dir()).unwrap();
    let main = std::fs::read(case_dir().join("main.wasm")).unwrap();
    let program = Program::load(
        &mut store,
        &Imports::new(),
        Options::dirs(dirs),
        "/lib/main.wasm",
        &main,
    )
    .unwrap();
    assert_eq!(call(&program, &mut store, "set", Some(7)), 71);

    // wasmer stores stay on their thread: the second group lives and works there.
    let (to_worker, from_main) = mpsc::channel::<()>();
    let (to_main, from_worker) = mpsc::channel::<i32>();
    let program2 = program.clone();
    let worker = std::thread::spawn(move || {
        let mut store1 = Store::new(engine);
        let group = program2.new_group(&mut store1).unwrap();
        to_main
            .send(call(&group, &mut store1, "get", None))
            .unwrap();
        to_main
            .send(call(&group, &mut store1, "set", Some(3)))
            .unwrap();
        from_main.recv().unwrap();
        group.catch_up(&mut store1).unwrap();
        to_main
            .send(call(&group, &mut store1, "later", None))
            .unwrap();
        group.exit_group().unwrap();
    });
    assert_eq!(
        from_worker.recv().unwrap(),
        50,
        "fresh thread-local data, from .tdata"
    );
    assert_eq!(from_worker.recv().unwrap(), 31);
    assert_eq!(
        call(&program, &mut store, "get", None),
        71,
        "the main thread's TLS is untouched"
    );
    assert_eq!(call(&program, &mut store, "later", None), 404142);
    to_worker.send(()).unwrap();
    assert_eq!(
        from_worker.recv().unwrap(),
        404142,
        "the worker's own later_tv starts at 40"
    );
    worker.join().unwrap();
    assert_eq!(call(&program, &mut store, "later", None), 424344);
}

#[test]
fn a_group_catches_up_by_itself_at_its_next_dl_call() {
    let mut store = Store::default();
    let engine = store.engine().clone();
    let mut dirs = DirSource::new();
    dirs.mount("/lib", case_dir()).unwrap();
    let main = std::fs::read(case_dir().join("main.wasm")).unwrap();
    let program = Program::load(
        &mut store,
        &Imports::new(),
        Options::dirs(dirs),
        "/lib/main.wasm",
        &main,
    )
    .unwrap();
    let (mut store1, mut store2) = (Store::new(engine.clone()), Store::new(engine));
    let group1 = program.new_group(&mut store1).unwrap();
    let group2 = program.new_group(&mut store2).unwrap();

    // The main group loads liblater.so; the other groups never call catch_up.
    assert_eq!(call(&program, &mut store, "later", None), 404142);
    let later = program.dlopen(&mut store, Some("liblater.so"), 2).unwrap();
    assert!(group1.instance(later).is_none(), "not applied yet");

    // A guest dlopen in group 1 applies the pending load first.
    assert_eq!(
        call(&group1, &mut store1, "later", None),
        404142,
        "group 1's own later_tv, reached through its own dlopen and dlsym"
    );
    assert!(group1.instance(later).is_some());

    // A host dlsym in group 2 does too: the slot it answers holds the function there.
    let f = match group2
        .dlsym(&mut store2, Handle::Module(later), "later_get", None)
        .unwrap()
    {
        SymbolValue::Func(slot) => group2.func_at(&mut store2, slot.0).unwrap(),
        other => panic!("later_get is a function, got {other:?}"),
    };
    let mut next = || match f.call(&mut store2, &[]).unwrap()[0] {
        Value::I32(v) => v,
        ref other => panic!("{other:?}"),
    };
    assert_eq!(
        (next(), next()),
        (40, 41),
        "group 2's own copy starts at 40"
    );
    group1.exit_group().unwrap();
    group2.exit_group().unwrap();
}
