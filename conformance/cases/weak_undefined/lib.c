extern int maybe_fn(void) __attribute__((weak));
extern int maybe_data __attribute__((weak));
int has_fn(void) { return maybe_fn != 0; }
int data_addr(void) { return (int)(unsigned long)&maybe_data; }
int call_fn(void) { return maybe_fn(); }
