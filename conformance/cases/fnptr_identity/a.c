int shared_fn(int x) { return x + 1; }
void *a_ptr_to_shared(void) { return (void *)shared_fn; }
int main_fn(int);
void *a_ptr_to_main(void) { return (void *)main_fn; }
