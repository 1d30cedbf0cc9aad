#include "test.h"
EXPORT(relative) int relative(void) { void *h = dlopen("plugins/libgood.so", RTLD_NOW); return h && dlsym(h, "good") != 0; }
EXPORT(absolute) int absolute(void) { void *h = dlopen("/app/plugins/libgood.so", RTLD_NOW); return h != 0; }
EXPORT(same) int same(void) { return dlopen("plugins/libgood.so", RTLD_NOW) == dlopen("/app/plugins/libgood.so", RTLD_NOW); }
EXPORT(no_search) int no_search(void) { return dlopen("nested/libgood.so", RTLD_NOW) == 0; }
