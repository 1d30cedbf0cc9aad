int v4(void);
extern int d4;
int d3 = 3;
int v3(void) { return d3 + v4() + d4 * 0; }
