int v23(void);
extern int d23;
int d22 = 22;
int v22(void) { return d22 + v23() + d23 * 0; }
