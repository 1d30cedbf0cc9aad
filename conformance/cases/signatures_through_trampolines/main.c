#include "test.h"
double a_calls_b(void);
long long a_wide(long long);
EXPORT(run) int run(void) { return (int)(a_calls_b() * 4); }
EXPORT(wide) long long wide(long long x) { return a_wide(x); }
