#include "test.h"
static int (*inner)(void);
__attribute__((constructor)) static void init(void) {
    void *h = dlopen("libinner.so", RTLD_NOW);
    inner = h ? (int (*)(void))dlsym(h, "inner_fn") : 0;
}
int outer_fn(void) { return inner ? inner() : -1; }
