#include "test.h"
extern int lib_array[3];
int lib_fn(void);
int *main_ptr = &lib_array[1];
int (*main_fptr)(void) = lib_fn;
EXPORT(run) int run(void) { return *main_ptr * 100 + main_fptr(); }
