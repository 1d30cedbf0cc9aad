#include "test.h"
/* wasi-threads: the host starts a thread that runs wasi_thread_start(tid, arg). */
__attribute__((import_module("wasi"), import_name("thread-spawn"))) int thread_spawn(void *arg);
int lib_bump(void);

static _Atomic int finished;
static int results[4];

/* Runs on each new thread. It uses no shadow stack (everything stays in wasm locals), so it
 * needs no stack of its own; a libc's wasi_thread_start would set one from `arg`. */
EXPORT(wasi_thread_start) void wasi_thread_start(int tid, void *arg) {
    int idx = (int)(long)arg, v = 0;
    for (int i = 0; i <= idx; i++) v = lib_bump(); /* this thread's own TLS counter */
    results[idx] = v * 10 + (tid > 0);
    __c11_atomic_fetch_add(&finished, 1, __ATOMIC_SEQ_CST);
    __builtin_wasm_memory_atomic_notify((int *)&finished, 1);
}

EXPORT(run) int run(void) {
    for (int i = 0; i < 4; i++)
        if (thread_spawn((void *)(long)i) <= 0) return -1;
    int seen;
    while ((seen = __c11_atomic_load(&finished, __ATOMIC_SEQ_CST)) < 4)
        __builtin_wasm_memory_atomic_wait32((int *)&finished, seen, -1);
    return results[0] * 1000000 + results[1] * 10000 + results[2] * 100 + results[3];
}

EXPORT(main_bumps) int main_bumps(void) { return lib_bump(); }
