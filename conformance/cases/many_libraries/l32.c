int v33(void);
extern int d33;
int d32 = 32;
int v32(void) { return d32 + v33() + d33 * 0; }
