//! Work the core may spread over the embedder's threads.
//!
//! The core has no threads of its own (it is `no_std`). Reading modules — parsing their
//! sections, and the safe-point rewrite of shared-memory ones — is most of planning a large
//! program, and one module's reading depends on no other's. So a load reads each level of
//! its NEEDED tree first, and hands the readings to [`Parallel::run`] when the embedder
//! configured [`Config::workers`](crate::Config::workers); everything that decides (search,
//! dedupe, layout, resolution) stays on the planning thread, in the same order, so a plan
//! made with workers is the plan made without them.

use core::fmt;

use crate::prelude::*;

/// Runs independent jobs, on several threads if the embedder has them. `dylink-fs`'s
/// `Threads` runs them on scoped OS threads; any pool works.
pub trait Parallel: Send + Sync {
    /// Call `job(i)` exactly once for every `i` in `0..n` (on any threads, in any order,
    /// possibly at once) and return when every call has returned. A job never panics.
    fn run(&self, n: usize, job: &(dyn Fn(usize) + Sync));

    /// Whether `jobs` readings of `bytes` bytes in all are worth handing to [`run`](Self::run)
    /// rather than reading them on the planning thread. By default: two jobs or more and
    /// [`MIN_BYTES`] or more (starting a thread costs about as much as reading ten
    /// kilobytes of module); a pool whose threads are already running may say yes sooner.
    fn worth(&self, jobs: usize, bytes: usize) -> bool {
        jobs >= 2 && bytes >= MIN_BYTES
    }
}

/// Bytes of modules below which [`Parallel::worth`] reads them on the planning thread.
pub const MIN_BYTES: usize = 64 * 1024;

/// A shared [`Parallel`], as [`Config::workers`](crate::Config::workers) holds it. Two are
/// equal when they share one pool. A [`ModuleCache`](crate::ModuleCache) hands a startup
/// plan to a configuration that differs from the one it was made with only here (and in the
/// cache itself): how readings are spread over threads changes no decision.
#[derive(Clone)]
pub struct Workers(Arc<dyn Parallel>);

impl Workers {
    /// Share `parallel`.
    pub fn new(parallel: impl Parallel + 'static) -> Self {
        Self(Arc::new(parallel))
    }

    /// Run `job(i)` for every `i` in `0..n`.
    pub fn run(&self, n: usize, job: &(dyn Fn(usize) + Sync)) {
        self.0.run(n, job)
    }

    /// Whether a batch is worth running here ([`Parallel::worth`]).
    pub fn worth(&self, jobs: usize, bytes: usize) -> bool {
        self.0.worth(jobs, bytes)
    }
}

impl PartialEq for Workers {
    /// The same pool (not pools that behave alike).
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Workers {}

impl fmt::Debug for Workers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Workers")
    }
}
