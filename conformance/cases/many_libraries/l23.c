int v24(void);
extern int d24;
int d23 = 23;
int v23(void) { return d23 + v24() + d24 * 0; }
