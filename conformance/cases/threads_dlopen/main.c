#include "test.h"
/* Threads and libraries loaded at run time: a thread spawned after a dlopen reaches the
 * library through a function pointer and dlsym of its TLS variable; a library dlopened
 * while threads wait is reached by each of them through their own dlopen. */
__attribute__((import_module("wasi"), import_name("thread-spawn"))) int thread_spawn(void *arg);
typedef int (*fn)(void);

static void *work;
static fn work_bump; /* written by the main thread before the spawn, read by the workers */
static _Atomic int finished, go, go_on;
static int results[2];

/* Wait until *x reaches want; -1 after about 10 s (a lost thread must not hang the suite). */
static int wait_for(_Atomic int *x, int want) {
    for (int tries = 0; tries < 10;) {
        int seen = __c11_atomic_load(x, __ATOMIC_SEQ_CST);
        if (seen >= want) return 0;
        if (__builtin_wasm_memory_atomic_wait32((int *)x, seen, 1000000000LL) == 2) tries++;
    }
    return -1;
}
static void done(void) {
    __c11_atomic_fetch_add(&finished, 1, __ATOMIC_SEQ_CST);
    __builtin_wasm_memory_atomic_notify((int *)&finished, -1);
}

/* arg = mode * 16 + index. No shadow stack is used: everything stays in wasm locals. */
EXPORT(wasi_thread_start) void wasi_thread_start(int tid, void *arg) {
    int mode = (int)(long)arg / 16, idx = (int)(long)arg % 16;
    if (mode == 0) {
        int a = work_bump(), b = work_bump();
        int *tv = (int *)dlsym(work, "work_tv"); /* this thread's own copy */
        results[idx] = a == 101 ? b * 10 + (tv && *tv == b) : -a;
    } else if (mode == 2) {
        /* use the library, close it, report, then wait idle while the main thread unloads it */
        void *h = dlopen("libwork.so", RTLD_NOW);
        fn bump = h ? (fn)dlsym(h, "work_bump") : 0;
        int v = bump ? bump() : -1; /* 101: this thread's own copy */
        int closed = h ? dlclose(h) : -1;
        results[idx] = v * 10 + (closed == 0);
        done();
        if (wait_for(&go_on, 1)) return;
        /* unloaded while this thread was idle: its own dl call sees that first */
        results[idx] = results[idx] * 10 + (dlopen("libwork.so", RTLD_NOW | RTLD_NOLOAD) == 0);
    } else {
        if (wait_for(&go, 1) == 0) {
            void *h = dlopen("liblate.so", RTLD_NOW);
            fn get = h ? (fn)dlsym(h, "late_get") : 0;
            int a = get ? get() : -1, b = get ? get() : -1;
            results[idx] = get ? a * 10 + b : -1;
        } else {
            results[idx] = -2;
        }
    }
    done();
}

static int spawn_two(int mode) {
    __c11_atomic_store(&finished, 0, __ATOMIC_SEQ_CST);
    results[0] = results[1] = 0;
    for (int i = 0; i < 2; i++)
        if (thread_spawn((void *)(long)(mode * 16 + i)) <= 0) return -1;
    return 0;
}

EXPORT(spawn_after_dlopen) int spawn_after_dlopen(void) {
    work = dlopen("libwork.so", RTLD_NOW);
    work_bump = work ? (fn)dlsym(work, "work_bump") : 0;
    if (!work_bump || work_bump() != 101) return -1; /* the main thread's copy */
    if (spawn_two(0) || wait_for(&finished, 2)) return -2;
    return results[0] * 10000 + results[1];
}

EXPORT(main_bump) int main_bump(void) { return work_bump(); }

EXPORT(dlopen_while_threads_wait) int dlopen_while_threads_wait(void) {
    if (spawn_two(1)) return -1;
    void *h = dlopen("liblate.so", RTLD_NOW);
    fn get = h ? (fn)dlsym(h, "late_get") : 0;
    if (!get || get() != 7) return -2;
    __c11_atomic_store(&go, 1, __ATOMIC_SEQ_CST);
    __builtin_wasm_memory_atomic_notify((int *)&go, -1);
    if (wait_for(&finished, 2)) return -3;
    return results[0] * 100 + results[1];
}

EXPORT(dlclose_while_idle) int dlclose_while_idle(void) {
    if (spawn_two(2) || wait_for(&finished, 2)) return -1;
    if (dlclose(work) != 0) return -2; /* the last reference: unloaded now */
    __c11_atomic_store(&go_on, 1, __ATOMIC_SEQ_CST);
    __builtin_wasm_memory_atomic_notify((int *)&go_on, -1);
    if (wait_for(&finished, 4)) return -3;
    return results[0] * 10000 + results[1];
}
