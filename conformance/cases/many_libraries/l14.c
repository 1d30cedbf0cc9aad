int v15(void);
extern int d15;
int d14 = 14;
int v14(void) { return d14 + v15() + d15 * 0; }
