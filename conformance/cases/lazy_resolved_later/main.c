#include "test.h"
int late_fn(int);
EXPORT(call_late) int call_late(int x) { return late_fn(x); }
EXPORT(ptr_late) int ptr_late(void) { return (int)(unsigned long)(void *)late_fn; }
EXPORT(load) int load(void) { return dlopen("libplugin.so", RTLD_NOW | RTLD_GLOBAL) != 0; }
EXPORT(same) int same(void) { return dlsym(RTLD_DEFAULT, "late_fn") == (void *)late_fn; }
