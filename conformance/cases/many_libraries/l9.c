int v10(void);
extern int d10;
int d9 = 9;
int v9(void) { return d9 + v10() + d10 * 0; }
