#include "test.h"
/* A worker spins on an atomic load, never waiting and never calling the host, while the main
 * thread dlopens a library and publishes one of its function pointers. The worker calls it
 * the moment it sees it: the safe point before the indirect call must bring the library into
 * the worker's table first (ARCHITECTURE.md, Threads). */
__attribute__((import_module("wasi"), import_name("thread-spawn"))) int thread_spawn(void *arg);
typedef int (*fn)(int);
int late_fn(int); /* defined by liblate.so, loaded at run time: bound lazily */

static _Atomic(fn) shared_fn;
static _Atomic int finished, ready, give_up, late_ready, called;
static int result, late_result;

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
    __c11_atomic_store(&ready, 1, __ATOMIC_SEQ_CST);
    __builtin_wasm_memory_atomic_notify((int *)&ready, -1);
    /* Spin: no wait, no host call, no dl call between the load and the call. */
    while (!(f = __c11_atomic_load(&shared_fn, __ATOMIC_SEQ_CST)))
        if (__c11_atomic_load(&give_up, __ATOMIC_RELAXED)) return;
    result = f(42);
    __c11_atomic_store(&called, 1, __ATOMIC_SEQ_CST);
    __builtin_wasm_memory_atomic_notify((int *)&called, -1);
    /* Then through the trampoline of a lazily bound import, also without a pause. */
    while (!__c11_atomic_load(&late_ready, __ATOMIC_SEQ_CST))
        if (__c11_atomic_load(&give_up, __ATOMIC_RELAXED)) return;
    late_result = late_fn(7);
    __c11_atomic_store(&finished, 1, __ATOMIC_SEQ_CST);
    __builtin_wasm_memory_atomic_notify((int *)&finished, -1);
}

EXPORT(run) int run(void) {
    if (thread_spawn(0) <= 0 || wait_nonzero(&ready)) return -1;
    void *h = dlopen("libspin.so", RTLD_NOW);
    fn f = h ? (fn)dlsym(h, "spin_fn") : 0;
    if (!f || f(1) != 142) {
        __c11_atomic_store(&give_up, 1, __ATOMIC_SEQ_CST);
        return -2;
    }
    __c11_atomic_store(&shared_fn, f, __ATOMIC_SEQ_CST);
    /* The worker has caught up with libspin.so; liblate.so comes after. */
    if (wait_nonzero(&called)) return -3; /* the worker trapped calling f */
    if (!dlopen("liblate.so", RTLD_NOW | RTLD_GLOBAL)) {
        __c11_atomic_store(&give_up, 1, __ATOMIC_SEQ_CST);
        return -4;
    }
    __c11_atomic_store(&late_ready, 1, __ATOMIC_SEQ_CST);
    if (wait_nonzero(&finished)) return -5; /* the worker trapped calling late_fn */
    return result;
}

EXPORT(late) int late(void) { return late_result; }
