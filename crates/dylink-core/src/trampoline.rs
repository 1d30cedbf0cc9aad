//! Generated lazy-binding trampolines.
//!
//! A function import that cannot be bound directly at instantiation (its definer is
//! instantiated later, or it is not defined yet) is bound to a tiny generated function that
//! forwards its arguments with `call_indirect` through an entry of the generated module's own
//! table. The entry is written once the callee exists, so every later call costs one `call_indirect` and never
//! leaves wasm.

use wasm_encoder::{
    CodeSection, ExportKind, ExportSection, Function, FunctionSection, Instruction, Module,
    RefType, TableSection, TableType, TypeSection,
};

use crate::module::{FuncType, ValType};
use crate::prelude::*;

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

/// The name of trampoline `i`'s export.
pub fn export_name(i: usize) -> String {
    format!("t{i}")
}

/// The name of the generated module's table export.
pub const TABLE_EXPORT: &str = "table";

/// Encode a module that defines a funcref table with one entry per trampoline (exported as
/// [`TABLE_EXPORT`]) and exports `t0`, `t1`, …, where `t{i}` has type `types[i]` and calls
/// through entry `i`. It imports nothing, so it can be instantiated before any other module
/// (a non-PIE main needs its trampolines before its own table exists). Every type must
/// satisfy [`can_forward`].
pub fn encode(types: &[FuncType]) -> Vec<u8> {
    let mut module = Module::new();
    let mut section = TypeSection::new();
    let mut type_ids: Vec<(&FuncType, u32)> = Vec::new();
    let mut func_types = Vec::with_capacity(types.len());
    for ty in types {
        let id = match type_ids.iter().find(|(t, _)| *t == ty) {
            Some((_, id)) => *id,
            None => {
                let id = type_ids.len() as u32;
                let params: Vec<_> = ty.params.iter().filter_map(|t| encode_val(*t)).collect();
                let results: Vec<_> = ty.results.iter().filter_map(|t| encode_val(*t)).collect();
                section.ty().function(params, results);
                type_ids.push((ty, id));
                id
            }
        };
        func_types.push(id);
    }
    module.section(&section);

    let mut funcs = FunctionSection::new();
    for id in &func_types {
        funcs.function(*id);
    }
    module.section(&funcs);

    let mut tables = TableSection::new();
    tables.table(TableType {
        element_type: RefType::FUNCREF,
        table64: false,
        minimum: types.len() as u64,
        maximum: Some(types.len() as u64),
        shared: false,
    });
    module.section(&tables);

    let mut exports = ExportSection::new();
    exports.export(TABLE_EXPORT, ExportKind::Table, 0);
    for i in 0..types.len() {
        exports.export(&export_name(i), ExportKind::Func, i as u32);
    }
    module.section(&exports);

    let mut code = CodeSection::new();
    for (i, (ty, id)) in types.iter().zip(&func_types).enumerate() {
        let mut f = Function::new([]);
        for p in 0..ty.params.len() {
            f.instruction(&Instruction::LocalGet(p as u32));
        }
        f.instruction(&Instruction::I32Const(i as i32));
        f.instruction(&Instruction::CallIndirect {
            type_index: *id,
            table_index: 0,
        });
        f.instruction(&Instruction::End);
        code.function(&f);
    }
    module.section(&code);
    module.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trampolines_validate() {
        let a = FuncType::new(&[ValType::I32, ValType::F64], &[ValType::I64]);
        let b = FuncType::new(&[], &[]);
        let bytes = encode(&[a.clone(), b, a]);
        let mut v = wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all());
        v.validate_all(&bytes)
            .expect("generated trampolines validate");
        let info = crate::ModuleInfo::parse(&bytes).unwrap();
        assert_eq!(info.exports.len(), 4);
        assert_eq!(&*info.exports[2].name, "t1");
        assert!(info.imports.is_empty());
        assert_eq!(info.defined_table.unwrap().min, 3);
    }
}
