extern int not_there(void) __attribute__((weak));
int bad_value;
__attribute__((constructor)) static void init(void) { bad_value = not_there(); }
int bad_fn(void) { return 1; }
