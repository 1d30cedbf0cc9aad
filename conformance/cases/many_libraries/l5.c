int v6(void);
extern int d6;
int d5 = 5;
int v5(void) { return d5 + v6() + d6 * 0; }
