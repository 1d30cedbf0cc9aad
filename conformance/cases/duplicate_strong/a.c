int dup(void) { return 1; }
int a_dup(void) { return dup(); }
