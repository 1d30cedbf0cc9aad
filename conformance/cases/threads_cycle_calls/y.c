int x_step(int);
int y_step(int n) { return n <= 0 ? 0 : 20 + x_step(n - 1); }
