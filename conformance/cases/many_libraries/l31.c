int v32(void);
extern int d32;
int d31 = 31;
int v31(void) { return d31 + v32() + d32 * 0; }
