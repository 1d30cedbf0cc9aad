extern int main_table[4];
int main_fn(int);
int *lib_ptr = &main_table[2];
int (*lib_fptr)(int) = main_fn;
static int local_data = 9;
int *lib_local_ptr = &local_data;
const char *lib_msg = "relocated";
