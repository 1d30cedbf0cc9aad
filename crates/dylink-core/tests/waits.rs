//! The safe-point rewrite: every `memory.atomic.wait` on a shared memory is followed by a
//! call to `dylink.after_wait`, and everything that names a function still names the same one.

use std::sync::Arc;

use dylink_core::waits::{HOOK_MODULE, HOOK_NAME, prepare};
use dylink_core::{ImportRole, ModuleInfo};
use wasmparser::{Operator, Parser, Payload, Validator, WasmFeatures};

const WAITER: &str = r#"
(module
  (@dylink.0 (mem-info (memory 16 2)))
  (import "env" "memory" (memory 1 1 shared))
  (import "env" "__memory_base" (global i32))
  (import "env" "helper" (func $helper (param i32) (result i32)))
  (table 2 funcref)
  (elem (i32.const 0) func $wait_here $spin)
  (global $fp (mut funcref) (ref.func $spin))
  (start $init)
  (func $init)
  (func $wait_here (export "wait_here") (param i32) (result i32)
    (memory.atomic.wait32 offset=8 (local.get 0) (i32.const 0) (i64.const -1))
    (call $helper)
    (i64.atomic.load (i32.const 0))
    drop
    (memory.atomic.wait64 (local.get 0) (i64.const 7) (i64.const 100))
    i32.add)
  (func $spin (export "spin") (result i32)
    (call $wait_here (i32.const 64))
    (ref.func $wait_here)
    drop)
  (func $notify (export "notify") (result i32)
    (memory.atomic.notify (i32.const 0) (i32.const 1))))
"#;

fn validate(bytes: &[u8]) {
    Validator::new_with_features(WasmFeatures::all())
        .validate_all(bytes)
        .expect("rewritten module validates");
}

/// (function index of every `call`, whether a call to `hook` follows every wait) per body.
fn calls_after_waits(bytes: &[u8], hook: u32) -> (Vec<u32>, usize, usize) {
    let (mut calls, mut waits, mut hooked) = (Vec::new(), 0, 0);
    for payload in Parser::new(0).parse_all(bytes) {
        if let Payload::CodeSectionEntry(body) = payload.unwrap() {
            let ops: Vec<Operator> = body
                .get_operators_reader()
                .unwrap()
                .into_iter()
                .map(|o| o.unwrap())
                .collect();
            for (i, op) in ops.iter().enumerate() {
                match op {
                    Operator::Call { function_index } => calls.push(*function_index),
                    Operator::MemoryAtomicWait32 { .. } | Operator::MemoryAtomicWait64 { .. } => {
                        waits += 1;
                        if matches!(ops.get(i + 1), Some(Operator::Call { function_index }) if *function_index == hook)
                        {
                            hooked += 1;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    (calls, waits, hooked)
}

#[test]
fn every_wait_is_followed_by_the_hook_and_indices_move_with_it() {
    let original: Arc<[u8]> = wat::parse_str(WAITER).unwrap().into();
    let before = ModuleInfo::parse(&original).unwrap();
    let (bytes, info) = prepare(original.clone()).unwrap();
    assert_ne!(
        &*bytes, &*original,
        "a shared-memory module with waits is rewritten"
    );
    validate(&bytes);

    // One more import, last, with the hook's role; everything else as it was.
    assert_eq!(info.imports.len(), before.imports.len() + 1);
    let hook = info.imports.last().unwrap();
    assert_eq!((&*hook.module, &*hook.name), (HOOK_MODULE, HOOK_NAME));
    assert_eq!(hook.role, ImportRole::AfterWait);
    assert_eq!(info.imported_funcs, before.imported_funcs + 1);
    assert!(info.dylink.is_some(), "dylink.0 is kept");
    assert!(info.init.has_start_function);

    // Exports name the same functions, one index up.
    for (a, b) in before.exports.iter().zip(&info.exports) {
        assert_eq!(a.name, b.name);
        match (&a.kind, &b.kind) {
            (
                dylink_core::ExportKind::Func { index: i, .. },
                dylink_core::ExportKind::Func { index: j, .. },
            ) => assert_eq!(i + 1, *j, "{}", a.name),
            (x, y) => assert_eq!(x, y),
        }
    }
    // Element segments too (the core reads them for dladdr).
    let shifted: Vec<(u32, u32)> = before
        .table_elems
        .iter()
        .map(|&(o, f)| (o, f + 1))
        .collect();
    assert_eq!(info.table_elems, shifted);
    // And the `name` section, which traps and `dladdr` show.
    assert_eq!(before.func_name(2).as_ref(), "wait_here");
    assert_eq!(info.func_name(3).as_ref(), "wait_here");

    // Calls: `helper` (an import) keeps index 0, `$wait_here` (defined, was 2) is now 3,
    // the hook is index 1 (the old count of imported functions).
    let (calls, waits, hooked) = calls_after_waits(&bytes, 1);
    assert_eq!(waits, 2);
    assert_eq!(hooked, 2, "both waits are followed by the hook");
    assert_eq!(calls, vec![1, 0, 1, 3]);
}

#[test]
fn modules_that_cannot_need_it_are_not_touched() {
    // Unshared memory: a wait traps anyway, nothing to hook.
    let unshared: Arc<[u8]> = wat::parse_str(WAITER.replace(" 1 1 shared", " 1"))
        .unwrap()
        .into();
    let (bytes, info) = prepare(unshared.clone()).unwrap();
    assert!(Arc::ptr_eq(&bytes, &unshared));
    assert!(info.imports.iter().all(|i| i.role != ImportRole::AfterWait));

    // Shared memory, no wait (the 0xfe prefix of `notify` alone does not trigger it).
    let no_wait: Arc<[u8]> = wat::parse_str(
        r#"(module (import "env" "memory" (memory 1 1 shared))
             (func (export "n") (result i32) (memory.atomic.notify (i32.const 0) (i32.const 1))))"#,
    )
    .unwrap()
    .into();
    let (bytes, _) = prepare(no_wait.clone()).unwrap();
    assert!(Arc::ptr_eq(&bytes, &no_wait));

    // Already rewritten: rewriting again changes nothing.
    let original: Arc<[u8]> = wat::parse_str(WAITER).unwrap().into();
    let (once, _) = prepare(original).unwrap();
    let (twice, _) = prepare(once.clone()).unwrap();
    assert!(Arc::ptr_eq(&once, &twice));
}

#[test]
fn a_module_without_imports_gets_an_import_section() {
    let bytes: Arc<[u8]> = wat::parse_str(
        r#"(module (memory (export "memory") 1 1 shared)
             (func (export "w") (param i32) (result i32)
               (memory.atomic.wait32 (local.get 0) (i32.const 0) (i64.const 0))))"#,
    )
    .unwrap()
    .into();
    let (bytes, info) = prepare(bytes).unwrap();
    validate(&bytes);
    assert_eq!(info.imports.len(), 1);
    assert_eq!(info.imports[0].role, ImportRole::AfterWait);
    let (calls, waits, hooked) = calls_after_waits(&bytes, 0);
    assert_eq!((calls, waits, hooked), (vec![0], 1, 1));
}
