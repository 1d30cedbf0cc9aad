int v20(void);
extern int d20;
int d19 = 19;
int v19(void) { return d19 + v20() + d20 * 0; }
