#include "test.h"
int lib_calls_hook(void);
int hook(void) { return 42; }
EXPORT(run) int run(void) { return lib_calls_hook(); }
