long long a_wide(long long x);
double b_mix(long long a, float b, double c, int d) { return (double)(a >> 40) + b + c + d + (double)a_wide(2); }
