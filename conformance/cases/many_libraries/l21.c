int v22(void);
extern int d22;
int d21 = 21;
int v21(void) { return d21 + v22() + d22 * 0; }
