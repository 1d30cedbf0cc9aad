int v17(void);
extern int d17;
int d16 = 16;
int v16(void) { return d16 + v17() + d17 * 0; }
