int a_step(int);
int b_step(int n) { return n <= 0 ? 0 : 10 + a_step(n - 1); }
