_Alignas(4096) char page_aligned[100];
int zeroes[20000];
int big_table[300000] = {1, 2, 3};
int bss_sum(void) { int s = 0; for (int i = 0; i < 20000; i++) s += zeroes[i]; return s; }
int aligned_ok(void) { return ((unsigned long)page_aligned % 4096) == 0; }
int big_sum(void) { int s = 0; for (int i = 0; i < 300000; i++) s += big_table[i]; big_table[299999] = 5; return s + big_table[299999]; }
