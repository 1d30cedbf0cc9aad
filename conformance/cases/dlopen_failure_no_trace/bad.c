int nowhere_at_all(void);
int good_fn(void);
int bad_fn(void) { return nowhere_at_all() + good_fn(); }
