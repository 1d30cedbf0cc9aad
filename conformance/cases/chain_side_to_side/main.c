#include "test.h"
int a_compute(int);
EXPORT(run) int run(int x) { return a_compute(x); }
