//! The module reader against wasmparser's own readers: the lean reader of the import, export
//! and global sections must say what wasmparser says, and what it does not expect must reach
//! wasmparser (whose errors are the ones reported).

use dylink_core::{ExportKind, ImportType, ModuleInfo};
use wasmparser::{Operator, Parser, Payload, TypeRef};

/// (module, name, what) of every import, as wasmparser reads it.
fn imports(bytes: &[u8]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for p in Parser::new(0).parse_all(bytes) {
        if let Payload::ImportSection(r) = p.unwrap() {
            for i in r.into_imports() {
                let i = i.unwrap();
                let what = match i.ty {
                    TypeRef::Func(t) | TypeRef::FuncExact(t) => format!("func {t}"),
                    TypeRef::Global(g) => format!("global {} {}", g.content_type, g.mutable),
                    TypeRef::Memory(m) => {
                        format!("memory {} {:?} {}", m.initial, m.maximum, m.shared)
                    }
                    TypeRef::Table(t) => format!("table {}", t.initial),
                    TypeRef::Tag(t) => format!("tag {}", t.func_type_idx),
                };
                out.push((i.module.into(), i.name.into(), what));
            }
        }
    }
    out
}

fn our_imports(info: &ModuleInfo) -> Vec<(String, String, String)> {
    info.imports
        .iter()
        .map(|i| {
            let what = match &i.ty {
                ImportType::Func(t) => format!("func {t}"),
                ImportType::Global { ty, mutable } => format!("global {ty} {mutable}"),
                ImportType::Memory(m) => {
                    format!("memory {} {:?} {}", m.min_pages, m.max_pages, m.shared)
                }
                ImportType::Table(t) => format!("table {}", t.min),
                ImportType::Tag(t) => format!("tag {t}"),
            };
            (info.import_module(i).to_string(), i.name.to_string(), what)
        })
        .collect()
}

/// (name, what) of every export, with a global's constant value.
fn exports(bytes: &[u8]) -> Vec<(String, String)> {
    let mut globals: Vec<Option<u64>> = Vec::new();
    let mut out = Vec::new();
    for p in Parser::new(0).parse_all(bytes) {
        match p.unwrap() {
            Payload::ImportSection(r) => {
                for i in r.into_imports() {
                    if let TypeRef::Global(_) = i.unwrap().ty {
                        globals.push(None);
                    }
                }
            }
            Payload::GlobalSection(r) => {
                for g in r {
                    let mut ops = g.unwrap().init_expr.get_operators_reader();
                    let v = match ops.read().unwrap() {
                        Operator::I32Const { value } => Some(value as u32 as u64),
                        Operator::I64Const { value } => Some(value as u64),
                        _ => None,
                    };
                    let end = matches!(ops.read().unwrap(), Operator::End);
                    globals.push(v.filter(|_| end));
                }
            }
            Payload::ExportSection(r) => {
                for e in r {
                    let e = e.unwrap();
                    let what = match e.kind {
                        wasmparser::ExternalKind::Func => format!("func {}", e.index),
                        wasmparser::ExternalKind::Global => {
                            format!("global {:?}", globals[e.index as usize])
                        }
                        k => format!("{k:?}"),
                    };
                    out.push((e.name.into(), what));
                }
            }
            _ => {}
        }
    }
    out
}

fn our_exports(info: &ModuleInfo) -> Vec<(String, String)> {
    info.exports
        .iter()
        .map(|e| {
            let what = match &e.kind {
                ExportKind::Func { index, .. } => format!("func {index}"),
                ExportKind::Global { value, .. } => format!("global {value:?}"),
                ExportKind::Memory => "Memory".into(),
                ExportKind::Table => "Table".into(),
                ExportKind::Tag(_) => "Tag".into(),
            };
            (e.name.to_string(), what)
        })
        .collect()
}

/// Every module the project builds (the conformance cases and examples, written by clang
/// and wasm-ld) reads the same as through wasmparser's readers.
#[test]
fn every_built_module_reads_as_wasmparser_reads_it() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut stack = vec![root.join("conformance/cases"), root.join("examples")];
    let mut seen = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            if !bytes.starts_with(b"\0asm\x01\0\0\0") {
                continue;
            }
            let info =
                ModuleInfo::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(our_imports(&info), imports(&bytes), "{}", path.display());
            assert_eq!(our_exports(&info), exports(&bytes), "{}", path.display());
            seen += 1;
        }
    }
    assert!(seen > 50, "only {seen} modules found");
}

/// What the lean reader does not expect goes to wasmparser, and its errors are the ones
/// reported.
#[test]
fn unexpected_encodings_fall_back() {
    // An empty import name (the compact encodings start with one).
    let bytes =
        wat::parse_str(r#"(module (import "env" "" (func)) (export "" (func 0)))"#).unwrap();
    let info = ModuleInfo::parse(&bytes).unwrap();
    assert_eq!(&*info.imports[0].name, "");
    assert_eq!(&*info.exports[0].name, "");
    // A non-constant global initialiser.
    let bytes = wat::parse_str(
        r#"(module (global i32 (i32.add (i32.const 1) (i32.const 2))) (global (export "g") i64 (i64.const -1)))"#,
    )
    .unwrap();
    let info = ModuleInfo::parse(&bytes).unwrap();
    assert!(matches!(
        info.exports[0].kind,
        ExportKind::Global {
            value: Some(u64::MAX),
            ..
        }
    ));
    // A name that is not UTF-8: wasmparser's error.
    let mut bytes = wat::parse_str(r#"(module (import "env" "ab" (func)))"#).unwrap();
    let at = bytes.windows(2).position(|w| w == b"ab").unwrap();
    bytes[at] = 0xFF;
    let err = ModuleInfo::parse(&bytes).unwrap_err().to_string();
    assert!(err.contains("malformed UTF-8"), "{err}");
}

/// Each import keeps its own namespace however many a module names and however they are
/// interleaved (the reader holds each distinct one once), on the lean path and on
/// wasmparser's.
#[test]
fn many_namespaces_in_any_order_read_as_written() {
    for empty_name in [false, true] {
        let mut w = String::from("(module");
        for i in 0..120 {
            // 40 namespaces, revisited out of order.
            let ns = (i * 7) % 40;
            let name = if empty_name && i == 0 {
                String::new()
            } else {
                format!("f{i}")
            };
            w.push_str(&format!(r#" (import "ns{ns}" "{name}" (func))"#));
        }
        w.push(')');
        let bytes = wat::parse_str(&w).unwrap();
        let info = ModuleInfo::parse(&bytes).unwrap();
        assert_eq!(
            our_imports(&info),
            imports(&bytes),
            "empty name: {empty_name}"
        );
        assert_eq!(info.import_module(&info.imports[1]), "ns7");
        assert_eq!(&*info.import_module_name(&info.imports[119]), "ns33");
    }
}
