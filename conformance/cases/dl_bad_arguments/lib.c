int lib_fn(void) { return 3; }
