//! The safe-point rewrite: every `memory.atomic.wait` on a shared memory is followed by a
//! call to `dylink.after_wait`, every indirect call is preceded by the catch-up check, and
//! everything that names a function or a global still names the same one.

use std::sync::Arc;

use dylink_core::safepoints::{
    CATCH_UP_NAME, COUNTER_NAME, HOOK_MODULE, HOOK_NAME, SEEN_NAME, prepare,
};
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

/// The operators of every function body.
fn bodies(bytes: &[u8]) -> Vec<Vec<Operator<'_>>> {
    Parser::new(0)
        .parse_all(bytes)
        .filter_map(|p| match p.unwrap() {
            Payload::CodeSectionEntry(body) => Some(
                body.get_operators_reader()
                    .unwrap()
                    .into_iter()
                    .map(|o| o.unwrap())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// (function index of every `call`, whether a call to `hook` follows every wait) per body.
fn calls_after_waits(bytes: &[u8], hook: u32) -> (Vec<u32>, usize, usize) {
    let (mut calls, mut waits, mut hooked) = (Vec::new(), 0, 0);
    for ops in bodies(bytes) {
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
    assert_eq!(
        (info.import_module(hook), &*hook.name),
        (HOOK_MODULE, HOOK_NAME)
    );
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

const CALLER: &str = r#"
(module
  (@dylink.0 (mem-info (memory 16 2)))
  (import "env" "memory" (memory 1 1 shared))
  (import "env" "__indirect_function_table" (table 1 funcref))
  (import "env" "__memory_base" (global $mb i32))
  (import "env" "helper" (func $helper (param i32) (result i32)))
  (type $t (func (param i32) (result i32)))
  (global $counter (mut i32) (i32.const 5))
  (global $ptr (export "ptr") i32 (i32.const 64))
  (elem declare func $target)
  (func $target (param i32) (result i32) (local.get 0))
  (func $call (export "call") (param i32) (result i32)
    (global.set $counter (i32.add (global.get $counter) (global.get $mb)))
    (call_indirect (type $t) (i32.const 7) (local.get 0))
    (call_ref $t (local.get 0) (ref.func $target))
    (memory.atomic.wait32 (local.get 0) (i32.const 0) (i64.const -1))
    i32.add
    i32.add)
  (func $tail (export "tail") (param i32) (result i32)
    (return_call_indirect (type $t) (local.get 0) (i32.const 1))))
"#;

/// Every indirect call in `bytes`, and how many are preceded by the safe-point check with
/// these indices; every `global.get/set` index outside the checks.
fn checks(bytes: &[u8], catch_up: u32, seen: u32, counter: u32) -> (usize, usize, Vec<u32>) {
    let (mut indirect, mut checked, mut globals) = (0, 0, Vec::new());
    for ops in bodies(bytes) {
        let mut i = 0;
        while i < ops.len() {
            let check = ops.get(i..i + 7).is_some_and(|w| {
                matches!(w[0], Operator::GlobalGet { global_index } if global_index == counter)
                    && matches!(w[1], Operator::I32AtomicLoad { .. })
                    && matches!(w[2], Operator::GlobalGet { global_index } if global_index == seen)
                    && matches!(w[3], Operator::I32Ne)
                    && matches!(w[4], Operator::If { .. })
                    && matches!(w[5], Operator::Call { function_index } if function_index == catch_up)
                    && matches!(w[6], Operator::End)
            });
            if check {
                i += 7;
                // The check sits right before an indirect call, or before the operands
                // of nothing else.
                assert!(matches!(
                    ops[i],
                    Operator::CallIndirect { .. }
                        | Operator::ReturnCallIndirect { .. }
                        | Operator::CallRef { .. }
                        | Operator::ReturnCallRef { .. }
                ));
                checked += 1;
                continue;
            }
            match ops[i] {
                Operator::CallIndirect { .. }
                | Operator::ReturnCallIndirect { .. }
                | Operator::CallRef { .. }
                | Operator::ReturnCallRef { .. } => indirect += 1,
                Operator::GlobalGet { global_index } | Operator::GlobalSet { global_index } => {
                    globals.push(global_index)
                }
                _ => {}
            }
            i += 1;
        }
    }
    (indirect, checked, globals)
}

#[test]
fn every_indirect_call_is_checked_and_globals_move_up() {
    let original: Arc<[u8]> = wat::parse_str(CALLER).unwrap().into();
    let before = ModuleInfo::parse(&original).unwrap();
    let (bytes, info) = prepare(original).unwrap();
    validate(&bytes);

    // Appended: the wait hook and the catch-up (functions 1 and 2, after `helper`), then the
    // group's `seen` and the counter's address (globals 1 and 2, after `__memory_base`).
    let added: Vec<_> = info.imports[before.imports.len()..]
        .iter()
        .map(|i| (info.import_module(i), &*i.name, i.role.clone()))
        .collect();
    assert_eq!(
        added,
        vec![
            (HOOK_MODULE, HOOK_NAME, ImportRole::AfterWait),
            (HOOK_MODULE, CATCH_UP_NAME, ImportRole::CatchUp),
            (HOOK_MODULE, SEEN_NAME, ImportRole::Seen),
            (HOOK_MODULE, COUNTER_NAME, ImportRole::CommitCounter),
        ]
    );
    assert_eq!(info.imported_funcs, 3);

    let (indirect, checked, globals) = checks(&bytes, 2, 1, 2);
    assert_eq!(indirect, 3, "call_indirect, call_ref, return_call_indirect");
    assert_eq!(checked, 3, "each preceded by the check");
    // `$counter` was global 1 (after the imported `__memory_base`, which stays 0): now 3.
    assert_eq!(globals, vec![3, 0, 3]);
    // The exported data symbol keeps its value; exports name the same functions, two up.
    assert_eq!(
        before.export("ptr").unwrap().kind,
        info.export("ptr").unwrap().kind
    );
    let func_index = |i: &ModuleInfo, n: &str| match i.export(n).unwrap().kind {
        dylink_core::ExportKind::Func { index, .. } => index,
        _ => unreachable!(),
    };
    assert_eq!(func_index(&info, "call"), func_index(&before, "call") + 2);
    // The wait is still followed by its hook.
    let (_, waits, hooked) = calls_after_waits(&bytes, 1);
    assert_eq!((waits, hooked), (1, 1));
}

#[test]
fn a_memory64_module_reads_the_counter_at_an_i64_address() {
    let wat = CALLER
        .replace("(memory 1 1 shared)", "(memory i64 1 1 shared)")
        .replace(
            "(memory.atomic.wait32 (local.get 0) (i32.const 0) (i64.const -1))",
            "(i32.const 0)",
        );
    let (bytes, info) = prepare(wat::parse_str(&wat).unwrap().into()).unwrap();
    validate(&bytes);
    let counter = info.imports.last().unwrap();
    assert_eq!(counter.role, ImportRole::CommitCounter);
    assert!(matches!(
        counter.ty,
        dylink_core::ImportType::Global {
            ty: dylink_core::ValType::I64,
            mutable: false
        }
    ));
    // No wait here: the catch-up is function 1.
    let (indirect, checked, _) = checks(&bytes, 1, 1, 2);
    assert_eq!((indirect, checked), (3, 3));
}

#[test]
fn single_threaded_modules_keep_their_indirect_calls_as_they_are() {
    let unshared: Arc<[u8]> = wat::parse_str(CALLER.replace(" 1 1 shared", " 1").replace(
        "(memory.atomic.wait32 (local.get 0) (i32.const 0) (i64.const -1))",
        "(i32.const 0)",
    ))
    .unwrap()
    .into();
    let (bytes, _) = prepare(unshared.clone()).unwrap();
    assert!(Arc::ptr_eq(&bytes, &unshared));
}
