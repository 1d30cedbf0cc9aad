#include "test.h"
int found_me(void);
EXPORT(run) int run(void) { return found_me(); }
