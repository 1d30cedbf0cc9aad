int bot_fn(void) { return 3; }
