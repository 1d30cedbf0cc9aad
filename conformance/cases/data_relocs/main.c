#include "test.h"
extern int *lib_ptr;
extern int (*lib_fptr)(int);
extern int *lib_local_ptr;
extern const char *lib_msg;
int main_table[4] = {10, 20, 30, 40};
int main_fn(int x) { return x - 1; }
EXPORT(deref) int deref(void) { return *lib_ptr; }
EXPORT(ptr_ok) int ptr_ok(void) { return lib_ptr == &main_table[2] && lib_fptr == main_fn; }
EXPORT(call_fptr) int call_fptr(int x) { return lib_fptr(x); }
EXPORT(local) int local(void) { return *lib_local_ptr; }
EXPORT(msg) int msg(void) { return str_eq(lib_msg, "relocated"); }
