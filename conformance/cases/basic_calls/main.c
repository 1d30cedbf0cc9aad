#include "test.h"
extern int lib_counter;
int lib_add(int, int);
int lib_reads_main(void);
int lib_calls_main(int);
int main_value = 77;
int main_twice(int x) { return 2 * x; }
EXPORT(run) int run(void) { return lib_add(40, 2); }
EXPORT(data) int data(void) { return lib_counter + lib_reads_main(); }
EXPORT(back) int back(int x) { return lib_calls_main(x); }
