#include "test.h"
int a_step(int);
EXPORT(run) int run(int n) { return a_step(n); }
