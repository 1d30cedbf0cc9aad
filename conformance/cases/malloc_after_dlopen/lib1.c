int lib1_data[2048] = {1};
int lib1_check(void) { int s = 0; for (int i = 0; i < 2048; i++) s += lib1_data[i]; return s; }
void lib1_fill(void) { for (int i = 0; i < 2048; i++) lib1_data[i] = 1; }
