int v38(void);
extern int d38;
int d37 = 37;
int v37(void) { return d37 + v38() + d38 * 0; }
