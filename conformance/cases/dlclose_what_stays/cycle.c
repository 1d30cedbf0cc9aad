int helper_fn(int);
int base_fn(int);
int cycle_data = 5;
int cycle_fn(int x) { return base_fn(helper_fn(x)) + cycle_data; }
