int rc_fn(void) { return 5; }
