/* A side module: built -fPIC -shared; snprintf comes from the main module's libc. */
#include <stdio.h>

const char *greeting(void) {
    static char buf[64];
    snprintf(buf, sizeof buf, "Hello from %s!", "libgreet.so");
    return buf;
}
