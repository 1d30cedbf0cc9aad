int loc_fn(void);
int use_loc(void) { return loc_fn() + 1; }
