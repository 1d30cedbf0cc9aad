//! Generated lazy-binding trampolines.
//!
//! A function import that cannot be bound directly at instantiation (its definer is
//! instantiated later, or it is not defined yet) is bound to a tiny generated function that
//! forwards its arguments with `call_indirect` through an entry of the generated module's own
//! table (imported as `dylink.table`, created for it alone). The entry is written once the
//! callee exists, so every later call costs one `call_indirect` and never
//! leaves wasm. In a shared-memory program each trampoline first runs the safe-point check
//! of [`crate::safepoints`], so a thread calls through an entry another thread filled only
//! after its own copy of the entry is filled too.

use wasm_encoder::{
    CodeSection, EntityType, ExportKind, ExportSection, Function, FunctionSection, GlobalType,
    ImportSection, Instruction, MemoryType as EncMemoryType, Module, RefType, SectionId, TableType,
    TypeSection,
};

use crate::module::{FuncType, MemoryType, ValType};
use crate::prelude::*;
use crate::safepoints::{CATCH_UP_NAME, COUNTER_NAME, HOOK_MODULE, SEEN_NAME};

fn encode_val(ty: ValType) -> Option<wasm_encoder::ValType> {
    Some(match ty {
        ValType::I32 => wasm_encoder::ValType::I32,
        ValType::I64 => wasm_encoder::ValType::I64,
        ValType::F32 => wasm_encoder::ValType::F32,
        ValType::F64 => wasm_encoder::ValType::F64,
        ValType::V128 => wasm_encoder::ValType::V128,
        ValType::FuncRef => wasm_encoder::ValType::Ref(RefType::FUNCREF),
        ValType::ExternRef => wasm_encoder::ValType::Ref(RefType::EXTERNREF),
        ValType::ExnRef => wasm_encoder::ValType::Ref(RefType::EXNREF),
        ValType::OtherRef => return None,
    })
}

/// Whether a trampoline can forward a function of this type.
pub fn can_forward(ty: &FuncType) -> bool {
    ty.params
        .iter()
        .chain(ty.results.iter())
        .all(|t| encode_val(*t).is_some())
}

/// The name `t{i}` of trampoline `i`'s export, the generated module's export at position
/// `i`: an adapter that fetches exports by name gets it without an allocation.
pub fn export_name(i: usize) -> ExportName {
    let mut name = ExportName {
        buf: [0; 21],
        start: 0,
    };
    let len = name_bytes(i, &mut name.buf).len();
    name.start = (name.buf.len() - len) as u8;
    name
}

/// A trampoline's export name, `t` and its index in decimal ([`export_name`]).
#[derive(Clone, Copy)]
pub struct ExportName {
    buf: [u8; 21],
    start: u8,
}

impl ExportName {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        // ASCII: `t` and decimal digits.
        core::str::from_utf8(&self.buf[self.start as usize..]).unwrap_or("")
    }
}

impl core::ops::Deref for ExportName {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl core::fmt::Display for ExportName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::fmt::Debug for ExportName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// `t{i}` written into the end of `buf` without the formatting machinery: a program with
/// tens of thousands of lazily bound imports names as many trampolines. ASCII.
fn name_bytes(i: usize, buf: &mut [u8; 21]) -> &[u8] {
    let mut k = buf.len();
    let mut n = i;
    loop {
        k -= 1;
        buf[k] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    k -= 1;
    buf[k] = b't';
    &buf[k..]
}

/// One generated module's trampolines, in order: each one's type, kept once per distinct
/// signature (trampoline `i` is the module's export `i`, [`export_name`]). A program of
/// tens of thousands of lazily bound imports has as many trampolines but a few dozen
/// signatures: each trampoline costs a 4-byte type id here, not a copy of its type.
#[derive(Default)]
pub(crate) struct Set {
    /// The distinct signatures, in first-use order, and their ids.
    types: Vec<FuncType>,
    ids: HashMap<FuncType, u32>,
    /// Each trampoline's signature id.
    of: Vec<u32>,
}

impl Set {
    /// Number of trampolines.
    pub(crate) fn len(&self) -> usize {
        self.of.len()
    }

    /// Room for `additional` more trampolines.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.of.reserve(additional);
    }

    /// Add a trampoline of type `ty`; its index.
    pub(crate) fn push(&mut self, ty: &FuncType) -> usize {
        // Consecutive imports mostly share a signature: the last one is tried first.
        let id = match self.of.last() {
            Some(&last) if self.types[last as usize] == *ty => last,
            _ => match self.ids.get(ty) {
                Some(&id) => id,
                None => {
                    let id = self.types.len() as u32;
                    self.types.push(ty.clone());
                    self.ids.insert(ty.clone(), id);
                    id
                }
            },
        };
        self.of.push(id);
        self.of.len() - 1
    }

    /// The module [`encode`] describes, for these trampolines.
    pub(crate) fn encode(&self, checked: Option<MemoryType>) -> Arc<[u8]> {
        encode_set(&self.types, &self.of, checked)
    }
}

/// Encode a module that imports a funcref table of one entry per trampoline
/// (`dylink.table`, [`Binding::TrampolineTable`](crate::Binding::TrampolineTable)) and
/// exports `t0`, `t1`, …, where `t{i}` has type `types[i]` and calls through entry `i`. It
/// needs nothing else of the program, so it can be instantiated before any other module (a
/// non-PIE main needs its trampolines before its own table exists). Every type must satisfy
/// [`can_forward`].
///
/// With `checked` (the program's shared memory), it also imports `env.memory` (with these
/// limits, any current size), `dylink.catch_up`, `dylink.seen` and `dylink.commit_counter`,
/// in that order after the table, and every trampoline runs the safe-point check first.
pub fn encode(types: &[FuncType], checked: Option<MemoryType>) -> Vec<u8> {
    let mut set = Set::default();
    set.reserve(types.len());
    for ty in types {
        set.push(ty);
    }
    set.encode(checked).to_vec()
}

/// [`encode`] of trampolines whose types are `distinct[of[i]]`, written in place into the
/// shared slice the plan's op holds (through a vector, it was copied once more: a megabyte
/// and a half, most of it page faults, for 50,000 trampolines).
fn encode_set(distinct: &[FuncType], of: &[u32], checked: Option<MemoryType>) -> Arc<[u8]> {
    let mut module = Module::new();
    let mut section = TypeSection::new();
    // Each distinct signature's index in the type section. With the check, type 0 is
    // `dylink.catch_up`'s `() -> ()`, which a trampoline of that type shares.
    let mut wire = Vec::with_capacity(distinct.len());
    if checked.is_some() {
        section.ty().function([], []);
    }
    for ty in distinct {
        if checked.is_some() && ty.params.is_empty() && ty.results.is_empty() {
            wire.push(0);
            continue;
        }
        wire.push(section.len());
        let params: Vec<_> = ty.params.iter().filter_map(|t| encode_val(*t)).collect();
        let results: Vec<_> = ty.results.iter().filter_map(|t| encode_val(*t)).collect();
        section.ty().function(params, results);
    }
    module.section(&section);

    let mut imports = ImportSection::new();
    imports.import(
        "dylink",
        "table",
        EntityType::Table(TableType {
            element_type: RefType::FUNCREF,
            table64: false,
            minimum: of.len() as u64,
            maximum: None,
            shared: false,
        }),
    );
    if let Some(mem) = checked {
        imports.import(
            "env",
            "memory",
            EntityType::Memory(EncMemoryType {
                minimum: 0,
                maximum: mem.max_pages,
                memory64: mem.memory64,
                shared: mem.shared,
                page_size_log2: None,
            }),
        );
        imports.import(HOOK_MODULE, CATCH_UP_NAME, EntityType::Function(0));
        let global = |val_type, mutable| {
            EntityType::Global(GlobalType {
                val_type,
                mutable,
                shared: false,
            })
        };
        imports.import(
            HOOK_MODULE,
            SEEN_NAME,
            global(wasm_encoder::ValType::I32, true),
        );
        let ptr = if mem.memory64 {
            wasm_encoder::ValType::I64
        } else {
            wasm_encoder::ValType::I32
        };
        imports.import(HOOK_MODULE, COUNTER_NAME, global(ptr, false));
    }
    module.section(&imports);
    // `dylink.catch_up` is function 0 when imported.
    let first = checked.is_some() as u32;

    // Each signature's body around the index: locals, the check, the `local.get`s before;
    // `call_indirect type table` and `end` after. A trampoline writes its size, the two
    // parts and its index between them.
    let parts: Vec<(Vec<u8>, Vec<u8>)> = distinct
        .iter()
        .zip(&wire)
        .map(|(ty, &wire)| {
            let mut head = vec![0x00]; // no locals
            if checked.is_some() {
                // Globals: `seen` is 0, the counter 1; `catch_up` is function 0.
                crate::safepoints::encode_check(&mut head, 1, 0, 0);
            }
            for p in 0..ty.params.len() {
                head.push(0x20); // local.get
                uleb(&mut head, p as u32);
            }
            head.push(0x41); // i32.const
            let mut tail = vec![0x11]; // call_indirect type table
            uleb(&mut tail, wire);
            tail.extend_from_slice(&[0x00, 0x0b]); // table 0, end
            (head, tail)
        })
        .collect();

    // The function, export and code sections are written as bytes, straight into the
    // module's one buffer, sized first: tens of thousands of trampolines are common (a
    // type id, an export `t{i}` and a body of `local.get`s, `i32.const i`, `call_indirect`
    // each), and written section by section through wasm-encoder they were copied twice
    // more, the module's buffer doubling as it grew.
    let count = of.len() as u32;
    let name_len = |i: usize| 1 + decimal_len(i);
    let body_len = |i: usize, id: u32| {
        let (head, tail) = &parts[id as usize];
        head.len() + sleb_len(i as i32) + tail.len()
    };
    let funcs_len = uleb_len(count)
        + of.iter()
            .map(|&id| uleb_len(wire[id as usize]))
            .sum::<usize>();
    let exports_len = uleb_len(count)
        + (0..of.len())
            .map(|i| {
                let n = name_len(i);
                uleb_len(n as u32) + n + 1 + uleb_len(first + i as u32)
            })
            .sum::<usize>();
    let code_len = uleb_len(count)
        + (of.iter().enumerate())
            .map(|(i, &id)| {
                let b = body_len(i, id);
                uleb_len(b as u32) + b
            })
            .sum::<usize>();
    let head = module.finish();
    let section = |len: usize| 1 + uleb_len(len as u32) + len;
    let size = head.len() + section(funcs_len) + section(exports_len) + section(code_len);
    // One allocation of exactly `size` (a `TrustedLen` iterator collects in place).
    let mut module: Arc<[u8]> = core::iter::repeat_n(0u8, size).collect();
    let Some(buf) = Arc::get_mut(&mut module) else {
        // A slice just made has no other owner.
        return module;
    };
    let mut out = Out { buf, at: 0 };
    out.extend_from_slice(&head);

    out.push(SectionId::Function as u8);
    uleb(&mut out, funcs_len as u32);
    uleb(&mut out, count);
    for &id in of {
        uleb(&mut out, wire[id as usize]);
    }

    out.push(SectionId::Export as u8);
    uleb(&mut out, exports_len as u32);
    uleb(&mut out, count);
    let mut buf = [0u8; 21];
    for i in 0..of.len() {
        let name = name_bytes(i, &mut buf);
        uleb(&mut out, name.len() as u32);
        out.extend_from_slice(name);
        out.push(0x00); // a function
        uleb(&mut out, first + i as u32);
    }

    out.push(SectionId::Code as u8);
    uleb(&mut out, code_len as u32);
    uleb(&mut out, count);
    for (i, &id) in of.iter().enumerate() {
        let (head, tail) = &parts[id as usize];
        uleb(&mut out, body_len(i, id) as u32);
        out.extend_from_slice(head);
        sleb(&mut out, i as i32);
        out.extend_from_slice(tail);
    }
    debug_assert_eq!(out.at, size, "trampoline module size computed wrong");
    module
}

/// Writes into a slice sized beforehand. Past its end nothing is written (and debug builds
/// stop: the sizes computed first were wrong).
struct Out<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Out<'_> {
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        let end = self.at + bytes.len();
        match self.buf.get_mut(self.at..end) {
            Some(room) => room.copy_from_slice(bytes),
            None => debug_assert!(false, "trampoline module larger than computed"),
        }
        self.at = end;
    }
}

/// Somewhere bytes go one at a time: the module being written, or a part of a body.
trait Leb {
    fn push(&mut self, byte: u8);
}

impl Leb for Out<'_> {
    fn push(&mut self, byte: u8) {
        self.extend_from_slice(&[byte]);
    }
}

impl Leb for Vec<u8> {
    fn push(&mut self, byte: u8) {
        Vec::push(self, byte)
    }
}

/// Bytes of `v` as unsigned LEB128.
fn uleb_len(v: u32) -> usize {
    (32 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Bytes of `v` as signed LEB128.
fn sleb_len(v: i32) -> usize {
    // The bits of the value and its sign.
    let bits = 33
        - if v < 0 {
            v.leading_ones()
        } else {
            v.leading_zeros()
        } as usize;
    bits.div_ceil(7)
}

/// Decimal digits of `i`.
fn decimal_len(mut i: usize) -> usize {
    let mut n = 1;
    while i >= 10 {
        i /= 10;
        n += 1;
    }
    n
}

fn uleb(out: &mut impl Leb, mut v: u32) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn sleb(out: &mut impl Leb, mut v: i32) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        let done = (v == 0 && byte & 0x40 == 0) || (v == -1 && byte & 0x40 != 0);
        if done {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Encode a module exporting `stub`, a function of type `ty` that calls the imported
/// `dylink.trap: () -> ()` (which raises the trap naming the symbol) and then traps itself.
/// For engines whose host functions of arbitrary type cannot live in tables.
pub fn encode_trap_stub(ty: &FuncType) -> Vec<u8> {
    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], []);
    let params: Vec<_> = ty.params.iter().filter_map(|t| encode_val(*t)).collect();
    let results: Vec<_> = ty.results.iter().filter_map(|t| encode_val(*t)).collect();
    types.ty().function(params, results);
    module.section(&types);
    let mut imports = ImportSection::new();
    imports.import("dylink", "trap", EntityType::Function(0));
    module.section(&imports);
    let mut funcs = FunctionSection::new();
    funcs.function(1);
    module.section(&funcs);
    let mut exports = ExportSection::new();
    exports.export("stub", ExportKind::Func, 1);
    module.section(&exports);
    let mut code = CodeSection::new();
    let mut f = Function::new([]);
    f.instruction(&Instruction::Call(0));
    f.instruction(&Instruction::Unreachable);
    f.instruction(&Instruction::End);
    code.function(&f);
    module.section(&code);
    module.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leb_lengths_match_the_encoders() {
        let edges = [
            0u32,
            1,
            63,
            64,
            127,
            128,
            8191,
            8192,
            16383,
            16384,
            1 << 21,
            1 << 28,
        ];
        for v in edges
            .iter()
            .flat_map(|&v| [v.saturating_sub(1), v, v + 1])
            .chain([u32::MAX])
        {
            let mut out = Vec::new();
            uleb(&mut out, v);
            assert_eq!(uleb_len(v), out.len(), "uleb {v}");
            for s in [v as i32, (v as i32).wrapping_neg()] {
                out.clear();
                sleb(&mut out, s);
                assert_eq!(sleb_len(s), out.len(), "sleb {s}");
            }
        }
        for i in [0, 9, 10, 99, 100, 12345, usize::MAX] {
            assert_eq!(decimal_len(i), name_bytes(i, &mut [0; 21]).len() - 1, "{i}");
        }
    }

    #[test]
    fn trampolines_validate() {
        let a = FuncType::new(&[ValType::I32, ValType::F64], &[ValType::I64]);
        let b = FuncType::new(&[], &[]);
        let bytes = encode(&[a.clone(), b, a.clone()], None);
        let mut v = wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all());
        v.validate_all(&bytes)
            .expect("generated trampolines validate");
        let info = crate::ModuleInfo::parse(&bytes).unwrap();
        assert_eq!(info.exports.len(), 3);
        assert_eq!(&*info.exports[1].name, "t1");
        for i in [0, 7, 10, 99, 1234, usize::MAX] {
            assert_eq!(export_name(i).as_str(), alloc::format!("t{i}"));
            assert_eq!(export_name(i).to_string(), alloc::format!("t{i}"));
        }
        assert!(matches!(&info.imports[0].ty, crate::ImportType::Table(t) if t.min == 3));
        // Multi-byte immediates: 300 trampolines, some with many parameters.
        let wide = FuncType::new(&[ValType::I64; 130], &[ValType::F32]);
        let many: Vec<FuncType> = (0..300)
            .map(|i| if i % 7 == 0 { wide.clone() } else { a.clone() })
            .collect();
        let bytes = encode(&many, None);
        wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
            .validate_all(&bytes)
            .expect("300 trampolines validate");
        // Each trampoline keeps its own signature although the module lists each once.
        let info = crate::ModuleInfo::parse(&bytes).unwrap();
        assert_eq!(info.types.len(), 2);
        for (i, ty) in many.iter().enumerate() {
            let crate::ExportKind::Func { ty: t, .. } = info.exports[i].kind else {
                panic!("t{i} is a function");
            };
            assert_eq!(&info.types[t as usize], ty, "t{i}");
        }
        // Checked (a shared-memory program): the safe-point imports after the table, and
        // exports still name the trampolines, one index up past `dylink.catch_up`.
        for memory64 in [false, true] {
            let mem = MemoryType {
                min_pages: 0,
                max_pages: Some(100),
                shared: true,
                memory64,
            };
            let bytes = encode(&[a.clone(), FuncType::default()], Some(mem));
            wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
                .validate_all(&bytes)
                .expect("checked trampolines validate");
            let info = crate::ModuleInfo::parse(&bytes).unwrap();
            let roles: Vec<_> = info.imports.iter().map(|i| i.role.clone()).collect();
            assert_eq!(
                roles,
                [
                    crate::ImportRole::Host,
                    crate::ImportRole::Memory,
                    crate::ImportRole::CatchUp,
                    crate::ImportRole::Seen,
                    crate::ImportRole::CommitCounter
                ]
            );
            assert!(
                matches!(
                    info.exports[1].kind,
                    crate::ExportKind::Func { index: 2, ty: 0 }
                ),
                "t1 is `() -> ()`, sharing the catch-up's type"
            );
        }
        let stub = encode_trap_stub(&a);
        wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
            .validate_all(&stub)
            .expect("trap stub validates");
    }
}
