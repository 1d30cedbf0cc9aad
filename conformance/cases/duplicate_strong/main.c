#include "test.h"
int a_dup(void);
int b_dup(void);
int dup(void);
EXPORT(run) int run(void) { return dup() * 100 + a_dup() * 10 + b_dup(); }
