int v26(void);
extern int d26;
int d25 = 25;
int v25(void) { return d25 + v26() + d26 * 0; }
