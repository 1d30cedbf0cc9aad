#include "test.h"
static void *inner_handle;
static int (*inner)(void);
int closed_inner = -100;
__attribute__((constructor)) static void init(void) {
    inner_handle = dlopen("libinner.so", RTLD_NOW);
    inner = inner_handle ? (int (*)(void))dlsym(inner_handle, "inner_fn") : 0;
}
__attribute__((destructor)) static void fini(void) {
    closed_inner = dlclose(inner_handle);
}
int outer_fn(void) { return inner ? inner() : -1; }
