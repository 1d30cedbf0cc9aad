int inner_fn(void) { return 3; }
