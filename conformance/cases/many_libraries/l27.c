int v28(void);
extern int d28;
int d27 = 27;
int v27(void) { return d27 + v28() + d28 * 0; }
