#include "test.h"
/* A library whose destructor traps: the dlclose fails with a dlerror naming the trap and
   the library stays loaded, usable; closing it again unloads it without running the
   destructor a second time. */
static void *h;
EXPORT(open) int open(void) {
    h = dlopen("libbad.so", RTLD_NOW);
    return h != 0;
}
EXPORT(first_close) int first_close(void) {
    if (dlclose(h) == 0) return -1;
    char *e = dlerror();
    return e != 0 && str_has(e, "destructors of /lib/libbad.so") && str_has(e, "unreachable");
}
EXPORT(still_there) int still_there(void) {
    int (*f)(void) = (int (*)(void))dlsym(h, "bad_fn");
    return f ? f() : -1;
}
EXPORT(second_close) int second_close(void) {
    if (dlclose(h) != 0) return -1;
    return dlopen("libbad.so", RTLD_NOW | RTLD_NOLOAD) == 0;
}
