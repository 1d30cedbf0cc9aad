/* The hello example: the greeting comes from a side module (libgreet.so).
 * The exit code is the number of arguments, so a run shows that it reaches the host. */
#include <stdio.h>

const char *greeting(void);

int main(int argc, char **argv) {
    (void)argv;
    printf("%s\n", greeting());
    return argc - 1;
}
