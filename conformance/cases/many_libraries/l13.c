int v14(void);
extern int d14;
int d13 = 13;
int v13(void) { return d13 + v14() + d14 * 0; }
