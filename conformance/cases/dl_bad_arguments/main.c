#include "test.h"
/* Arguments a C program must not pass: each call fails with a dlerror message (or, for
   dladdr, returns 0); none traps, none changes what is loaded. And a mode without a
   binding mode, which some libcs refuse. */
static unsigned long memory_end(void) { return __builtin_wasm_memory_size(0) * 65536ul; }
static int failed(int failed_call) { char *e = dlerror(); return failed_call && e != 0 && *e != 0; }

/* A name pointer past the end of memory. */
EXPORT(name_out_of_bounds) int name_out_of_bounds(void) {
    return failed(dlopen((const char *)(memory_end() + 16), RTLD_NOW) == 0);
}
/* A name that runs into the end of memory without its NUL. */
EXPORT(name_unterminated) int name_unterminated(void) {
    char *p = (char *)(memory_end() - 7);
    for (int i = 0; i < 7; i++) p[i] = "libx.so"[i];
    return failed(dlopen(p, RTLD_NOW) == 0);
}
/* Neither RTLD_LAZY nor RTLD_NOW: taken as RTLD_LAZY, as musl and Emscripten take it
   (glibc refuses it). */
EXPORT(mode_missing) int mode_missing(void) {
    void *h = dlopen("libx.so", RTLD_GLOBAL);
    int r = h != 0 && dlerror() == 0;
    dlclose(h);
    return r;
}
/* Handles never returned by dlopen. */
EXPORT(handle_forged) int handle_forged(void) {
    return failed(dlsym((void *)12345, "lib_fn") == 0) * 10 + failed(dlclose((void *)777) != 0);
}
/* A symbol name past the end of memory. */
EXPORT(symbol_out_of_bounds) int symbol_out_of_bounds(void) {
    void *h = dlopen("libx.so", RTLD_NOW);
    int r = failed(dlsym(h, (const char *)(memory_end() + 4)) == 0);
    dlclose(h);
    return r;
}
/* dladdr with its Dl_info past the end of memory, and of an address nothing holds. */
EXPORT(dladdr_out_of_bounds) int dladdr_out_of_bounds(void) {
    Dl_info info;
    int out = dladdr((void *)memory_end(), &info);
    void *h = dlopen("libx.so", RTLD_NOW);
    void *f = dlsym(h, "lib_fn");
    int bad = dladdr(f, (Dl_info *)(memory_end() - 4));
    dlclose(h);
    return out * 10 + bad;
}
/* After all of that the library loads and works. */
EXPORT(still_fine) int still_fine(void) {
    void *h = dlopen("libx.so", RTLD_NOW);
    int (*f)(void) = (int (*)(void))dlsym(h, "lib_fn");
    int r = f ? f() : -1;
    dlclose(h);
    return r;
}
