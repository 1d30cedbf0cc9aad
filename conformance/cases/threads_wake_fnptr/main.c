#include "test.h"
/* A library dlopened while a worker waits; its function pointer is passed through shared
 * memory and the worker calls it as soon as it wakes, with no dl call of its own in between:
 * the load must have reached the worker's table before it runs. */
__attribute__((import_module("wasi"), import_name("thread-spawn"))) int thread_spawn(void *arg);
typedef int (*fn)(void);

static _Atomic(fn) shared_fn;
static _Atomic int finished, ready;
static int result;

/* Wait until *x is non-zero; -1 after about 10 s (a lost thread must not hang the suite). */
static int wait_nonzero(_Atomic int *x) {
    for (int tries = 0; tries < 10;) {
        int seen = __c11_atomic_load(x, __ATOMIC_SEQ_CST);
        if (seen) return 0;
        if (__builtin_wasm_memory_atomic_wait32((int *)x, 0, 1000000000LL) == 2) tries++;
    }
    return -1;
}

EXPORT(wasi_thread_start) void wasi_thread_start(int tid, void *arg) {
    (void)tid; (void)arg;
    fn f;
    __c11_atomic_store(&ready, 1, __ATOMIC_SEQ_CST); /* running, before the dlopen */
    __builtin_wasm_memory_atomic_notify((int *)&ready, -1);
    /* Wait first, then look: the pointer is read only after a wait has returned, whether it
     * blocked (the usual case: woken by the main thread's notify) or found the pointer
     * already there (this thread ran late). Reading it before any wait would test a thread
     * that never stopped, which no safe point covers (ARCHITECTURE.md, Threads). */
    do __builtin_wasm_memory_atomic_wait32((int *)&shared_fn, 0, -1);
    while (!(f = __c11_atomic_load(&shared_fn, __ATOMIC_SEQ_CST)));
    result = f();
    __c11_atomic_store(&finished, 1, __ATOMIC_SEQ_CST);
    __builtin_wasm_memory_atomic_notify((int *)&finished, -1);
}

EXPORT(run) int run(void) {
    if (thread_spawn(0) <= 0 || wait_nonzero(&ready)) return -1;
    void *h = dlopen("libwake.so", RTLD_NOW);
    fn f = h ? (fn)dlsym(h, "wake_fn") : 0;
    if (!f || f() != 42) return -2;
    __c11_atomic_store(&shared_fn, f, __ATOMIC_SEQ_CST);
    __builtin_wasm_memory_atomic_notify((int *)&shared_fn, -1);
    if (wait_nonzero(&finished)) return -3; /* the worker trapped or never woke */
    return result;
}
