#include "test.h"
int nowhere_defined(int);
EXPORT(run) int run(void) { return 1; }
EXPORT(call_missing) int call_missing(void) { return nowhere_defined(3); }
