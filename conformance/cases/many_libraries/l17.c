int v18(void);
extern int d18;
int d17 = 17;
int v17(void) { return d17 + v18() + d18 * 0; }
