int v21(void);
extern int d21;
int d20 = 20;
int v20(void) { return d20 + v21() + d21 * 0; }
