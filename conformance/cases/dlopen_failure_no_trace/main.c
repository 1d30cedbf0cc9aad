#include "test.h"
static int fails(const char *name, const char *word) {
    if (dlopen(name, RTLD_NOW)) return 0;
    const char *e = dlerror();
    return e && str_has(e, word);
}
EXPORT(base) int base(void) {
    void *h = dlopen("libgood.so", RTLD_NOW);
    int r = (int)(unsigned long)dlsym(h, "good_data");
    dlclose(h);
    return r;
}
EXPORT(missing_symbol) int missing_symbol(void) { return fails("libbad.so", "nowhere_at_all"); }
EXPORT(corrupt) int corrupt(void) { return fails("libneedscorrupt.so", "libcorrupt.so"); }
EXPORT(missing_dep) int missing_dep(void) { return fails("libneedsmissing.so", "libmissing.so"); }
EXPORT(mismatch) int mismatch(void) { return fails("libmismatch.so", "good_fn"); }
EXPORT(no_trace) int no_trace(void) {
    return dlsym(RTLD_DEFAULT, "good_fn") == 0 && dlopen("libgood.so", RTLD_NOW | RTLD_NOLOAD) == 0 &&
           dlopen("libbad.so", RTLD_NOW | RTLD_NOLOAD) == 0;
}
