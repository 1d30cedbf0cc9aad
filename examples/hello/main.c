/* The hello example: the greeting comes from a side module (libgreet.so). */
#include <stdio.h>

const char *greeting(void);

int main(void) {
    printf("%s\n", greeting());
    return 0;
}
