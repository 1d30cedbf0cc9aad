#include "test.h"
static void *h;
EXPORT(noload_before) int noload_before(void) { return dlopen("libloc.so", RTLD_NOW | RTLD_NOLOAD) == 0; }
EXPORT(open_local) int open_local(void) { h = dlopen("libloc.so", RTLD_NOW | RTLD_LOCAL); return h != 0; }
EXPORT(default_sees) int default_sees(void) { return dlsym(RTLD_DEFAULT, "loc_fn") != 0; }
EXPORT(handle_sees) int handle_sees(void) { return dlsym(h, "loc_fn") != 0; }
EXPORT(user_now) int user_now(void) { return dlopen("libuser.so", RTLD_NOW) != 0; }
EXPORT(promote) int promote(void) { return dlopen("libloc.so", RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD) == h; }
EXPORT(user_call) int user_call(void) {
    void *u = dlopen("libuser.so", RTLD_NOW);
    int (*f)(void) = (int (*)(void))dlsym(u, "use_loc");
    return u && f ? f() : -1;
}
