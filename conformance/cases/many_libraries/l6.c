int v7(void);
extern int d7;
int d6 = 6;
int v6(void) { return d6 + v7() + d7 * 0; }
