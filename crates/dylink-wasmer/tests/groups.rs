//! Instance groups: a second thread with its own store over the same shared memory.

use std::path::Path;
use std::sync::mpsc;

use dylink_wasmer::core::{Handle, SymbolValue};
use dylink_wasmer::{DirSource, Options, Program};
use wasmer::{Engine, Imports, Store, Value};

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

/// The case's program: its engine, the main store, the program.
fn load() -> (Engine, Store, Program) {
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
    (engine, store, program)
}

#[test]
fn a_second_group_has_its_own_tls_and_catches_up_with_dlopen() {
    let (engine, mut store, program) = load();
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
    let (engine, mut store, program) = load();
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

/// Stress: 16 threads, each its own group, run 1,000 mixed dlopen / dlsym / call / dlclose /
/// spawn-and-join operations on one library that is loaded and unloaded over and over. No
/// deadlock, no trap, every answer right, and afterwards every group's table agrees.
#[test]
fn sixteen_threads_of_mixed_dl_operations_stay_consistent() {
    const THREADS: u64 = 16;
    const OPS: u64 = 1_000;
    let (engine, mut store, program) = load();

    // One round: open the library, find and call its function twice (this group's own TLS
    // counter counts 40, 41, ... across the rounds in which the library stays loaded), close.
    fn round(group: &Program, store: &mut Store) -> (i32, i32) {
        let m = group.dlopen(store, Some("liblater.so"), 2).unwrap();
        let slot = match group
            .dlsym(store, Handle::Module(m), "later_get", None)
            .unwrap()
        {
            SymbolValue::Func(slot) => slot.0,
            other => panic!("later_get is a function, got {other:?}"),
        };
        let f = group
            .func_at(store, slot)
            .expect("the slot holds later_get");
        let mut next = || match f.call(store, &[]).unwrap()[0] {
            Value::I32(v) => v,
            ref other => panic!("{other:?}"),
        };
        let pair = (next(), next());
        group.dlclose(store, m).unwrap();
        pair
    }
    fn occupied(g: &Program, s: &mut Store) -> Vec<bool> {
        let t = g.table();
        (0..t.size(s))
            .map(|i| matches!(t.get(s, i), Some(Value::FuncRef(Some(_)))))
            .collect()
    }

    // Workers finish, then wait while the main group loads the library and takes a function
    // pointer; then each catches up and reports its table.
    let done = std::sync::Arc::new(std::sync::Barrier::new(THREADS as usize + 1));
    let loaded = std::sync::Arc::new(std::sync::Barrier::new(THREADS as usize + 1));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (engine, program) = (engine.clone(), program.clone());
            let (done, loaded) = (done.clone(), loaded.clone());
            std::thread::spawn(move || {
                let mut store = Store::new(engine.clone());
                let group = program.new_group(&mut store).unwrap();
                // A panic here must still reach the barriers, or the main thread waits forever.
                let ops = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let mut rng = t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                    for _ in 0..OPS {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        match rng % 8 {
                            // spawn and join: a short-lived group on another thread
                            0 => {
                                let (engine, program) = (engine.clone(), program.clone());
                                std::thread::spawn(move || {
                                    let mut store = Store::new(engine);
                                    let g = program.new_group(&mut store).unwrap();
                                    let (a, b) = round(&g, &mut store);
                                    assert_eq!(b, a + 1);
                                    g.exit_group().unwrap();
                                })
                                .join()
                                .unwrap();
                            }
                            // a group that only catches up or asks for a missing symbol
                            1 => {
                                group.catch_up(&mut store).unwrap();
                                assert!(
                                    group
                                        .dlsym(&mut store, Handle::Default, "no_such_symbol", None)
                                        .is_err()
                                );
                            }
                            _ => {
                                let (a, b) = round(&group, &mut store);
                                assert!(a >= 40 && b == a + 1, "({a}, {b})");
                            }
                        }
                    }
                }));
                done.wait();
                loaded.wait();
                if let Err(panic) = ops {
                    std::panic::resume_unwind(panic);
                }
                group.catch_up(&mut store).unwrap();
                let seen = occupied(&group, &mut store);
                group.exit_group().unwrap();
                seen
            })
        })
        .collect();
    done.wait();
    let later = program.dlopen(&mut store, Some("liblater.so"), 2).unwrap();
    program
        .dlsym(&mut store, Handle::Module(later), "later_get", None)
        .unwrap();
    let want = occupied(&program, &mut store);
    assert!(want.iter().any(|&x| x), "the library's slots are filled");
    loaded.wait();
    for w in workers {
        assert_eq!(w.join().unwrap(), want);
    }
    let (a, b) = round(&program, &mut store);
    assert_eq!(b, a + 1);
    program.dlclose(&mut store, later).unwrap();
}

#[test]
fn a_failed_dlopen_in_one_group_leaves_every_group_unchanged() {
    let (engine, store, program) = load();
    let (mut store1, mut store2) = (Store::new(engine.clone()), Store::new(engine));
    let group1 = program.new_group(&mut store1).unwrap();
    let group2 = program.new_group(&mut store2).unwrap();
    let sizes = |s1: &Store, s2: &Store, s: &Store| {
        (
            group1.table().size(s1),
            group2.table().size(s2),
            program.table().size(s),
        )
    };
    let before = sizes(&store1, &store2, &store);

    let err = group1
        .dlopen(&mut store1, Some("libmissing.so"), 2)
        .unwrap_err();
    assert!(err.to_string().contains("libmissing.so"), "{err}");
    for g in [&program, &group2] {
        let pending = program.with_core(|c| c.pending_ops(g.group_id()).unwrap().0.len());
        assert_eq!(pending, 0, "nothing was logged for the other groups");
    }
    assert_eq!(sizes(&store1, &store2, &store), before);
    // Every group still works, and can load the real library.
    assert_eq!(call(&group2, &mut store2, "later", None), 404142);
    assert_eq!(call(&group1, &mut store1, "later", None), 404142);
    group1.exit_group().unwrap();
    group2.exit_group().unwrap();
}

/// Closure slots (libffi-style function pointers made at run time): allocated and filled on
/// one thread, called on another; freed slots are null everywhere and reused.
#[test]
fn closure_slots_made_on_one_thread_are_called_on_another() {
    let (engine, mut store, program) = load();
    let later = program.dlopen(&mut store, Some("liblater.so"), 2).unwrap();
    let first = program.alloc_closures(&mut store, 2).unwrap();
    assert!(
        program.func_at(&mut store, first).is_none(),
        "a new closure slot is null until set"
    );
    let call_slot = |group: &Program, store: &mut Store, slot: u64| -> i32 {
        let f = group
            .func_at(store, slot)
            .expect("the closure reached this thread");
        match f.call(store, &[]).unwrap()[0] {
            Value::I32(v) => v,
            ref other => panic!("{other:?}"),
        }
    };

    // A thread whose group exists before the closure is set (wasmer stores stay on their
    // thread: the group lives and works there).
    let (tx, rx) = mpsc::channel::<()>();
    let (ack, acked) = mpsc::channel::<()>();
    let (engine1, program1) = (engine.clone(), program.clone());
    let worker = std::thread::spawn(move || {
        let mut store1 = Store::new(engine1);
        let group = program1.new_group(&mut store1).unwrap();
        ack.send(()).unwrap(); // this group exists
        rx.recv().unwrap(); // the main thread has set the slot
        group.catch_up(&mut store1).unwrap();
        let got = (
            call_slot(&group, &mut store1, first),
            call_slot(&group, &mut store1, first),
        );
        ack.send(()).unwrap(); // called
        rx.recv().unwrap(); // the main thread has freed the slots
        group.catch_up(&mut store1).unwrap();
        let freed = group.func_at(&mut store1, first).is_none();
        group.exit_group().unwrap();
        (got, freed)
    });

    acked.recv().unwrap();
    let target = dylink_wasmer::SlotValue::Export {
        module: later,
        name: "later_get".into(),
    };
    program
        .set_closure(&mut store, first, target.clone())
        .unwrap();
    tx.send(()).unwrap();
    acked.recv().unwrap();
    // A group made after the closure was set has it from the start.
    let (engine2, program2) = (engine.clone(), program.clone());
    let fresh = std::thread::spawn(move || {
        let mut store2 = Store::new(engine2);
        let group2 = program2.new_group(&mut store2).unwrap();
        let v = call_slot(&group2, &mut store2, first);
        group2.exit_group().unwrap();
        v
    })
    .join()
    .unwrap();
    assert_eq!(fresh, 40);

    // Not a closure slot, or already freed: an error, nothing changes.
    let err = program
        .set_closure(&mut store, 0, dylink_wasmer::SlotValue::Null)
        .unwrap_err();
    assert!(
        err.to_string().contains("slot 0 is not a closure slot"),
        "{err}"
    );
    program.free_closures(&mut store, first, 2).unwrap();
    tx.send(()).unwrap();
    let err = program.free_closures(&mut store, first, 1).unwrap_err();
    assert!(
        err.to_string().contains("not a closure slot"),
        "a double free is refused: {err}"
    );
    let (got, freed) = worker.join().unwrap();
    assert_eq!(got, (40, 41), "the worker called its own copy of later_get");
    assert!(freed, "a freed closure slot is null in every thread");
    assert!(program.func_at(&mut store, first).is_none());
    // Freed slots are reused.
    assert_eq!(program.alloc_closures(&mut store, 1).unwrap(), first);

    // A closure into a library that is then unloaded: new threads still start.
    let again = program.alloc_closures(&mut store, 1).unwrap();
    program.set_closure(&mut store, again, target).unwrap();
    program.dlclose(&mut store, later).unwrap();
    let program3 = program.clone();
    std::thread::spawn(move || {
        let mut store3 = Store::new(engine);
        let group3 = program3.new_group(&mut store3).unwrap();
        group3.exit_group().unwrap();
    })
    .join()
    .unwrap();
}
