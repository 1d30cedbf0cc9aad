//! Malformed input of any kind is an error value, never a panic.

mod common;

use common::*;
use dylink_core::*;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn valid_side() -> Vec<u8> {
    side(
        64,
        2,
        &["libdep.so"],
        r#"
        (import "env" "f" (func (param i32) (result i32)))
        (import "GOT.mem" "d" (global (mut i32)))
        (import "GOT.func" "f" (global (mut i32)))
        (func (export "g") (result i32) i32.const 1 call 0)
        (global (export "x") i32 (i32.const 8))
        (elem (global.get $__table_base) func 1)"#,
    )
    .to_vec()
}

#[test]
fn truncations_and_bit_flips_never_panic() {
    let bytes = valid_side();
    assert!(ModuleInfo::parse(&bytes).is_ok());
    for len in 0..bytes.len() {
        let _ = ModuleInfo::parse(&bytes[..len]);
    }
    let mut rng = Rng(0x1234_5678);
    for _ in 0..20_000 {
        let mut b = bytes.clone();
        for _ in 0..1 + rng.next() % 4 {
            let i = (rng.next() as usize) % b.len();
            b[i] ^= 1 << (rng.next() % 8);
        }
        // Whatever parses must also plan without panicking.
        if let Ok(info) = ModuleInfo::parse(&b) {
            let _ = info.func_name(0);
            let mut src = MemorySource::new();
            src.insert("/lib/libx.so", b.clone());
            let main = pie_main(0, &["libx.so"], "");
            let _ =
                Linker::new(Config::default()).plan_startup("/app/main.wasm", main, &src, &NoHost);
        }
    }
    for _ in 0..2_000 {
        let len = (rng.next() % 200) as usize;
        let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if rng.next().is_multiple_of(2) && b.len() >= 8 {
            b[..8].copy_from_slice(b"\0asm\x01\0\0\0");
        }
        let _ = ModuleInfo::parse(&b);
    }
}

#[test]
fn structural_errors_are_named() {
    let err = ModuleInfo::parse(b"").unwrap_err();
    assert!(err.to_string().contains("not a valid wasm module"), "{err}");
    let err = ModuleInfo::parse(b"\0asm\x0d\0\x01\0").unwrap_err();
    assert!(err.to_string().contains("not a valid wasm module"), "{err}");
    // Two dylink.0 sections.
    let mut twice = valid_side();
    let first = wat(r#"(module (@dylink.0 (mem-info (memory 1 0))))"#);
    twice.extend_from_slice(&first[8..]);
    assert!(matches!(
        ModuleInfo::parse(&twice),
        Err(ParseError::DuplicateDylink { .. })
    ));
    // A GOT import with the wrong type.
    let bad =
        wat(r#"(module (@dylink.0 (mem-info (memory 0 0))) (import "GOT.mem" "x" (global i32)))"#);
    let err = ModuleInfo::parse(&bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        "import `GOT.mem.x` must be a mutable i32 global, found an immutable i32 global"
    );
    // dlopen with the wrong signature.
    let bad = wat(r#"(module (import "env" "dlopen" (func (param i32) (result i32))))"#);
    assert!(
        ModuleInfo::parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("dlopen")
    );
    // An unknown dylink.0 subsection is skipped with a warning.
    let mut custom = vec![0u8, 0, 0, 0, 0, 0, 0, 0];
    custom.copy_from_slice(b"\0asm\x01\0\0\0");
    let payload = [
        &[8u8][..],
        b"dylink.0",
        &[9u8, 2, 0xAA, 0xBB],
        &[1, 4, 16, 0, 0, 0],
    ]
    .concat();
    custom.push(0);
    custom.push(payload.len() as u8);
    custom.extend_from_slice(&payload);
    let info = ModuleInfo::parse(&custom).unwrap();
    assert_eq!(info.dylink.as_ref().unwrap().memory_size, 16);
    assert!(matches!(
        info.warnings[0],
        Warning::UnknownSubsection { id: 9, .. }
    ));
    // A library that is not a dynamic library.
    let mut src = MemorySource::new();
    src.insert("/lib/libplain.so", wat("(module)"));
    let err = Linker::new(Config::default())
        .plan_startup(
            "/app/main.wasm",
            pie_main(0, &["libplain.so"], ""),
            &src,
            &NoHost,
        )
        .unwrap_err();
    assert!(err.to_string().contains("not a dynamic library"), "{err}");
    // A main that is neither PIE nor exports its memory.
    let err = Linker::new(Config::default())
        .plan_startup("/app/main.wasm", wat("(module (memory 1))"), &src, &NoHost)
        .unwrap_err();
    assert!(err.to_string().contains("cannot be a main module"), "{err}");
}

#[test]
fn wasm64_modules_use_i64_everywhere_and_do_not_mix_with_wasm32() {
    let lib = wat(r#"(module
      (@dylink.0 (mem-info (memory 16 3) (table 1 0)))
      (import "env" "memory" (memory i64 1))
      (import "env" "__indirect_function_table" (table i64 1 funcref))
      (import "env" "__memory_base" (global i64))
      (import "env" "__table_base" (global i64))
      (import "env" "__stack_pointer" (global (mut i64)))
      (import "GOT.mem" "main_data" (global (mut i64)))
      (import "env" "dlsym" (func (param i64 i64) (result i64)))
      (global (export "lib_data") i64 (i64.const 8)))"#);
    let main = wat(r#"(module
      (@dylink.0 (mem-info (memory 16 3)) (needed "lib64.so"))
      (import "env" "memory" (memory i64 1))
      (import "env" "__indirect_function_table" (table i64 1 funcref))
      (import "env" "__memory_base" (global i64))
      (import "GOT.mem" "lib_data" (global (mut i64)))
      (global (export "main_data") i64 (i64.const 0))
      (func (export "_start")))"#);
    let mut src = MemorySource::new();
    src.insert("/lib/lib64.so", lib);
    let mut l = Linker::new(Config::default());
    let mut sim = Sim::default();
    let plan = l
        .plan_startup("/app/main.wasm", main, &src, &NoHost)
        .unwrap();
    sim.apply(&plan).unwrap();
    assert!(
        plan.ops
            .iter()
            .any(|o| matches!(o, Op::CreateMemory { memory64: true, .. }))
    );
    assert!(
        plan.ops
            .iter()
            .any(|o| matches!(o, Op::CreateTable { table64: true, .. }))
    );
    assert!(
        plan.ops
            .iter()
            .filter_map(|o| match o {
                Op::CreateGlobal { ty, .. } => Some(*ty),
                _ => None,
            })
            .all(|t| t == ValType::I64)
    );
    l.commit(plan).unwrap();
    assert!(l.memory64());
    // A wasm32 library cannot join.
    let mut src32 = MemorySource::new();
    src32.insert("/lib/lib32.so", side(0, 0, &[], ""));
    let err = l
        .plan_dlopen(
            Some("lib32.so"),
            rtld::NOW,
            None,
            MAIN_GROUP,
            Facts {
                memory_bytes: sim.memory_pages * PAGE,
            },
            &src32,
            &NoHost,
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("wasm32 module cannot join a wasm64 program"),
        "{err}"
    );
}

#[test]
fn an_export_named_twice_is_an_error_at_its_second_occurrence() {
    use wasm_encoder::{CodeSection, ExportKind, ExportSection, Function, FunctionSection};
    let mut m = wasm_encoder::Module::new();
    let mut types = wasm_encoder::TypeSection::new();
    types.ty().function([], []);
    m.section(&types);
    let mut funcs = FunctionSection::new();
    funcs.function(0);
    m.section(&funcs);
    let mut exports = ExportSection::new();
    for name in ["b", "a", "c", "a"] {
        exports.export(name, ExportKind::Func, 0);
    }
    m.section(&exports);
    let mut code = CodeSection::new();
    let mut f = Function::new([]);
    f.instruction(&wasm_encoder::Instruction::End);
    code.function(&f);
    m.section(&code);
    let bytes = m.finish();
    match ModuleInfo::parse(&bytes) {
        Err(ParseError::Malformed { offset, message }) => {
            assert_eq!(message, "export `a` appears twice");
            // The fourth export's entry: after the third's name `c`.
            let c = bytes.windows(2).rposition(|w| w == [1, b'c']).unwrap();
            assert!(offset > c, "offset {offset} is the second `a`");
        }
        other => panic!("expected a malformed-module error, got {other:?}"),
    }
}

#[test]
fn exports_are_found_by_name() {
    let info = ModuleInfo::parse(&valid_side()).unwrap();
    for e in &info.exports {
        assert_eq!(info.export(&e.name).unwrap().name, e.name);
    }
    assert!(info.export("nope").is_none());
    assert!(info.export("").is_none());
}

/// A library that calls back into the main module (a cycle of calls: its call is rewritten
/// into one `call_indirect`), takes function pointers and, when `threaded`, waits on an
/// atomic (the safe-point rewrite), with the main module that closes the cycle and one that
/// loads it at run time.
fn rewritten_library(threaded: bool) -> (Vec<u8>, std::sync::Arc<[u8]>, std::sync::Arc<[u8]>) {
    let wait = if threaded {
        "i32.const 0 i32.const 0 i64.const 0 memory.atomic.wait32 drop"
    } else {
        ""
    };
    let lib = side_src(
        16,
        2,
        &[],
        &format!(
            r#"(import "env" "main_cb" (func $cb (param i32) (result i32)))
               (import "GOT.mem" "d" (global (mut i32)))
               (import "GOT.func" "main_cb" (global (mut i32)))
               (type $t (func (param i32) (result i32)))
               (func (export "side_fn") (param i32) (result i32)
                 local.get 0 call $cb
                 local.get 0 global.get 2 call_indirect (type $t) i32.add {wait})
               (func (export "side_tail") (param i32) (result i32) local.get 0 return_call $cb)
               (global (export "x") i32 (i32.const 8))
               (elem (global.get $__table_base) func 1)"#
        ),
    );
    let defs = r#"(func (export "main_cb") (param i32) (result i32) local.get 0)
                  (global (export "d") i32 (i32.const 4))"#;
    let startup = pie_main_src(
        16,
        &["libx.so"],
        &format!(r#"(import "env" "side_fn" (func (param i32) (result i32))) {defs}"#),
    );
    let runtime = pie_main_src(16, &[], defs);
    let assemble = |src: &str| if threaded { shared(src) } else { wat(src) };
    (
        assemble(&lib).to_vec(),
        assemble(&startup),
        assemble(&runtime),
    )
}

#[test]
fn mutated_libraries_never_panic_at_startup_or_through_dlopen_dlsym_dlclose() {
    let variants = [rewritten_library(false), rewritten_library(true)];
    let facts = Facts {
        memory_bytes: 16 * PAGE,
    };
    let mut rng = Rng(0x9e37_79b9);
    let mut planned = 0;
    for it in 0..3_000 {
        let (lib, startup, runtime) = &variants[it % 2];
        let mut b = lib.clone();
        // The first round of each variant is the library as written: it must load.
        let flips = if it < 2 { 0 } else { 1 + rng.next() % 3 };
        for _ in 0..flips {
            let i = (rng.next() as usize) % b.len();
            if rng.next().is_multiple_of(3) {
                b[i] = rng.next() as u8;
            } else {
                b[i] ^= 1 << (rng.next() % 8);
            }
        }
        let mut src = MemorySource::new();
        src.insert("/lib/libx.so", b);
        let mut l = Linker::new(Config::default());
        if let Ok(plan) = l.plan_startup("/app/main.wasm", startup.clone(), &src, &NoHost) {
            l.commit(plan).unwrap();
            planned += 1;
        } else {
            assert!(it >= 2, "the unmutated library loads at startup");
        }
        let mut l = Linker::new(Config::default());
        let plan = l
            .plan_startup("/app/main.wasm", runtime.clone(), &src, &NoHost)
            .unwrap();
        l.commit(plan).unwrap();
        for flags in [rtld::NOW, rtld::LAZY | rtld::GLOBAL] {
            let Ok(plan) = l.plan_dlopen(
                Some("libx.so"),
                flags,
                None,
                MAIN_GROUP,
                facts,
                &src,
                &NoHost,
            ) else {
                assert!(it >= 2, "the unmutated library loads at run time");
                continue;
            };
            let Outcome::Loaded(h) = l.commit(plan).unwrap() else {
                panic!("a dlopen yields its module")
            };
            if let Ok(DlsymAnswer::Plan(plan)) =
                l.plan_dlsym(Handle::Module(h), "side_fn", None, MAIN_GROUP)
            {
                l.commit(plan).unwrap();
            }
            let plan = l.plan_dlclose(h, MAIN_GROUP).unwrap();
            l.commit(plan).unwrap();
        }
    }
    // Some mutations leave a library that still loads: those reach the rewrites.
    assert!(planned > 100, "{planned} of 3,000 planned");
}
