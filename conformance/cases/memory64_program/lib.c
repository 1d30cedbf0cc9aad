long long w_data = 7;
long long main_twice(long long);
long long w_fn(long long x) { return main_twice(x) + w_data; }
void *w_ptr(void) { return (void *)w_fn; }
