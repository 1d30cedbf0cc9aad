void do_longjmp(int v) { __builtin_wasm_throw(1, (void *)(long)v); }
