int b_step(int);
int a_step(int n) { return n <= 0 ? 0 : 1 + b_step(n - 1); }
