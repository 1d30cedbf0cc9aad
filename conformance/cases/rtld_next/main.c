#include "test.h"
int hook(int);
EXPORT(run) int run(int x) { return hook(x); }
EXPORT(dflt) int dflt(int x) { int (*f)(int) = (int (*)(int))dlsym(RTLD_DEFAULT, "hook"); return f(x); }
