#include "test.h"
int c_value(void);
static int b_seen;
__attribute__((constructor)) static void b_init(void) { b_seen = c_value(); log_str("b "); }
int b_value(void) { return b_seen; }
