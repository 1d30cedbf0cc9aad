int keep_fn(void) { return 6; }
