int v8(void);
extern int d8;
int d7 = 7;
int v7(void) { return d7 + v8() + d8 * 0; }
