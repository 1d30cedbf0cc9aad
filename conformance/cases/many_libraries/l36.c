int v37(void);
extern int d37;
int d36 = 36;
int v36(void) { return d36 + v37() + d37 * 0; }
