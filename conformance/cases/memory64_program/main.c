#include "test.h"
extern long long w_data;
long long w_fn(long long);
void *w_ptr(void);
long long main_twice(long long x) { return 2 * x; }
EXPORT(run) long long run(long long x) { return w_fn(x) + w_data; }
EXPORT(ptrs) int ptrs(void) { return w_ptr() == (void *)w_fn && dlsym(RTLD_DEFAULT, "w_fn") == (void *)w_fn; }
EXPORT(big) long long big(void) { return w_fn(1ll << 40); }
