#include "test.h"
EXPORT(fn) int fn(void) {
    void *h = dlopen("libplug.so", RTLD_NOW);
    Dl_info info;
    if (!dladdr(dlsym(h, "plug_fn"), &info)) return 0;
    return str_eq(info.dli_sname, "plug_fn") && str_has(info.dli_fname, "libplug.so") && info.dli_saddr == dlsym(h, "plug_fn");
}
EXPORT(data) int data(void) {
    void *h = dlopen("libplug.so", RTLD_NOW);
    Dl_info info;
    int *p = (int *)dlsym(h, "plug_data");
    if (!dladdr(p, &info)) return 0;
    return str_eq(info.dli_sname, "plug_data") && info.dli_saddr == p && info.dli_fbase != 0;
}
EXPORT(unknown) int unknown(void) { Dl_info info; return dladdr((void *)0x7ffffff0, &info); }
