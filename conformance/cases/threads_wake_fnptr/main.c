#include "test.h"
/* A library dlopened while four workers wait; its function pointer is passed through shared
 * memory and each worker calls it as soon as it wakes, with no dl call of its own in between:
 * the load must have reached every worker's table before it runs. */
__attribute__((import_module("wasi"), import_name("thread-spawn"))) int thread_spawn(void *arg);
typedef int (*fn)(void);

#define WORKERS 4
static _Atomic(fn) shared_fn;
static _Atomic int finished, ready;
static _Atomic int result;

/* Wait until *x reaches n; -1 after about 10 s (a lost thread must not hang the suite). */
static int wait_for(_Atomic int *x, int n) {
    for (int tries = 0; tries < 10;) {
        int seen = __c11_atomic_load(x, __ATOMIC_SEQ_CST);
        if (seen >= n) return 0;
        if (__builtin_wasm_memory_atomic_wait32((int *)x, seen, 1000000000LL) == 2) tries++;
    }
    return -1;
}

EXPORT(wasi_thread_start) void wasi_thread_start(int tid, void *arg) {
    (void)tid; (void)arg;
    fn f;
    __c11_atomic_fetch_add(&ready, 1, __ATOMIC_SEQ_CST); /* running, before the dlopen */
    __builtin_wasm_memory_atomic_notify((int *)&ready, -1);
    /* Wait first, then look: the pointer is read after a wait has returned, whether it
     * blocked (the usual case: woken by the main thread's notify) or found the pointer
     * already there (this thread ran late). A thread that never waits is the case
     * threads_spin_fnptr. */
    do __builtin_wasm_memory_atomic_wait32((int *)&shared_fn, 0, -1);
    while (!(f = __c11_atomic_load(&shared_fn, __ATOMIC_SEQ_CST)));
    __c11_atomic_fetch_add(&result, f(), __ATOMIC_SEQ_CST);
    __c11_atomic_fetch_add(&finished, 1, __ATOMIC_SEQ_CST);
    __builtin_wasm_memory_atomic_notify((int *)&finished, -1);
}

EXPORT(run) int run(void) {
    for (int i = 0; i < WORKERS; i++)
        if (thread_spawn(0) <= 0) return -1;
    if (wait_for(&ready, WORKERS)) return -1;
    void *h = dlopen("libwake.so", RTLD_NOW);
    fn f = h ? (fn)dlsym(h, "wake_fn") : 0;
    if (!f || f() != 42) return -2;
    __c11_atomic_store(&shared_fn, f, __ATOMIC_SEQ_CST);
    __builtin_wasm_memory_atomic_notify((int *)&shared_fn, -1);
    if (wait_for(&finished, WORKERS)) return -3; /* a worker trapped or never woke */
    return result / WORKERS;
}
