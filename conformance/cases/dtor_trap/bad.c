int bad_data = 7;
int bad_fn(void) { return bad_data; }
__attribute__((destructor)) static void fini(void) { __builtin_trap(); }
