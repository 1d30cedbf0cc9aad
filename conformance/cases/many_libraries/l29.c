int v30(void);
extern int d30;
int d29 = 29;
int v29(void) { return d29 + v30() + d30 * 0; }
