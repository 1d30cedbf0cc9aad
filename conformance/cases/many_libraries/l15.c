int v16(void);
extern int d16;
int d15 = 15;
int v15(void) { return d15 + v16() + d16 * 0; }
