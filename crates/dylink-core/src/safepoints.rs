//! Safe points: where a thread catches up with what other threads loaded.
//!
//! Each thread of a program is an instance group with its own function table. When one
//! thread loads a library, the others must write the new function-pointer slots into their
//! own tables before they call through them. A thread that is blocked or running guest code
//! cannot be interrupted from outside on every engine, so the core rewrites, when it reads
//! them, the modules of a shared-memory program to catch up by themselves exactly where it
//! matters:
//!
//! - **before every indirect call** (`call_indirect`, `return_call_indirect`, `call_ref`,
//!   `return_call_ref`): a check that compares the group's `dylink.seen` global with the
//!   program's commit counter, a word in shared memory at the address the imported global
//!   `dylink.commit_counter` holds, and calls `dylink.catch_up: () -> ()` when they differ:
//!
//!   ```wat
//!   global.get $dylink.commit_counter
//!   i32.atomic.load
//!   global.get $dylink.seen
//!   i32.ne
//!   if
//!     call $dylink.catch_up
//!   end
//!   ```
//!
//!   The operand stack is untouched, so the check fits before any instruction. Adapters add
//!   one to the counter after every commit, and `catch_up` reads the counter, applies what
//!   the group has not applied and stores the value read in `seen`. A function pointer that
//!   another thread published after a commit is loaded before the check's atomic load of the
//!   counter, so the check sees that commit: the pointer's slot is filled before the call.
//! - **after every `memory.atomic.wait32/64`**: `call $dylink.after_wait: (i32) -> i32`,
//!   which catches up and returns its argument (the wait's result) unchanged. A woken thread
//!   may have been handed a pointer through any path, not only an indirect call.
//!
//! Imports are appended (functions after the module's own function imports, globals after
//! its global imports), so every defined function and global moves up; calls, `ref.func`,
//! `global.get/set`, exports, the start function, element segments, constant expressions and
//! the `name` section move with them (wasm-encoder's `Reencode`). Nothing else changes: the
//! `dylink.0` section, data and other custom sections are kept, and the wait instructions
//! stay the engine's own, so notify, timeouts and traps behave as before. A module's
//! [`ModuleInfo`] is read from the rewritten bytes, so indices the core keeps (`dladdr`,
//! canonical slots) match what the engine runs. Modules whose memory is not shared are never
//! touched: a single-threaded program pays nothing.

use wasm_encoder::reencode::{self, Reencode};
use wasm_encoder::{
    BlockType, CodeSection, Encode, EntityType, Function, GlobalType, ImportSection, Instruction,
    MemArg, SectionId, TypeSection,
};
use wasmparser::{FunctionBody, Operator, Parser, Payload};

use crate::error::ParseError as Error;
use crate::module::{ImportRole, ImportType, ModuleInfo};
use crate::prelude::*;

/// Namespace of every safe-point import.
pub const HOOK_MODULE: &str = "dylink";
/// The wait hook: a function `(i32) -> i32` that catches up and returns its argument.
pub const HOOK_NAME: &str = "after_wait";
/// The indirect-call hook: a function `() -> ()` that catches up and updates `seen`.
pub const CATCH_UP_NAME: &str = "catch_up";
/// The group's `(mut i32)` global: the commit counter's value when it last caught up.
pub const SEEN_NAME: &str = "seen";
/// An immutable pointer-typed global: the address of the commit counter (an `i32` word in
/// shared memory).
pub const COUNTER_NAME: &str = "commit_counter";

/// What a module needs hooked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Needs {
    waits: bool,
    indirect_calls: bool,
}

/// Read a module, adding safe points first when its memory is shared and it waits or calls
/// indirectly. Returns the bytes to instantiate (the input itself when nothing changed) and
/// their description.
pub fn prepare(bytes: Arc<[u8]>) -> Result<(Arc<[u8]>, ModuleInfo), Error> {
    let info = ModuleInfo::parse(&bytes)?;
    let needs = needs_hooks(&bytes, &info)?;
    if needs == Needs::default() {
        return Ok((bytes, info));
    }
    let rewritten = add_safe_points(&bytes, &info, needs)?;
    let info = ModuleInfo::parse(&rewritten)?;
    Ok((rewritten.into(), info))
}

/// Whether an operator is an indirect call, before which the check goes.
fn is_indirect_call(op: &Operator<'_>) -> bool {
    matches!(
        op,
        Operator::CallIndirect { .. }
            | Operator::ReturnCallIndirect { .. }
            | Operator::CallRef { .. }
            | Operator::ReturnCallRef { .. }
    )
}

fn is_wait(op: &Operator<'_>) -> bool {
    matches!(
        op,
        Operator::MemoryAtomicWait32 { .. } | Operator::MemoryAtomicWait64 { .. }
    )
}

/// A shared memory, no safe points yet, and waits or indirect calls in some body.
fn needs_hooks(bytes: &[u8], info: &ModuleInfo) -> Result<Needs, Error> {
    let mut needs = Needs::default();
    let hooked = info.imports.iter().any(|i| {
        matches!(
            i.role,
            ImportRole::AfterWait
                | ImportRole::CatchUp
                | ImportRole::Seen
                | ImportRole::CommitCounter
        )
    });
    if !info.shared_memory || hooked || info.code_range.is_none() {
        return Ok(needs);
    }
    for payload in Parser::new(0).parse_all(bytes) {
        let Payload::CodeSectionEntry(body) = payload.map_err(malformed)? else {
            continue;
        };
        let mut ops = body.get_operators_reader().map_err(malformed)?;
        while !ops.eof() {
            let op = ops.read().map_err(malformed)?;
            needs.waits |= is_wait(&op);
            needs.indirect_calls |= is_indirect_call(&op);
        }
        if needs.waits && needs.indirect_calls {
            break;
        }
    }
    Ok(needs)
}

fn malformed(e: wasmparser::BinaryReaderError) -> Error {
    Error::Malformed {
        offset: e.offset(),
        message: e.message().into(),
    }
}

fn add_safe_points(bytes: &[u8], info: &ModuleInfo, needs: Needs) -> Result<Vec<u8>, Error> {
    let imported_globals = info
        .imports
        .iter()
        .filter(|i| matches!(i.ty, ImportType::Global { .. }))
        .count() as u32;
    // Appended functions take the indices after the imported ones, their types the
    // indices after the module's own types, in this order.
    let (types, funcs) = (info.types.len() as u32, info.imported_funcs);
    let wait_hook = needs.waits.then_some((funcs, types));
    let k = wait_hook.is_some() as u32;
    let catch_up = needs.indirect_calls.then_some((funcs + k, types + k));
    let mut r = Hooker {
        imported_funcs: info.imported_funcs,
        imported_globals,
        wait_hook,
        catch_up,
        memory64: info.memory64,
        imports_done: false,
    };
    let mut module = wasm_encoder::Module::new();
    r.parse_core_module(&mut module, Parser::new(0), bytes)
        .map_err(|e| Error::Malformed {
            offset: 0,
            message: format!("while adding safe points: {e}"),
        })?;
    Ok(module.finish())
}

struct Hooker {
    imported_funcs: u32,
    imported_globals: u32,
    /// (function index, type index) of `dylink.after_wait`.
    wait_hook: Option<(u32, u32)>,
    /// (function index, type index) of `dylink.catch_up`.
    catch_up: Option<(u32, u32)>,
    memory64: bool,
    imports_done: bool,
}

impl Hooker {
    /// Function imports appended: the wait hook, the catch-up.
    fn added_funcs(&self) -> u32 {
        self.wait_hook.is_some() as u32 + self.catch_up.is_some() as u32
    }

    /// Global imports appended: `seen` and the counter's address, with the catch-up.
    fn added_globals(&self) -> u32 {
        2 * self.catch_up.is_some() as u32
    }

    fn seen_global(&self) -> u32 {
        self.imported_globals
    }

    fn counter_global(&self) -> u32 {
        self.imported_globals + 1
    }

    fn add_imports(&mut self, imports: &mut ImportSection) {
        if let Some((_, ty)) = self.wait_hook {
            imports.import(HOOK_MODULE, HOOK_NAME, EntityType::Function(ty));
        }
        if let Some((_, ty)) = self.catch_up {
            imports.import(HOOK_MODULE, CATCH_UP_NAME, EntityType::Function(ty));
            imports.import(
                HOOK_MODULE,
                SEEN_NAME,
                EntityType::Global(GlobalType {
                    val_type: wasm_encoder::ValType::I32,
                    mutable: true,
                    shared: false,
                }),
            );
            imports.import(
                HOOK_MODULE,
                COUNTER_NAME,
                EntityType::Global(GlobalType {
                    val_type: if self.memory64 {
                        wasm_encoder::ValType::I64
                    } else {
                        wasm_encoder::ValType::I32
                    },
                    mutable: false,
                    shared: false,
                }),
            );
        }
        self.imports_done = true;
    }

    /// The check before an indirect call (see the module docs).
    fn check(&self, f: &mut Function, catch_up: u32) {
        let mut code = Vec::new();
        encode_check(
            &mut code,
            self.counter_global(),
            self.seen_global(),
            catch_up,
        );
        f.raw(code);
    }
}

/// The safe-point check's code (see the module docs), for the given indices of the
/// `dylink.commit_counter` and `dylink.seen` globals and the `dylink.catch_up` function:
/// used by the rewrite and by the checked trampolines.
pub(crate) fn encode_check(out: &mut Vec<u8>, counter: u32, seen: u32, catch_up: u32) {
    Instruction::GlobalGet(counter).encode(out);
    Instruction::I32AtomicLoad(MemArg {
        offset: 0,
        align: 2,
        memory_index: 0,
    })
    .encode(out);
    Instruction::GlobalGet(seen).encode(out);
    Instruction::I32Ne.encode(out);
    Instruction::If(BlockType::Empty).encode(out);
    Instruction::Call(catch_up).encode(out);
    Instruction::End.encode(out);
}

impl Reencode for Hooker {
    type Error = &'static str;

    fn function_index(&mut self, func: u32) -> Result<u32, reencode::Error<&'static str>> {
        Ok(if func >= self.imported_funcs {
            func + self.added_funcs()
        } else {
            func
        })
    }

    fn global_index(&mut self, global: u32) -> Result<u32, reencode::Error<&'static str>> {
        Ok(if global >= self.imported_globals {
            global + self.added_globals()
        } else {
            global
        })
    }

    fn parse_type_section(
        &mut self,
        types: &mut TypeSection,
        section: wasmparser::TypeSectionReader<'_>,
    ) -> Result<(), reencode::Error<&'static str>> {
        reencode::utils::parse_type_section(self, types, section)?;
        // In the order their indices were handed out.
        if self.wait_hook.is_some() {
            types
                .ty()
                .function([wasm_encoder::ValType::I32], [wasm_encoder::ValType::I32]);
        }
        if self.catch_up.is_some() {
            types.ty().function([], []);
        }
        Ok(())
    }

    fn parse_import_section(
        &mut self,
        imports: &mut ImportSection,
        section: wasmparser::ImportSectionReader<'_>,
    ) -> Result<(), reencode::Error<&'static str>> {
        reencode::utils::parse_import_section(self, imports, section)?;
        self.add_imports(imports);
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
            self.add_imports(&mut imports);
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
            if let (true, Some((catch_up, _))) = (is_indirect_call(&op), self.catch_up) {
                self.check(&mut f, catch_up);
            }
            let wait = is_wait(&op);
            f.instruction(&self.instruction(op)?);
            if let (true, Some((hook, _))) = (wait, self.wait_hook) {
                f.instruction(&Instruction::Call(hook));
            }
        }
        code.function(&f);
        Ok(())
    }
}
