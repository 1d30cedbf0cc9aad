double b_mix(long long a, float b, double c, int d);
long long a_wide(long long x) { return x * 3; }
double a_calls_b(void) { return b_mix(1ll << 40, 1.5f, 2.25, -7); }
