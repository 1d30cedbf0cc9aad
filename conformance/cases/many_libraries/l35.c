int v36(void);
extern int d36;
int d35 = 35;
int v35(void) { return d35 + v36() + d36 * 0; }
