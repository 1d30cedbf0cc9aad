int v31(void);
extern int d31;
int d30 = 30;
int v30(void) { return d30 + v31() + d31 * 0; }
