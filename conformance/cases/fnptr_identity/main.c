#include "test.h"
int shared_fn(int);
void *a_ptr_to_shared(void);
void *a_ptr_to_main(void);
void *b_ptr_to_shared(void);
void *b_ptr_to_main(void);
int b_call(int (*f)(int), int v);
int main_fn(int x) { return x * 100; }
EXPORT(same_shared) int same_shared(void) {
    void *m = (void *)shared_fn;
    return m == a_ptr_to_shared() && m == b_ptr_to_shared() && m != 0;
}
EXPORT(same_main) int same_main(void) {
    void *m = (void *)main_fn;
    return m == a_ptr_to_main() && m == b_ptr_to_main();
}
EXPORT(same_dlsym) int same_dlsym(void) {
    return dlsym(RTLD_DEFAULT, "shared_fn") == (void *)shared_fn && dlsym(RTLD_DEFAULT, "main_fn") == (void *)main_fn;
}
EXPORT(call_through) int call_through(void) { return b_call(shared_fn, 1) + b_call(main_fn, 2); }
