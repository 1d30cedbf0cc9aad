int v3(void);
extern int d3;
int d2 = 2;
int v2(void) { return d2 + v3() + d3 * 0; }
