#include "test.h"
static void *h;
static int call_int(const char *name) { int (*f)(void) = (int (*)(void))dlsym(h, name); return f ? f() : -1; }
EXPORT(open) int open(void) { h = dlopen("libres.so", RTLD_NOW); return h != 0; }
EXPORT(get) int get(void) { return call_int("res_get"); }
EXPORT(buf3) int buf3(void) { return call_int("res_buf3"); }
EXPORT(dirty) int dirty(void) { void (*f)(void) = (void (*)(void))dlsym(h, "res_dirty"); f(); return 0; }
EXPORT(addr) int addr(void) { return (int)(unsigned long)dlsym(h, "res_buf"); }
EXPORT(close) int close(void) { return dlclose(h); }
