int bot_fn(void);
int mid_fn(void) { return bot_fn() * 10; }
