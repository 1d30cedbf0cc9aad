//! Synthetic `dylink.0` programs for the benchmarks, generated at bench time so sizes scale.

use std::fmt::Write as _;
use std::sync::Arc;

use dylink_core::MemorySource;

/// Functions each side module exports (as many data symbols again).
pub const EXPORTS: usize = 25;
/// Function imports (from the previous module) per side module.
pub const FUNC_IMPORTS: usize = 25;
/// `GOT.mem` imports per side module.
pub const GOT_MEM: usize = 15;
/// `GOT.func` imports per side module.
pub const GOT_FUNC: usize = 10;
/// Bytes of data each side module reserves.
pub const DATA: usize = EXPORTS * 16;

/// The memory import: unshared, or shared (a threaded program, 64 MiB at most).
fn memory_import(shared: bool) -> &'static str {
    if shared {
        r#"(import "env" "memory" (memory 1 1024 shared))"#
    } else {
        r#"(import "env" "memory" (memory 1))"#
    }
}

/// Side module `i`: exports `f{i}_{k}` and data `d{i}_{k}`; imports from module `i - 1`.
pub fn side_module(i: usize) -> String {
    side_module_in(i, false)
}

/// [`side_module`], over a shared memory when `shared`.
pub fn side_module_in(i: usize, shared: bool) -> String {
    let mut w = String::new();
    write!(
        w,
        "(module (@dylink.0 (mem-info (memory {DATA} 2) (table 0 0)))"
    )
    .unwrap();
    w.push_str(memory_import(shared));
    w.push_str(r#"(import "env" "__indirect_function_table" (table 0 funcref))"#);
    w.push_str(r#"(import "env" "__memory_base" (global $mb i32)) (import "env" "__table_base" (global i32))"#);
    w.push_str(r#"(import "env" "__stack_pointer" (global (mut i32)))"#);
    if i > 0 {
        let p = i - 1;
        for k in 0..FUNC_IMPORTS {
            write!(
                w,
                r#"(import "env" "f{p}_{k}" (func (param i32) (result i32)))"#
            )
            .unwrap();
        }
        for k in 0..GOT_MEM {
            write!(w, r#"(import "GOT.mem" "d{p}_{k}" (global (mut i32)))"#).unwrap();
        }
        for k in 0..GOT_FUNC {
            write!(w, r#"(import "GOT.func" "f{p}_{k}" (global (mut i32)))"#).unwrap();
        }
    }
    for k in 0..EXPORTS {
        write!(w, r#"(func (export "f{i}_{k}") (param i32) (result i32) local.get 0 i32.const {k} i32.add)"#).unwrap();
        write!(
            w,
            r#"(global (export "d{i}_{k}") i32 (i32.const {}))"#,
            k * 16
        )
        .unwrap();
    }
    w.push_str(
        r#"(func (export "__wasm_apply_data_relocs")) (func (export "__wasm_call_ctors")))"#,
    );
    w
}

/// A PIE main needing `n` side modules.
pub fn main_module(n: usize) -> String {
    main_module_in(n, false)
}

/// [`main_module`], over a shared memory when `shared`.
pub fn main_module_in(n: usize, shared: bool) -> String {
    let mut needed = String::new();
    for i in 0..n {
        write!(needed, " \"lib{i}.so\"").unwrap();
    }
    format!(
        r#"(module (@dylink.0 (mem-info (memory 16 2)) (needed {needed}))
           {} (import "env" "__indirect_function_table" (table 0 funcref))
           (func (export "_start")))"#,
        memory_import(shared)
    )
}

/// A program of `n` side modules: main bytes, the source with the libraries, and each
/// library's bytes in order.
pub fn program(n: usize) -> (Arc<[u8]>, MemorySource, Vec<Vec<u8>>) {
    program_in(n, false)
}

/// [`program`] over a shared memory (what threads need); the source also holds
/// `libextra.so`, a further side module importing from the last one.
pub fn threaded_program(n: usize) -> (Arc<[u8]>, MemorySource, Vec<Vec<u8>>) {
    let (main, mut src, libs) = program_in(n, true);
    let extra = wat::parse_str(side_module_in(n, true)).expect("side module");
    src.insert("/lib/libextra.so", extra);
    (main, src, libs)
}

fn program_in(n: usize, shared: bool) -> (Arc<[u8]>, MemorySource, Vec<Vec<u8>>) {
    let mut src = MemorySource::new();
    let mut libs = Vec::new();
    for i in 0..n {
        let bytes = wat::parse_str(side_module_in(i, shared)).expect("side module");
        src.insert(&format!("/lib/lib{i}.so"), bytes.clone());
        libs.push(bytes);
    }
    (
        wat::parse_str(main_module_in(n, shared))
            .expect("main")
            .into(),
        src,
        libs,
    )
}

/// Two libraries for the call-cost measurement: `libcallee.so` exports `f`, `libcaller.so`
/// exports `spin(n)`, which calls `f` `n` times. With `lazy`, the callee needs the caller and
/// imports `spin` back (a cycle of calls), so the caller is instantiated first and its
/// import of `f` goes through a trampoline; otherwise the callee comes first and the import
/// is bound directly.
pub fn call_program(lazy: bool) -> (Arc<[u8]>, MemorySource) {
    call_program_in(if lazy { Call::Lazy } else { Call::Direct }, false)
}

/// How `spin` calls `f`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// Through its import, bound at instantiation.
    Direct,
    /// Through its import, bound to a trampoline (the caller is instantiated first).
    Lazy,
    /// Through a function pointer (`GOT.func` and `call_indirect`).
    Pointer,
}

/// [`call_program`] with the call made as `call` says, over a shared memory when `shared`
/// (where the safe-point check runs before each indirect call and in each trampoline).
pub fn call_program_in(call: Call, shared: bool) -> (Arc<[u8]>, MemorySource) {
    let lazy = call == Call::Lazy;
    let memory = memory_import(shared);
    let callee_needed = if lazy {
        r#"(needed "libcaller.so")"#
    } else {
        ""
    };
    let caller_needed = if lazy {
        ""
    } else {
        r#"(needed "libcallee.so")"#
    };
    // The lazy callee also imports `spin`: a cycle of calls, so one side's import must wait
    // for its definer (the linker instantiates definers first where no cycle forbids it).
    let callee_imports = if lazy {
        r#"(import "env" "spin" (func (param i32) (result i32)))"#
    } else {
        ""
    };
    let callee = format!(
        r#"(module (@dylink.0 (mem-info (memory 0 0)) {callee_needed}) {memory} {callee_imports}
             (func (export "f") (param i32) (result i32) local.get 0 i32.const 1 i32.add))"#
    );
    let (import, call) = match call {
        Call::Direct | Call::Lazy => (
            r#"(import "env" "f" (func $f (param i32) (result i32)))"#,
            "(call $f (local.get $acc))",
        ),
        Call::Pointer => (
            r#"(import "env" "__indirect_function_table" (table 0 funcref))
               (import "GOT.func" "f" (global $fp (mut i32)))"#,
            "(call_indirect (type $t) (local.get $acc) (global.get $fp))",
        ),
    };
    let caller = format!(
        r#"(module (@dylink.0 (mem-info (memory 0 0)) {caller_needed}) {memory}
             (type $t (func (param i32) (result i32)))
             {import}
             (func (export "spin") (param $n i32) (result i32) (local $acc i32)
               (block $done (loop $l
                 (br_if $done (i32.eqz (local.get $n)))
                 (local.set $acc {call})
                 (local.set $n (i32.sub (local.get $n) (i32.const 1)))
                 (br $l)))
               (local.get $acc)))"#
    );
    let top = if lazy { "libcallee.so" } else { "libcaller.so" };
    let main = format!(
        r#"(module (@dylink.0 (mem-info (memory 0 0)) (needed "{top}")) {memory}
             (import "env" "spin" (func $s (param i32) (result i32)))
             (func (export "run") (param i32) (result i32) local.get 0 call $s))"#
    );
    let mut src = MemorySource::new();
    src.insert("/lib/libcallee.so", wat::parse_str(&callee).unwrap());
    src.insert("/lib/libcaller.so", wat::parse_str(&caller).unwrap());
    (wat::parse_str(&main).unwrap().into(), src)
}

/// A fresh library with 50 exports for `dlopen_new_us`.
pub fn fresh_library() -> Vec<u8> {
    let mut w = String::from(
        r#"(module (@dylink.0 (mem-info (memory 400 2))) (import "env" "memory" (memory 1)) (import "env" "__memory_base" (global i32))"#,
    );
    for k in 0..25 {
        write!(
            w,
            r#"(func (export "g{k}") (param i32) (result i32) local.get 0)"#
        )
        .unwrap();
        write!(w, r#"(global (export "e{k}") i32 (i32.const {}))"#, k * 16).unwrap();
    }
    w.push_str(r#"(func (export "__wasm_call_ctors")))"#);
    wat::parse_str(&w).unwrap()
}

/// Median of a sample, in the sample's unit.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}
