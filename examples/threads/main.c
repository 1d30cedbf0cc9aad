/* A threaded program for `dylink run`: it dlopens libsquare.so, then starts four threads
 * with wasi-threads' thread-spawn; each calls the library through the function pointer the
 * main thread found and prints its result, and the main thread waits for them all.
 * Built without a libc (Debian's wasi-libc has no threads): WASI is called directly, and the
 * threads keep everything in wasm locals, so they need no shadow stack of their own. */
#define IMPORT(m, n) __attribute__((import_module(m), import_name(n)))
#define EXPORT(n) __attribute__((export_name(n)))

IMPORT("wasi", "thread-spawn") int thread_spawn(void *arg);
IMPORT("wasi_snapshot_preview1", "fd_write") int fd_write(int fd, const void *iovs, int n, int *written);
IMPORT("wasi_snapshot_preview1", "proc_exit") _Noreturn void proc_exit(int code);
void *dlopen(const char *name, int flags);
void *dlsym(void *handle, const char *name);

typedef int (*work_fn)(int);
static work_fn work;
static _Atomic int done;
static int results[4];

struct iovec { const char *p; int n; };
/* Per-thread buffers in static memory: the threads share the main thread's shadow stack. */
static char lines[4][16];
static struct iovec iovs[4];
static int written[4];

EXPORT("wasi_thread_start") void wasi_thread_start(int tid, void *arg) {
    (void)tid;
    int i = (int)(long)arg;
    int v = work(i + 1);
    results[i] = v;
    /* "thread N: V\n", written by this thread itself through its own WASI context. */
    char *l = lines[i];
    int n = 0;
    for (const char *t = "thread "; *t; t++) l[n++] = *t;
    l[n++] = (char)('1' + i);
    l[n++] = ':';
    l[n++] = ' ';
    if (v >= 10) l[n++] = (char)('0' + v / 10);
    l[n++] = (char)('0' + v % 10);
    l[n++] = '\n';
    iovs[i].p = l;
    iovs[i].n = n;
    fd_write(1, &iovs[i], 1, &written[i]);
    __c11_atomic_fetch_add(&done, 1, __ATOMIC_SEQ_CST);
    __builtin_wasm_memory_atomic_notify((int *)&done, 1);
}

static void say(const char *s, int len) {
    struct iovec iov = {s, len};
    int written;
    fd_write(1, &iov, 1, &written);
}

EXPORT("_start") void _start(void) {
    void *lib = dlopen("libsquare.so", 2 /* RTLD_NOW */);
    work = lib ? (work_fn)dlsym(lib, "square") : 0;
    if (!work) {
        say("cannot load libsquare.so\n", 25);
        proc_exit(1);
    }
    for (int i = 0; i < 4; i++)
        if (thread_spawn((void *)(long)i) <= 0) {
            say("cannot start a thread\n", 22);
            proc_exit(1);
        }
    int seen;
    while ((seen = __c11_atomic_load(&done, __ATOMIC_SEQ_CST)) < 4)
        __builtin_wasm_memory_atomic_wait32((int *)&done, seen, -1);
    char line[64] = "squares from 4 threads:";
    int n = 23;
    for (int i = 0; i < 4; i++) {
        int v = results[i];
        line[n++] = ' ';
        if (v >= 10) line[n++] = (char)('0' + v / 10);
        line[n++] = (char)('0' + v % 10);
    }
    line[n++] = '\n';
    say(line, n);
}
