#include "test.h"
int v0(void);
EXPORT(run) int run(void) { return v0(); }
