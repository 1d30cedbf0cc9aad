int v2(void);
extern int d2;
int d1 = 1;
int v1(void) { return d1 + v2() + d2 * 0; }
