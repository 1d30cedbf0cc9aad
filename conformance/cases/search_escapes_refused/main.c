#include "test.h"
static int refused(const char *name, const char *word) {
    void *h = dlopen(name, RTLD_NOW);
    if (h) return 0;
    const char *e = dlerror();
    return e && str_has(e, word);
}
EXPORT(dotdot) int dotdot(void) { return refused("../../outside.so", "outside the configured library roots"); }
EXPORT(absolute) int absolute(void) { return refused("/etc/libgood.so", "outside the configured library roots"); }
EXPORT(symlink) int symlink(void) { return refused("/lib/evil.so", "refused"); }
EXPORT(dotdot_in_path) int dotdot_in_path(void) { return refused("/lib/../../outside.so", "outside"); }
EXPORT(inside_ok) int inside_ok(void) { return dlopen("/lib/libgood.so", RTLD_NOW) != 0; }
