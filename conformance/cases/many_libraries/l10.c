int v11(void);
extern int d11;
int d10 = 10;
int v10(void) { return d10 + v11() + d11 * 0; }
