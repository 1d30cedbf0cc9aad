#include "test.h"
EXPORT(run) int run(void) {
    void *h = dlopen("libouter.so", RTLD_NOW);
    int (*f)(void) = h ? (int (*)(void))dlsym(h, "outer_fn") : 0;
    return f ? f() : -2;
}
