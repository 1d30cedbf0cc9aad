#include "test.h"
/* A malloc in the manner of wasi-libc's: heap from __heap_base to __heap_end, then whatever
 * memory.grow hands out, which need not follow the previous segment. */
extern char __heap_base, __heap_end;
static char *cur, *end;
static void *grab(unsigned long n) {
    n = (n + 15) & ~15ul;
    if (!cur) { cur = &__heap_base; end = &__heap_end; }
    if ((unsigned long)(end - cur) < n) {
        unsigned long pages = (n + 65535) / 65536;
        long old = __builtin_wasm_memory_grow(0, pages);
        if (old < 0) return 0;
        cur = (char *)(old * 65536);
        end = cur + pages * 65536;
    }
    void *p = cur;
    cur += n;
    return p;
}
static int (*check[3])(void);
EXPORT(open_all) int open_all(void) {
    const char *names[3] = {"lib1.so", "lib2.so", "lib3.so"};
    const char *checks[3] = {"lib1_check", "lib2_check", "lib3_check"};
    const char *fills[3] = {"lib1_fill", "lib2_fill", "lib3_fill"};
    for (int i = 0; i < 3; i++) {
        /* Interleave: the program allocates between loads, as a real one would. */
        char *p = grab(100000);
        for (int j = 0; j < 100000; j++) p[j] = (char)0xAB;
        void *h = dlopen(names[i], RTLD_NOW);
        if (!h) return -1;
        ((void (*)(void))dlsym(h, fills[i]))();
        check[i] = (int (*)(void))dlsym(h, checks[i]);
    }
    return 1;
}
EXPORT(heavy) int heavy(void) {
    unsigned char *blocks[200];
    for (int i = 0; i < 200; i++) {
        blocks[i] = grab(40000);
        if (!blocks[i]) return -1;
        for (int j = 0; j < 40000; j++) blocks[i][j] = (unsigned char)(i + j);
    }
    for (int i = 0; i < 200; i++)
        for (int j = 0; j < 40000; j += 997)
            if (blocks[i][j] != (unsigned char)(i + j)) return -2;
    return check[0]() * 100 + check[1]() * 10 + check[2]() == 2048 * 100 + 4096 * 10 + 6144 ? 1 : -3;
}
