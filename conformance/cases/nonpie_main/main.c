#include "test.h"
int greet(int);
extern int greet_data;
int main_counter = 1;
static int last;
int main_put(int v) { last = v; return v + 1; }
EXPORT(run) int run(void) { return greet(5) * 100 + last; }
EXPORT(counter) int counter(void) { return main_counter; }
EXPORT(data) int data(void) { return greet_data; }
EXPORT(ptrs) int ptrs(void) { return dlsym(RTLD_DEFAULT, "main_put") == (void *)main_put; }
