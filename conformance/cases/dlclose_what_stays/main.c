#include "test.h"
int late_fn(int);
int base_fn(int);
static void *def;
EXPORT(base) int base(int x) { return base_fn(x); }
EXPORT(load_def) int load_def(void) {
    def = dlopen("libdef.so", RTLD_NOW | RTLD_GLOBAL);
    return def != 0;
}
EXPORT(call_late) int call_late(int x) { return late_fn(x); }
EXPORT(close_def) int close_def(void) { return dlclose(def); }
/* Whether libdef and libdep are still loaded (10 and 1). */
EXPORT(def_loaded) int def_loaded(void) {
    void *a = dlopen("libdef.so", RTLD_NOW | RTLD_NOLOAD);
    void *b = dlopen("libdep.so", RTLD_NOW | RTLD_NOLOAD);
    int r = (a != 0) * 10 + (b != 0);
    if (a) dlclose(a);
    if (b) dlclose(b);
    return r;
}
/* Load, use and unload libcycle (and its dependency libhelper) n times: each load gets
   fresh data at the same address, and each unload takes libhelper with it. */
EXPORT(cycles) int cycles(int n) {
    int *first = 0, sum = 0;
    for (int i = 0; i < n; i++) {
        void *h = dlopen("libcycle.so", RTLD_NOW);
        if (!h) return -1;
        int (*f)(int) = (int (*)(int))dlsym(h, "cycle_fn");
        int *d = (int *)dlsym(h, "cycle_data");
        if (!f || !d) return -2;
        if (*d != 5) return -3;
        *d = 9;
        sum += f(i);
        if (!first) first = d;
        else if (d != first) return -4;
        if (dlclose(h)) return -5;
        if (dlopen("libhelper.so", RTLD_NOW | RTLD_NOLOAD)) return -6;
    }
    return sum;
}
