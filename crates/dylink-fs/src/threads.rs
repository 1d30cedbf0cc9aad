//! OS threads for the core's parallel reading ([`dylink_core::workers`]).

use std::num::NonZeroUsize;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use dylink_core::{Parallel, Workers};

/// Runs a batch of jobs on scoped OS threads started for it: the calling thread and up to
/// `threads - 1` helpers take the next job until none is left. A helper that cannot be
/// started leaves its share to the others, so a batch always completes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Threads {
    threads: NonZeroUsize,
}

impl Threads {
    /// At most `threads` threads per batch, the calling one included.
    pub fn new(threads: NonZeroUsize) -> Self {
        Self { threads }
    }

    /// As many threads as the machine runs at once (one if that cannot be told). Asked once
    /// per process: on Linux the answer reads the cgroup's CPU quota from files, tens of
    /// microseconds that every program load would otherwise pay.
    pub fn available() -> Self {
        static COUNT: OnceLock<NonZeroUsize> = OnceLock::new();
        let count =
            COUNT.get_or_init(|| thread::available_parallelism().unwrap_or(NonZeroUsize::MIN));
        Self::new(*count)
    }

    /// These threads, as [`dylink_core::Config::workers`] takes them.
    pub fn workers(self) -> Workers {
        Workers::new(self)
    }
}

impl Parallel for Threads {
    fn run(&self, n: usize, job: &(dyn Fn(usize) + Sync)) {
        let helpers = self.threads.get().min(n).saturating_sub(1);
        let next = AtomicUsize::new(0);
        let work = || {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                job(i);
            }
        };
        if helpers == 0 {
            return work();
        }
        thread::scope(|scope| {
            for _ in 0..helpers {
                let started = thread::Builder::new()
                    .name("dylink-read".into())
                    .spawn_scoped(scope, work);
                if started.is_err() {
                    break;
                }
            }
            work();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every job runs exactly once, whatever the thread count.
    #[test]
    fn every_job_runs_once() {
        for threads in [1, 2, 3, 8] {
            for n in [0, 1, 2, 7, 100] {
                let runs: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                let pool = Threads::new(NonZeroUsize::new(threads).unwrap());
                pool.run(n, &|i| {
                    runs[i].fetch_add(1, Ordering::Relaxed);
                });
                let counts: Vec<usize> = runs.iter().map(|r| r.load(Ordering::Relaxed)).collect();
                assert_eq!(counts, vec![1; n], "{threads} threads, {n} jobs");
            }
        }
    }

    /// With more than one thread, jobs do run on more than one (the calling thread and a
    /// helper both take jobs when the jobs wait for each other).
    #[test]
    fn jobs_spread_over_threads() {
        let pool = Threads::new(NonZeroUsize::new(2).unwrap());
        let arrived = AtomicUsize::new(0);
        let ids = std::sync::Mutex::new(Vec::new());
        pool.run(2, &|_| {
            ids.lock().unwrap().push(thread::current().id());
            arrived.fetch_add(1, Ordering::SeqCst);
            // Each job waits for the other: one thread alone would never get past this.
            while arrived.load(Ordering::SeqCst) < 2 {
                thread::yield_now();
            }
        });
        let ids = ids.into_inner().unwrap();
        assert_eq!(ids.len(), 2);
        assert_ne!(ids[0], ids[1]);
    }
}
