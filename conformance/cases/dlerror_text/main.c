#include "test.h"
EXPORT(missing_lib) int missing_lib(void) {
    if (dlopen("libnope.so", RTLD_NOW)) return 0;
    const char *e = dlerror();
    return e && str_has(e, "libnope.so") && str_has(e, "not found") && dlerror() == 0;
}
EXPORT(missing_sym) int missing_sym(void) {
    void *h = dlopen("libplug.so", RTLD_NOW);
    if (!h || dlsym(h, "absent_symbol")) return 0;
    const char *e = dlerror();
    return e && str_has(e, "absent_symbol");
}
EXPORT(no_error) int no_error(void) { return dlerror() == 0; }
EXPORT(show) int show(void) { dlopen("libnope.so", RTLD_NOW); log_str(dlerror()); return 0; }
