int v13(void);
extern int d13;
int d12 = 12;
int v12(void) { return d12 + v13() + d13 * 0; }
