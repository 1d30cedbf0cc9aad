int v19(void);
extern int d19;
int d18 = 18;
int v18(void) { return d18 + v19() + d19 * 0; }
