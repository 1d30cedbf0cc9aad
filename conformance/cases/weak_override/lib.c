__attribute__((weak)) int hook(void) { return 1; }
int lib_calls_hook(void) { return hook(); }
