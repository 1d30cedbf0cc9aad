/* Data and function pointers the main's heap must never cover. */
int lib_values[64] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                      17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
                      33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48,
                      49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64};
static int eleven(void) { return 11; }
static int twenty_two(void) { return 22; }
int (*lib_fns[2])(void) = {eleven, twenty_two};

int lib_sum(void) {
    int s = 0;
    for (int i = 0; i < 64; i++) s += lib_values[i];
    return s + lib_fns[0]() + lib_fns[1]();
}
