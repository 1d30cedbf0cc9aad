void do_throw(int v) { __builtin_wasm_throw(0, (void *)(long)v); }
