#include "test.h"

/* A libc-style allocator: at its first call it takes everything from __heap_base to the
 * memory's current size as its heap, as wasi-libc's dlmalloc does, and grows memory when
 * that runs out (a region the growth returns past a hole starts a new heap segment). */
extern unsigned char __heap_base;
static unsigned char *next, *end;

void *malloc(unsigned long n) {
    if (!next) {
        next = &__heap_base;
        end = (unsigned char *)(__builtin_wasm_memory_size(0) * 65536);
    }
    n = (n + 15) & ~15ul;
    if ((unsigned long)(end - next) < n) {
        unsigned long pages = (n + 65535) / 65536;
        long old = __builtin_wasm_memory_grow(0, pages);
        if (old < 0) return 0;
        unsigned char *start = (unsigned char *)(old * 65536);
        if (start != end) next = start;
        end = start + pages * 65536;
    }
    void *p = next;
    next += n;
    return p;
}

void free(void *p) { (void)p; }

int lib_sum(void);

/* 64 blocks of 64 KiB, every byte written; the library's sum must not change. */
EXPORT(heavy) int heavy(void) {
    int before = lib_sum();
    for (int i = 0; i < 64; i++) {
        unsigned char *p = malloc(65536);
        if (!p) return -1;
        for (int j = 0; j < 65536; j++) p[j] = 0xAA;
    }
    return lib_sum() == before ? before : -2;
}
