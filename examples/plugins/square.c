#include <stdlib.h>
#include <string.h>
/* Uses the host's libc: malloc and strcpy come from the main module. */
const char *plugin_name(void) {
    char *s = malloc(16);
    strcpy(s, "square");
    return s;
}
int plugin_run(int x) { return x * x; }
