int v12(void);
extern int d12;
int d11 = 11;
int v11(void) { return d11 + v12() + d12 * 0; }
