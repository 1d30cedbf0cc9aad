#include "test.h"
/* Libraries that call each other (a NEEDED cycle) in a threaded program: the one
 * instantiated first reaches the other through a lazily bound import. Every thread calls
 * across the cycle, whether it was loaded at startup or by a dlopen before the thread
 * started or while it waited. */
__attribute__((import_module("wasi"), import_name("thread-spawn"))) int thread_spawn(void *arg);
typedef int (*fn)(int);
int a_step(int);

static _Atomic int finished, go;
static int results[4];

/* Wait until *x reaches want; -1 after about 10 s (a lost thread must not hang the suite). */
static int wait_for(_Atomic int *x, int want) {
    for (int tries = 0; tries < 10;) {
        int seen = __c11_atomic_load(x, __ATOMIC_SEQ_CST);
        if (seen >= want) return 0;
        if (__builtin_wasm_memory_atomic_wait32((int *)x, seen, 1000000000LL) == 2) tries++;
    }
    return -1;
}

static fn x_of(void) {
    void *h = dlopen("libx.so", RTLD_NOW);
    return h ? (fn)dlsym(h, "x_step") : 0;
}

/* arg = mode * 16 + index. No shadow stack is used: everything stays in wasm locals. */
EXPORT(wasi_thread_start) void wasi_thread_start(int tid, void *arg) {
    int mode = (int)(long)arg / 16, idx = (int)(long)arg % 16;
    if (mode == 0) {
        results[idx] = a_step(idx + 3); /* the startup cycle */
    } else if (mode == 1) {
        fn x = x_of(); /* loaded before this thread started */
        results[idx] = x ? x(idx + 3) : -1;
    } else {
        fn x = wait_for(&go, 1) == 0 ? x_of() : 0; /* loaded while this thread waited */
        results[idx] = x ? x(idx + 3) : -1;
    }
    __c11_atomic_fetch_add(&finished, 1, __ATOMIC_SEQ_CST);
    __builtin_wasm_memory_atomic_notify((int *)&finished, -1);
}

static int spawn_four(int mode) {
    __c11_atomic_store(&finished, 0, __ATOMIC_SEQ_CST);
    for (int i = 0; i < 4; i++) {
        results[i] = 0;
        if (thread_spawn((void *)(long)(mode * 16 + i)) <= 0) return -1;
    }
    return 0;
}

static int packed(void) {
    return results[0] * 1000000 + results[1] * 10000 + results[2] * 100 + results[3];
}

EXPORT(main_steps) int main_steps(int n) { return a_step(n); }

EXPORT(threads_startup_cycle) int threads_startup_cycle(void) {
    if (spawn_four(0) || wait_for(&finished, 4)) return -1;
    return packed();
}

EXPORT(threads_dlopen_cycle_while_waiting) int threads_dlopen_cycle_while_waiting(void) {
    if (spawn_four(2)) return -1;
    fn x = x_of();
    if (!x) return -2;
    int mine = x(6);
    __c11_atomic_store(&go, 1, __ATOMIC_SEQ_CST);
    __builtin_wasm_memory_atomic_notify((int *)&go, -1);
    if (wait_for(&finished, 4)) return -3;
    return mine == 66 ? packed() : -4;
}

EXPORT(threads_after_dlopen_cycle) int threads_after_dlopen_cycle(void) {
    if (spawn_four(1) || wait_for(&finished, 4)) return -1;
    return packed();
}
