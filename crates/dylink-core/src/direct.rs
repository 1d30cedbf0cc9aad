//! Direct lazy calls: a module's calls to a lazily bound import go straight through the
//! function table instead of through a trampoline.
//!
//! An import bound before its definer is instantiated (modules that call each other, so
//! one must wait; a symbol a later `dlopen` defines) must be bound to something that
//! exists when the importer is instantiated: a generated trampoline that forwards through a
//! table slot. Every call then costs two calls. When the core plans such a binding it also
//! rewrites the importer's code so that each `call $f` to that import becomes
//!
//! ```wat
//! i32.const <slot>                  ;; i64.const for a 64-bit table
//! call_indirect $table (type $f)
//! ```
//!
//! and `return_call $f` the matching `return_call_indirect`, where `<slot>` is the
//! function's canonical slot in the program's table (its `GOT.func` value, the same in every
//! module), or the slot a not yet defined symbol waits in, which a later load fills. A
//! lazily bound call is then one indirect call, what a function-pointer call costs. The code
//! is scanned once, only when some import went to a trampoline, and only the imports it
//! calls get a slot.
//!
//! The import itself stays, bound to its trampoline, so `ref.func`, element segments and
//! exports that name it keep working; function indices do not move, so everything the core
//! knows about the module (its [`ModuleInfo`]) stays true. Only the code section changes
//! (and the import section, below).
//!
//! A module that does not import the program's table (clang leaves the import out of a
//! library that takes no function's address) gets the import appended, and its instantiation
//! binds it like any other; no other index moves. Not rewritten: modules that define a table
//! of their own, and programs whose table the main module defines (engines differ in whether
//! they see the host's writes to such a table before the call).
//!
//! In a threaded program (a shared memory) only calls to a definer loaded by the same plan
//! are redirected, and without the safe-point check of [`crate::safepoints`]: its slot is
//! written in every thread's table in the same catch-up that instantiates the caller there,
//! before any thread runs the caller. A slot that waits for a symbol nothing defines yet may
//! be filled by another thread's load, so calls to such an import keep their trampoline,
//! which runs the check first.

use wasm_encoder::reencode::{self, Reencode};
use wasm_encoder::{CodeSection, EntityType, Function, ImportSection, Instruction};
use wasmparser::{FunctionBody, Operator, Parser};

use crate::error::ParseError as Error;
use crate::module::{ImportRole, ImportType, ModuleInfo};
use crate::prelude::*;

/// One import to call through a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// The imported function's index.
    pub func: u32,
    /// Its type index.
    pub ty: u32,
    /// The table slot to call through.
    pub slot: u64,
}

/// The opcodes of `call` and `return_call`.
const CALL: u8 = 0x10;
const RETURN_CALL: u8 = 0x12;

/// Which of `funcs` some function body calls directly (`call` or `return_call`).
pub fn called(
    bytes: &[u8],
    info: &ModuleInfo,
    funcs: &HashSet<u32>,
) -> Result<HashSet<u32>, Error> {
    let mut found = HashSet::new();
    let Some(range) = info.code_range.clone() else {
        return Ok(found);
    };
    let Some(section) = bytes.get(range.clone()) else {
        return Ok(found);
    };
    let offset = range.start;
    let reader = wasmparser::CodeSectionReader::new(wasmparser::BinaryReader::new(section, offset))
        .map_err(malformed)?;
    // One operator reader's frame stack for every body (a new reader allocates its own).
    let mut allocs = wasmparser::OperatorsReaderAllocations::default();
    for body in reader {
        let body = body.map_err(malformed)?;
        // A body none of whose bytes is the `call` or `return_call` opcode has neither:
        // most bodies of a library that calls few of its imports are passed over unread.
        let range = body.range();
        let raw = range
            .start
            .checked_sub(offset)
            .zip(range.end.checked_sub(offset))
            .and_then(|(a, b)| section.get(a..b));
        if raw.is_some_and(|raw| !raw.iter().any(|&b| b == CALL || b == RETURN_CALL)) {
            continue;
        }
        let mut ops = wasmparser::OperatorsReader::new_with_allocs(
            body.get_binary_reader_for_operators().map_err(malformed)?,
            allocs,
        );
        while !ops.eof() {
            if let Operator::Call { function_index } | Operator::ReturnCall { function_index } =
                ops.read().map_err(malformed)?
                && funcs.contains(&function_index)
            {
                found.insert(function_index);
                if found.len() == funcs.len() {
                    return Ok(found);
                }
            }
        }
        allocs = ops.into_allocations();
    }
    Ok(found)
}

/// Where a module's redirected calls find the program's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableRef {
    /// The module imports it already, at this table index.
    Imported {
        /// Table index.
        index: u32,
        /// A 64-bit table.
        table64: bool,
    },
    /// The module does not import it (clang leaves the import out of a library that takes no
    /// function's address): the rewrite appends `env.__indirect_function_table` as its last
    /// import, with no minimum size, after its other table imports.
    Added {
        /// Table imports the module has (the new one's index).
        index: u32,
        /// A 64-bit table.
        table64: bool,
    },
}

/// How a module can reach the program's table: `None` when it defines a table of its own
/// (an added import would move its index).
pub fn table_ref(info: &ModuleInfo, program_table64: bool) -> Option<TableRef> {
    let mut tables = 0;
    for imp in &info.imports {
        if let ImportType::Table(t) = &imp.ty {
            if imp.role == ImportRole::Table {
                return Some(TableRef::Imported {
                    index: tables,
                    table64: t.table64,
                });
            }
            tables += 1;
        }
    }
    info.defined_table.is_none().then_some(TableRef::Added {
        index: tables,
        table64: program_table64,
    })
}

/// The module with every direct call to a redirected import replaced by an indirect call
/// through its slot of the program's table.
pub fn rewrite(bytes: &[u8], redirects: &[Redirect], table: TableRef) -> Result<Vec<u8>, Error> {
    let (index, table64, add) = match table {
        TableRef::Imported { index, table64 } => (index, table64, false),
        TableRef::Added { index, table64 } => (index, table64, true),
    };
    let mut r = Redirector {
        redirects: redirects.iter().map(|r| (r.func, *r)).collect(),
        table: index,
        table64,
        add_table: add,
    };
    let mut module = wasm_encoder::Module::new();
    r.parse_core_module(&mut module, Parser::new(0), bytes)
        .map_err(|e| Error::Malformed {
            offset: 0,
            message: format!("while redirecting lazily bound calls: {e}"),
        })?;
    Ok(module.finish())
}

fn malformed(e: wasmparser::BinaryReaderError) -> Error {
    Error::Malformed {
        offset: e.offset(),
        message: e.message().into(),
    }
}

struct Redirector {
    redirects: HashMap<u32, Redirect>,
    table: u32,
    table64: bool,
    /// Append the table import.
    add_table: bool,
}

impl Redirector {
    fn slot(&self, f: &mut Function, slot: u64) {
        f.instruction(&if self.table64 {
            Instruction::I64Const(slot as i64)
        } else {
            Instruction::I32Const(slot as u32 as i32)
        });
    }
}

impl Reencode for Redirector {
    type Error = core::convert::Infallible;

    fn parse_import_section(
        &mut self,
        imports: &mut ImportSection,
        section: wasmparser::ImportSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        reencode::utils::parse_import_section(self, imports, section)?;
        if self.add_table {
            imports.import(
                "env",
                "__indirect_function_table",
                EntityType::Table(wasm_encoder::TableType {
                    element_type: wasm_encoder::RefType::FUNCREF,
                    table64: self.table64,
                    minimum: 0,
                    maximum: None,
                    shared: false,
                }),
            );
        }
        Ok(())
    }

    fn parse_function_body(
        &mut self,
        code: &mut CodeSection,
        func: FunctionBody<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        let mut f = self.new_function_with_parsed_locals(&func)?;
        let mut reader = func.get_operators_reader()?;
        while !reader.eof() {
            match reader.read()? {
                Operator::Call { function_index }
                    if self.redirects.contains_key(&function_index) =>
                {
                    let r = self.redirects[&function_index];
                    self.slot(&mut f, r.slot);
                    f.instruction(&Instruction::CallIndirect {
                        type_index: r.ty,
                        table_index: self.table,
                    });
                }
                Operator::ReturnCall { function_index }
                    if self.redirects.contains_key(&function_index) =>
                {
                    let r = self.redirects[&function_index];
                    self.slot(&mut f, r.slot);
                    f.instruction(&Instruction::ReturnCallIndirect {
                        type_index: r.ty,
                        table_index: self.table,
                    });
                }
                op => {
                    f.instruction(&self.instruction(op)?);
                }
            }
        }
        code.function(&f);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_scan_reads_only_bodies_that_may_call_and_finds_calls_and_tail_calls() {
        // Imported functions 0..3; bodies that never call, one whose constants are the
        // call opcodes' bytes, a call and a tail call.
        let bytes = wat::parse_str(
            r#"(module
                 (import "env" "a" (func $a (result i32)))
                 (import "env" "b" (func $b (result i32)))
                 (import "env" "c" (func $c (result i32)))
                 (func (param i32) (result i32) local.get 0)
                 (func (result i32) i32.const 16 i32.const 18 i32.add)
                 (func (result i32) call $b)
                 (func (result i32) return_call $c))"#,
        )
        .expect("valid text");
        let info = ModuleInfo::parse(&bytes).expect("valid module");
        let all: HashSet<u32> = [0, 1, 2].into_iter().collect();
        let found = called(&bytes, &info, &all).expect("valid code");
        let mut found: Vec<u32> = found.into_iter().collect();
        found.sort();
        assert_eq!(found, [1, 2]);
        // Only what was asked for.
        let only_a: HashSet<u32> = [0].into_iter().collect();
        assert!(
            called(&bytes, &info, &only_a)
                .expect("valid code")
                .is_empty()
        );
    }

    #[test]
    fn a_malformed_body_that_may_call_is_an_error() {
        let mut bytes = wat::parse_str(
            r#"(module
                 (import "env" "a" (func $a))
                 (import "env" "b" (func $b))
                 (func call $a call $b))"#,
        )
        .expect("valid text");
        let info = ModuleInfo::parse(&bytes).expect("valid module");
        // The second call's opcode becomes an unknown one (0xff) the reader rejects.
        let at = bytes
            .windows(4)
            .position(|w| w == [0x10, 0x00, 0x10, 0x01])
            .expect("the two calls");
        bytes[at + 2] = 0xff;
        let all: HashSet<u32> = [0, 1].into_iter().collect();
        assert!(called(&bytes, &info, &all).is_err());
    }
}
