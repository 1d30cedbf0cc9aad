int b_base = 1000;
int b_mul(int x) { return x * 3; }
