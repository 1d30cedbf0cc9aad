#include "test.h"
int lib_inits;
__attribute__((constructor)) static void init(void) { lib_inits++; log_str("lib "); }
