int v34(void);
extern int d34;
int d33 = 33;
int v33(void) { return d33 + v34() + d34 * 0; }
