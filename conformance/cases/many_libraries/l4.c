int v5(void);
extern int d5;
int d4 = 4;
int v4(void) { return d4 + v5() + d5 * 0; }
