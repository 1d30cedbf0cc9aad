//! wasi-threads: `wasi.thread-spawn` starts a new instance group on a new thread.

use std::sync::atomic::Ordering;

use wasmtime::{AsContextMut, Caller, Func, Store, Val};

use crate::{Program, lock};

/// The host function for a module's `wasi.thread-spawn` import.
pub(crate) fn spawn_func<T: Send + 'static>(
    program: &Program<T>,
    store: impl AsContextMut<Data = T>,
) -> Func {
    let program = program.clone();
    Func::wrap(store, move |_: Caller<'_, T>, arg: i32| -> i32 {
        program.shared.host_calls.fetch_add(1, Ordering::Relaxed);
        spawn(&program, arg)
    })
}

/// The host function for `dylink.after_wait` ([`dylink_core::safepoints`]): a thread woken from
/// `memory.atomic.wait` catches its group up before its next instruction, so a function
/// pointer another thread loaded and handed over while it slept is callable. Skipped while
/// this thread itself applies a plan (a wait inside a structural guest call), whose lock it
/// holds.
pub(crate) fn after_wait_func<T: Send + 'static>(
    program: &Program<T>,
    store: impl AsContextMut<Data = T>,
) -> Func {
    let program = program.clone();
    Func::wrap(
        store,
        move |mut cx: Caller<'_, T>, woke: i32| -> wasmtime::Result<i32> {
            program.shared.host_calls.fetch_add(1, Ordering::Relaxed);
            let now = program.shared.commits.load(Ordering::Acquire);
            {
                let g = lock(&program.group);
                if g.busy || g.seen == now {
                    return Ok(woke);
                }
            }
            program.catch_up(&mut cx).map_err(|e| {
                wasmtime::Error::msg(format!("catching this thread up after a wait: {e}"))
            })?;
            lock(&program.group).seen = now;
            Ok(woke)
        },
    )
}

/// The host function for `dylink.catch_up` ([`dylink_core::safepoints`]), called before an
/// indirect call when the group's `dylink.seen` differs from the commit counter: the group
/// applies what other threads committed, then remembers the counter's value read before, so
/// the next check is two loads and a compare. While this thread applies a plan of its own
/// (a guest call of a structural op) its group is current already.
pub(crate) fn catch_up_func<T: Send + 'static>(
    program: &Program<T>,
    store: impl AsContextMut<Data = T>,
) -> Func {
    let program = program.clone();
    Func::wrap(
        store,
        move |mut cx: Caller<'_, T>| -> wasmtime::Result<()> {
            program.shared.host_calls.fetch_add(1, Ordering::Relaxed);
            let now = program.counter();
            let (busy, seen) = {
                let g = lock(&program.group);
                (g.busy, g.seen_global)
            };
            if !busy {
                program.catch_up(&mut cx).map_err(|e| {
                    wasmtime::Error::msg(format!(
                        "catching this thread up before an indirect call: {e}"
                    ))
                })?;
            }
            if let Some(seen) = seen {
                seen.set(&mut cx, Val::I32(now as i32))?;
            }
            Ok(())
        },
    )
}

/// Start a thread running `wasi_thread_start(tid, arg)` in a new instance group; the thread
/// id, or -1 when threads are not enabled ([`Program::enable_threads`]) or ids ran out.
fn spawn<T: Send + 'static>(program: &Program<T>, arg: i32) -> i32 {
    let Some(make) = lock(&program.shared.thread_data).clone() else {
        return -1;
    };
    let tid = program.shared.next_tid.fetch_add(1, Ordering::Relaxed);
    // wasi-threads ids are positive and below 2^29.
    if tid >= 1 << 29 {
        return -1;
    }
    let engine = program.shared.engine.clone();
    let program = program.clone();
    std::thread::spawn(move || {
        let mut store = Store::new(&engine, make());
        let group = match program.new_group(&mut store) {
            Ok(group) => group,
            Err(e) => {
                tracing::error!(target: "dylink::threads", "thread {tid} could not start: {e}");
                if let Some(exit) = lock(&program.shared.thread_exit).clone() {
                    exit(
                        tid,
                        Err(wasmtime::Error::msg(format!("could not start: {e}"))),
                    );
                }
                return;
            }
        };
        let ran = match group.main_func(&mut store, "wasi_thread_start") {
            Some(start) => start.call(&mut store, &[Val::I32(tid as i32), Val::I32(arg)], &mut []),
            None => Err(wasmtime::Error::msg(
                "the main module exports no `wasi_thread_start`",
            )),
        };
        let _ = group.exit_group();
        match lock(&program.shared.thread_exit).clone() {
            Some(exit) => exit(tid, ran),
            None => {
                if let Err(e) = ran {
                    tracing::error!(target: "dylink::threads", "thread {tid} trapped: {e:#}");
                }
            }
        }
    });
    tid as i32
}
