int shared_fn(int);
int main_fn(int);
void *b_ptr_to_shared(void) { return (void *)shared_fn; }
void *b_ptr_to_main(void) { return (void *)main_fn; }
int b_call(int (*f)(int), int v) { return f(v); }
