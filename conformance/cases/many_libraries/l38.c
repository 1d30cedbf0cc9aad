int v39(void);
extern int d39;
int d38 = 38;
int v38(void) { return d38 + v39() + d39 * 0; }
