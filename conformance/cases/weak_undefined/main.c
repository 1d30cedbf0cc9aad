#include "test.h"
int has_fn(void);
int data_addr(void);
int call_fn(void);
EXPORT(has) int has(void) { return has_fn(); }
EXPORT(addr) int addr(void) { return data_addr(); }
EXPORT(call) int call(void) { return call_fn(); }
