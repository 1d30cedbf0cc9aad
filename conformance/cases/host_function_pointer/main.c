#include "test.h"
void (*lib_logger(void))(int);
EXPORT(run) int run(void) {
    void (*mine)(int) = log_int;
    void (*theirs)(int) = lib_logger();
    mine(4);
    theirs(2);
    return mine == theirs;
}
