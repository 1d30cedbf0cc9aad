int dup(void) { return 2; }
int b_dup(void) { return dup(); }
