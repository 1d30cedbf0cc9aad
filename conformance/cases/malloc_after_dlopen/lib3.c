int lib3_data[2048] = {3};
int lib3_check(void) { int s = 0; for (int i = 0; i < 2048; i++) s += lib3_data[i]; return s; }
void lib3_fill(void) { for (int i = 0; i < 2048; i++) lib3_data[i] = 3; }
