int v25(void);
extern int d25;
int d24 = 24;
int v24(void) { return d24 + v25() + d25 * 0; }
