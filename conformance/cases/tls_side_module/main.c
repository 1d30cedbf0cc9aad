#include "test.h"
int get_tv(void);
void set_tv(int);
int *tv_addr(void);
EXPORT(get) int get(void) { return get_tv(); }
EXPORT(set) int set(int v) { set_tv(v); return get_tv(); }
EXPORT(dlsym_tls) int dlsym_tls(void) { return dlsym(RTLD_DEFAULT, "tv") == (void *)tv_addr(); }
EXPORT(later) int later(void) {
    void *h = dlopen("liblater.so", RTLD_NOW);
    int (*f)(void) = (int (*)(void))dlsym(h, "later_get");
    int a = f(), b = f();
    int *p = (int *)dlsym(h, "later_tv");
    return a * 10000 + b * 100 + *p;
}
