int dep_fn(int);
int late_fn(int x) { return dep_fn(x) * 7; }
