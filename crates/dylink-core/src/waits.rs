//! Safe points after `memory.atomic.wait`.
//!
//! A thread parked in `memory.atomic.wait32/64` may be woken to call code another thread
//! loaded while it slept (a function pointer handed over through shared memory). Its group
//! must catch up before the next instruction runs. The core rewrites every module that waits
//! on a shared memory so that each wait instruction is followed by
//! `call $dylink.after_wait`, an import of type `(i32) -> i32` that the adapter serves by
//! catching the calling group up and returning its argument (the wait's result) unchanged.
//!
//! The rewrite appends one function import, so every defined function's index moves up by
//! one; calls, `ref.func`, exports, the start function, element segments and the `name`
//! section are renumbered with it. Nothing else changes: the `dylink.0` section, data, other
//! custom sections and the wait instructions themselves are kept as they were, so the
//! engine's own wait and notify semantics (timeouts, spurious-free wakes, alignment traps)
//! are untouched. The module's [`ModuleInfo`] is read from the rewritten bytes, so indices the
//! core keeps (`dladdr`, canonical slots) match what the engine runs.

use wasm_encoder::reencode::{self, Reencode};
use wasm_encoder::{CodeSection, EntityType, ImportSection, Instruction, SectionId, TypeSection};
use wasmparser::{FunctionBody, Operator, Parser};

use crate::error::ParseError as Error;
use crate::module::{ImportRole, ModuleInfo};
use crate::prelude::*;

/// Namespace of the wait hook import.
pub const HOOK_MODULE: &str = "dylink";
/// Field name of the wait hook import: `(i32) -> i32`, returns its argument.
pub const HOOK_NAME: &str = "after_wait";

/// Read a module, rewriting its waits first when it has any on a shared memory. Returns the
/// bytes to instantiate (the input itself when nothing changed) and their description.
pub fn prepare(bytes: Arc<[u8]>) -> Result<(Arc<[u8]>, ModuleInfo), Error> {
    let info = ModuleInfo::parse(&bytes)?;
    if !needs_hooks(&bytes, &info) {
        return Ok((bytes, info));
    }
    match hook_waits(&bytes, &info)? {
        Some(rewritten) => {
            let info = ModuleInfo::parse(&rewritten)?;
            Ok((rewritten.into(), info))
        }
        None => Ok((bytes, info)),
    }
}

/// A cheap filter: a shared memory, not hooked already, and the opcode bytes of a wait
/// (`0xfe 0x01` / `0xfe 0x02`) somewhere in the code section.
fn needs_hooks(bytes: &[u8], info: &ModuleInfo) -> bool {
    if !info.shared_memory || info.imports.iter().any(|i| i.role == ImportRole::AfterWait) {
        return false;
    }
    let Some(code) = info.code_range.clone().and_then(|r| bytes.get(r)) else {
        return false;
    };
    code.windows(2)
        .any(|w| w[0] == 0xfe && (w[1] == 0x01 || w[1] == 0x02))
}

/// The rewritten module, or `None` when no function body contains a wait after all.
fn hook_waits(bytes: &[u8], info: &ModuleInfo) -> Result<Option<Vec<u8>>, Error> {
    let mut r = Hooker {
        imported_funcs: info.imported_funcs,
        hook_type: info.types.len() as u32,
        hooked: 0,
        imports_done: false,
    };
    let mut module = wasm_encoder::Module::new();
    r.parse_core_module(&mut module, Parser::new(0), bytes)
        .map_err(|e| Error::Malformed {
            offset: 0,
            message: format!("while adding wait safe points: {e}"),
        })?;
    if r.hooked == 0 {
        return Ok(None);
    }
    Ok(Some(module.finish()))
}

struct Hooker {
    imported_funcs: u32,
    hook_type: u32,
    hooked: u32,
    imports_done: bool,
}

impl Hooker {
    fn hook_func(&self) -> u32 {
        self.imported_funcs
    }

    fn add_hook_import(&mut self, imports: &mut ImportSection) {
        imports.import(HOOK_MODULE, HOOK_NAME, EntityType::Function(self.hook_type));
        self.imports_done = true;
    }
}

impl Reencode for Hooker {
    type Error = &'static str;

    fn function_index(&mut self, func: u32) -> Result<u32, reencode::Error<&'static str>> {
        Ok(if func >= self.imported_funcs {
            func + 1
        } else {
            func
        })
    }

    fn parse_type_section(
        &mut self,
        types: &mut TypeSection,
        section: wasmparser::TypeSectionReader<'_>,
    ) -> Result<(), reencode::Error<&'static str>> {
        reencode::utils::parse_type_section(self, types, section)?;
        types
            .ty()
            .function([wasm_encoder::ValType::I32], [wasm_encoder::ValType::I32]);
        Ok(())
    }

    fn parse_import_section(
        &mut self,
        imports: &mut ImportSection,
        section: wasmparser::ImportSectionReader<'_>,
    ) -> Result<(), reencode::Error<&'static str>> {
        reencode::utils::parse_import_section(self, imports, section)?;
        self.add_hook_import(imports);
        Ok(())
    }

    fn intersperse_section_hook(
        &mut self,
        module: &mut wasm_encoder::Module,
        after: Option<SectionId>,
        before: Option<SectionId>,
    ) -> Result<(), reencode::Error<&'static str>> {
        // A module without imports (a non-PIE main defining its shared memory) gets an
        // import section right after its types.
        if after == Some(SectionId::Type) && before != Some(SectionId::Import) {
            let mut imports = ImportSection::new();
            self.add_hook_import(&mut imports);
            module.section(&imports);
        }
        Ok(())
    }

    fn parse_code_section(
        &mut self,
        code: &mut CodeSection,
        section: wasmparser::CodeSectionReader<'_>,
    ) -> Result<(), reencode::Error<&'static str>> {
        if !self.imports_done {
            return Err(reencode::Error::UserError(
                "a module with code but no type section",
            ));
        }
        reencode::utils::parse_code_section(self, code, section)
    }

    fn parse_function_body(
        &mut self,
        code: &mut CodeSection,
        func: FunctionBody<'_>,
    ) -> Result<(), reencode::Error<&'static str>> {
        let mut f = self.new_function_with_parsed_locals(&func)?;
        let mut reader = func.get_operators_reader()?;
        while !reader.eof() {
            let op = reader.read()?;
            let wait = matches!(
                op,
                Operator::MemoryAtomicWait32 { .. } | Operator::MemoryAtomicWait64 { .. }
            );
            f.instruction(&self.instruction(op)?);
            if wait {
                f.instruction(&Instruction::Call(self.hook_func()));
                self.hooked += 1;
            }
        }
        code.function(&f);
        Ok(())
    }
}
