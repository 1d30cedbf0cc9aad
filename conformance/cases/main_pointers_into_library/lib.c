int lib_array[3] = {4, 5, 6};
int lib_fn(void) { return 11; }
