//! The plan → apply → commit / abort loop, written once for every adapter.

use core::ops::DerefMut;

use crate::error::{Diagnostic, Error};
use crate::index::GroupId;
use crate::linker::Linker;
use crate::plan::{NewModule, Op, Outcome, Plan};
use crate::prelude::*;

/// Which part of a plan an [`Applier`] is asked to apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Everything before the commit: the adapter records what it does so that
    /// [`Applier::rollback`] can undo it, and refuses re-entrant dl calls meanwhile.
    Structural,
    /// The trailing guest calls of a load ([`Plan::guest_tail`]), after the commit and
    /// without the linker lock: constructors may call `dlopen`.
    GuestCalls,
    /// Unloading what a load brought in after one of its constructors failed.
    Cleanup,
}

/// What an applier may read while applying.
#[derive(Debug)]
pub struct ApplyCtx<'a> {
    /// The linker, when the caller holds its lock (module paths for messages).
    pub core: Option<&'a Linker>,
    /// The modules the plan introduces.
    pub new: &'a [NewModule],
    /// The paths of other modules the ops name, for messages when `core` is `None` (a
    /// plan's guest calls run without the lock: a closing library's destructors).
    pub paths: &'a [(crate::ModuleId, alloc::string::String)],
    /// Pointers are 64-bit.
    pub memory64: bool,
    /// Which part of the plan this is.
    pub phase: Phase,
}

impl ApplyCtx<'_> {
    /// A module's path, for messages.
    pub fn path(&self, m: crate::ModuleId) -> alloc::string::String {
        use alloc::string::ToString;
        self.new
            .iter()
            .find(|n| n.id == m)
            .map(|n| n.path.clone())
            .or_else(|| self.core.and_then(|c| c.module(m)).map(|x| x.path.clone()))
            .or_else(|| {
                (self.paths.iter())
                    .find(|(id, _)| *id == m)
                    .map(|(_, p)| p.clone())
            })
            .unwrap_or_else(|| m.to_string())
    }
}

/// An adapter's side of [`drive`]: compile, apply ops with one `match`, undo.
pub trait Applier {
    /// The adapter's error type.
    type Error: From<Error>;
    /// The group the applier works in.
    fn group(&self) -> GroupId;
    /// Compile (or take from a cache) a module the plan introduces.
    fn compile(&mut self, module: &NewModule) -> Result<(), Self::Error>;
    /// Apply `ops` in order.
    fn apply(&mut self, ops: &[Op], ctx: &ApplyCtx<'_>) -> Result<(), Self::Error>;
    /// Undo what the [`Phase::Structural`] ops applied so far.
    fn rollback(&mut self);
    /// Called right after every commit (a plan's, and the cleanup of a failed load), with
    /// the linker lock still held: the adapter tells the other groups there is something
    /// to catch up with (the commit counter the safe points read, [`crate::safepoints`]).
    fn committed(&mut self) {}
    /// Called after the commit, before the plan's first guest call: host state that
    /// constructors need (WASI learning the memory) is set up here, once.
    fn before_guest_calls(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
    /// The committed plan's warnings.
    fn warnings(&mut self, _diagnostics: &[Diagnostic]) {}
}

/// Bring `applier`'s group up to date with what other groups committed since it last did:
/// the log's pending ops applied as one structural step (rolled back if one fails, so the
/// group stays as it was and the next attempt starts from the same place), then its cursor
/// advanced. Every dl operation starts with it; a group that is current pays one comparison.
pub fn catch_up<A: Applier>(core: &mut Linker, applier: &mut A) -> Result<(), A::Error> {
    let group = applier.group();
    if !core.is_behind(group) {
        return Ok(());
    }
    let (ops, cursor) = core.pending_ops(group)?;
    if !ops.is_empty() {
        let ctx = ApplyCtx {
            core: Some(&*core),
            new: &[],
            paths: &[],
            memory64: core.memory64(),
            phase: Phase::Structural,
        };
        if let Err(e) = applier.apply(&ops, &ctx) {
            applier.rollback();
            return Err(e);
        }
    }
    core.caught_up(group, cursor);
    Ok(())
}

/// How many times an adapter may drop a `dlopen` plan to compile its new modules without
/// the linker's lock before compiling under it: each retry plans again, and a plan that
/// still finds modules uncompiled (another thread changed what the `dlopen` needs, or the
/// bounded compile cache let them go) should not retry for ever.
pub const UNLOCKED_COMPILES: usize = 2;

/// Apply `plan` through `applier` and commit it; on failure abort it after the applier
/// rolled back, so the linker and everything reachable are as before.
///
/// `core` is the locked linker the plan was made from. The trailing guest calls of a load
/// run after the commit with the lock released; `relock` takes it again if one of them
/// fails, to unload what the load brought in.
pub fn drive<G: DerefMut<Target = Linker>, A: Applier>(
    mut core: G,
    relock: impl FnOnce() -> G,
    plan: Plan,
    applier: &mut A,
) -> Result<Outcome, A::Error> {
    for m in &plan.modules {
        applier.compile(m)?;
    }
    let ops = plan.ops.clone();
    let new = plan.modules.clone();
    let memory64 = plan.memory64;
    let tail = plan.guest_tail();
    let ctx = ApplyCtx {
        core: Some(&core),
        new: &new,
        paths: &[],
        memory64,
        phase: Phase::Structural,
    };
    if let Err(e) = applier.apply(&ops[..tail], &ctx) {
        applier.rollback();
        core.abort(plan);
        return Err(e);
    }
    let diagnostics = plan.diagnostics.clone();
    // The guest calls run without the lock: the paths of the loaded modules they name, for
    // their messages.
    let paths: Vec<_> = (ops[tail..].iter())
        .filter_map(|op| match op {
            Op::Call { module, .. } | Op::InitTls { module, .. } | Op::Finalize { module, .. } => {
                core.module(*module).map(|m| (*module, m.path.clone()))
            }
            _ => None,
        })
        .collect();
    let outcome = core.commit(plan)?;
    applier.committed();
    drop(core);
    applier.warnings(&diagnostics);
    applier.before_guest_calls()?;
    if tail == ops.len() {
        return Ok(outcome);
    }
    let ctx = ApplyCtx {
        core: None,
        new: &new,
        paths: &paths,
        memory64,
        phase: Phase::GuestCalls,
    };
    let Err(e) = applier.apply(&ops[tail..], &ctx) else {
        return Ok(outcome);
    };
    if let Outcome::Loaded(root) = outcome {
        let mut core = relock();
        if let Ok(plan) = core.plan_unload_failed_load(root, applier.group()) {
            let ops = plan.ops.clone();
            let ctx = ApplyCtx {
                core: Some(&core),
                new: &[],
                paths: &[],
                memory64,
                phase: Phase::Cleanup,
            };
            if applier.apply(&ops, &ctx).is_ok() && core.commit(plan).is_ok() {
                applier.committed();
            }
        }
    }
    Err(e)
}
