#include "test.h"
static void *h;
EXPORT(open) int open(void) { h = dlopen("libplug.so", RTLD_NOW); return h != 0; }
EXPORT(call_fn) int call_fn(int x) { int (*f)(int) = (int (*)(int))dlsym(h, "plug_fn"); return f ? f(x) : -1; }
EXPORT(read_data) int read_data(void) { int *p = (int *)dlsym(h, "plug_data"); return p ? *p : -1; }
EXPORT(write_data) int write_data(void) { int *p = (int *)dlsym(h, "plug_data"); *p = 99; return *(int *)dlsym(h, "plug_data"); }
EXPORT(close) int close(void) { return dlclose(h); }
EXPORT(after_close) int after_close(void) { return dlsym(h, "plug_fn") == 0 && str_has(dlerror(), "invalid handle"); }
