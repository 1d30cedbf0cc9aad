int d39 = 39;
int v39(void) { return d39; }
