#include "test.h"
int lib_counter = 5;
extern int main_value;
int main_twice(int x);
int lib_add(int a, int b) { return a + b; }
int lib_reads_main(void) { return main_value; }
int lib_calls_main(int x) { return main_twice(x) + 1; }
