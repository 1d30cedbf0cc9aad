#include "test.h"
/* libouter opens libinner in its constructor and closes it in its destructor: closing
   libouter unloads both (glibc allows dl calls from destructors). */
EXPORT(run) int run(void) {
    void *h = dlopen("libouter.so", RTLD_NOW);
    int (*f)(void) = h ? (int (*)(void))dlsym(h, "outer_fn") : 0;
    int r = f ? f() : -2;
    if (dlclose(h)) { log_str(dlerror()); return -3; }
    void *inner = dlopen("libinner.so", RTLD_NOW | RTLD_NOLOAD);
    void *outer = dlopen("libouter.so", RTLD_NOW | RTLD_NOLOAD);
    return r * 100 + (inner != 0) * 10 + (outer != 0);
}
