extern int b_base;
int b_mul(int);
int a_compute(int x) { return b_mul(x) + b_base; }
