int plug_data = 1234;
int plug_fn(int x) { return x + 100; }
