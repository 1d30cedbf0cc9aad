//! wasi-threads: `wasi.thread-spawn` starts a new instance group on a new thread.

use std::sync::atomic::Ordering;

use wasmer::{AsStoreMut, Function, FunctionEnv, FunctionEnvMut, RuntimeError, Store, Value};

use crate::{Program, lock};

/// The host function for a module's `wasi.thread-spawn` import.
pub(crate) fn spawn_func(program: &Program, store: &mut impl AsStoreMut) -> Function {
    let env = FunctionEnv::new(store, program.clone());
    Function::new_typed_with_env(
        store,
        &env,
        |env: FunctionEnvMut<'_, Program>, arg: i32| -> i32 {
            let program = env.data();
            program.shared.host_calls.fetch_add(1, Ordering::Relaxed);
            spawn(program, arg)
        },
    )
}

/// The host function for `dylink.after_wait` ([`dylink_core::safepoints`]): a thread woken from
/// `memory.atomic.wait` catches its group up before its next instruction, so a function
/// pointer another thread loaded and handed over while it slept is callable. Skipped while
/// this thread itself applies a plan (a wait inside a structural guest call), whose lock it
/// holds.
pub(crate) fn after_wait_func(program: &Program, store: &mut impl AsStoreMut) -> Function {
    let env = FunctionEnv::new(store, program.clone());
    Function::new_typed_with_env(
        store,
        &env,
        |mut env: FunctionEnvMut<'_, Program>, woke: i32| -> Result<i32, RuntimeError> {
            let program = env.data().clone();
            program.shared.host_calls.fetch_add(1, Ordering::Relaxed);
            let now = program.shared.commits.load(Ordering::Acquire);
            {
                let g = lock(&program.group);
                if g.busy || g.seen == now {
                    return Ok(woke);
                }
            }
            program.catch_up(&mut env).map_err(|e| {
                RuntimeError::new(format!("catching this thread up after a wait: {e}"))
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
pub(crate) fn catch_up_func(program: &Program, store: &mut impl AsStoreMut) -> Function {
    let env = FunctionEnv::new(store, program.clone());
    Function::new_typed_with_env(
        store,
        &env,
        |mut env: FunctionEnvMut<'_, Program>| -> Result<(), RuntimeError> {
            let program = env.data().clone();
            program.shared.host_calls.fetch_add(1, Ordering::Relaxed);
            let now = program.counter(&env);
            let (busy, seen) = {
                let g = lock(&program.group);
                (g.busy, g.seen_global.clone())
            };
            if !busy {
                program.catch_up(&mut env).map_err(|e| {
                    RuntimeError::new(format!(
                        "catching this thread up before an indirect call: {e}"
                    ))
                })?;
            }
            if let Some(seen) = seen {
                seen.set(&mut env, Value::I32(now as i32))
                    .map_err(|e| RuntimeError::new(format!("updating dylink.seen: {e}")))?;
            }
            Ok(())
        },
    )
}

/// Start a thread running `wasi_thread_start(tid, arg)` in a new instance group, in a store
/// of its own on the program's engine; the thread id, or -1 when threads are not enabled
/// ([`Program::enable_threads`]) or ids ran out.
fn spawn(program: &Program, arg: i32) -> i32 {
    if !program.shared.threads.load(Ordering::Relaxed) {
        return -1;
    }
    let tid = program.shared.next_tid.fetch_add(1, Ordering::Relaxed);
    // wasi-threads ids are positive and below 2^29.
    if tid >= 1 << 29 {
        return -1;
    }
    let engine = program.shared.engine.clone();
    let program = program.clone();
    std::thread::spawn(move || {
        let mut store = Store::new(engine);
        let exit = lock(&program.shared.thread_exit).clone();
        let ran = run_thread(&program, &mut store, tid, arg);
        match exit {
            Some(exit) => exit(tid, ran),
            None => {
                if let Err(e) = ran {
                    tracing::error!(target: "dylink::threads", "thread {tid}: {}", e.message());
                }
            }
        }
    });
    tid as i32
}

/// Build the thread's group (with its own host imports when the embedder makes them) and
/// run `wasi_thread_start(tid, arg)`; the group exits either way.
fn run_thread(
    program: &Program,
    store: &mut Store,
    tid: u32,
    arg: i32,
) -> Result<(), RuntimeError> {
    let not_started = |e: String| RuntimeError::new(format!("could not start: {e}"));
    let make = lock(&program.shared.thread_host).clone();
    let (group, before_start) = match make {
        Some(make) => {
            let host = make(store).map_err(not_started)?;
            let group = program
                .new_group_with_imports(store, host.imports)
                .map_err(|e| not_started(e.to_string()))?;
            (group, host.before_start)
        }
        None => (
            program
                .new_group(store)
                .map_err(|e| not_started(e.to_string()))?,
            None,
        ),
    };
    let ran = (|| {
        if let Some(before) = before_start {
            before(store, &group).map_err(not_started)?;
        }
        let start = group
            .main_func(store, "wasi_thread_start")
            .ok_or_else(|| RuntimeError::new("the main module exports no `wasi_thread_start`"))?;
        start
            .call(store, &[Value::I32(tid as i32), Value::I32(arg)])
            .map(|_| ())
    })();
    let _ = group.exit_group();
    ran
}
