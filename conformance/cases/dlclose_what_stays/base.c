int base_fn(int x) { return x * 2; }
