int dep_fn(void);
int top_fn(void) { return dep_fn() + 1; }
