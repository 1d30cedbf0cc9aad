#include "test.h"
int c_value(void);
static int a_seen;
__attribute__((constructor)) static void a_init(void) { a_seen = c_value(); log_str("a "); }
int a_value(void) { return a_seen; }
