int lib2_data[2048] = {2};
int lib2_check(void) { int s = 0; for (int i = 0; i < 2048; i++) s += lib2_data[i]; return s; }
void lib2_fill(void) { for (int i = 0; i < 2048; i++) lib2_data[i] = 2; }
