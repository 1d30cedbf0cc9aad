int v1(void);
extern int d1;
int d0 = 0;
int v0(void) { return d0 + v1() + d1 * 0; }
