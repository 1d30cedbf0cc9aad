#include "test.h"
EXPORT(run) int run(void) {
    if (!dlopen("libtop.so", RTLD_NOW | RTLD_GLOBAL)) return -1;
    int (*d)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "dep_fn");
    int (*t)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "top_fn");
    return d && t ? d() * 10 + t() : -2;
}
