int v27(void);
extern int d27;
int d26 = 26;
int v26(void) { return d26 + v27() + d27 * 0; }
