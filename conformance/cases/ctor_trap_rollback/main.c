#include "test.h"
EXPORT(open_bad) int open_bad(void) {
    if (dlopen("libbad.so", RTLD_NOW)) return 0;
    const char *e = dlerror();
    return e && str_has(e, "not_there") && str_has(e, "constructors");
}
EXPORT(gone) int gone(void) { return dlsym(RTLD_DEFAULT, "bad_fn") == 0 && dlopen("libbad.so", RTLD_NOW | RTLD_NOLOAD) == 0; }
