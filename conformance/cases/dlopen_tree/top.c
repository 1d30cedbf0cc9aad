int mid_fn(void);
int top_fn(void) { return mid_fn() + 1; }
