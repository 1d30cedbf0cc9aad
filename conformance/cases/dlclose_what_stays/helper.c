int helper_fn(int x) { return x + 1; }
