#include "test.h"
EXPORT(run) int run(void) {
    void *h = dlopen("libtop.so", RTLD_NOW);
    if (!h) return -1;
    int (*top)(void) = (int (*)(void))dlsym(h, "top_fn");
    int (*bot)(void) = (int (*)(void))dlsym(h, "bot_fn");
    return top() * 100 + (bot ? bot() : 0) + (dlsym(RTLD_DEFAULT, "bot_fn") != 0) * 1000;
}
