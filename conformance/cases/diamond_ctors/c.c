#include "test.h"
int c_inits;
__attribute__((constructor)) static void c_init(void) { c_inits++; log_str("c "); }
int c_value(void) { return 100 + c_inits; }
