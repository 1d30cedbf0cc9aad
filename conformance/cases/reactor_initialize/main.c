#include "test.h"
extern int lib_inits;
void __wasm_call_ctors(void);
static int main_inits;
__attribute__((constructor)) static void init(void) { main_inits++; log_str("main "); }
EXPORT(_initialize) void _initialize(void) { __wasm_call_ctors(); }
EXPORT(count) int count(void) { return main_inits * 10 + lib_inits; }
