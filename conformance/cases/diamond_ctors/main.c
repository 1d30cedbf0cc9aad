#include "test.h"
int a_value(void);
int b_value(void);
extern int c_inits;
EXPORT(run) int run(void) { return a_value() + b_value() + c_inits; }
