int y_step(int);
int x_step(int n) { return n <= 0 ? 0 : 2 + y_step(n - 1); }
