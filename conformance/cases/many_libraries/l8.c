int v9(void);
extern int d9;
int d8 = 8;
int v8(void) { return d8 + v9() + d9 * 0; }
