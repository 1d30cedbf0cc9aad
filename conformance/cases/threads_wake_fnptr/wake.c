int wake_fn(void) { return 42; }
