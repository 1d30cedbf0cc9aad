#include "test.h"
int main_sym(void) { return 9; }
EXPORT(twice) int twice(void) {
    void *a = dlopen("librc.so", RTLD_NOW), *b = dlopen("librc.so", RTLD_NOW);
    if (!a || a != b) return -1;
    dlclose(a);
    int (*f)(void) = (int (*)(void))dlsym(b, "rc_fn");
    int still = f ? f() : -2;
    dlclose(b);
    return still * 10 + (dlsym(b, "rc_fn") == 0);
}
EXPORT(nodelete) int nodelete(void) {
    void *h = dlopen("libkeep.so", RTLD_NOW | RTLD_NODELETE);
    int (*f)(void) = (int (*)(void))dlsym(h, "keep_fn");
    dlclose(h);
    return f() + (dlopen("libkeep.so", RTLD_NOW | RTLD_NOLOAD) != 0) * 10;
}
EXPORT(self) int self(void) {
    void *h = dlopen(0, RTLD_NOW);
    int (*f)(void) = (int (*)(void))dlsym(h, "main_sym");
    return h && f ? f() : -1;
}
