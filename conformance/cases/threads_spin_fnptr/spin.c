int calls;
int spin_fn(int x) { calls++; return x * 100 + 42; }
