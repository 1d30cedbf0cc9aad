int v29(void);
extern int d29;
int d28 = 28;
int v28(void) { return d28 + v29() + d29 * 0; }
