int v35(void);
extern int d35;
int d34 = 34;
int v34(void) { return d34 + v35() + d35 * 0; }
