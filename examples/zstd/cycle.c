/* zstd loaded at run time: dlopen libzstd.so, find its functions with dlsym, compress and
 * decompress a buffer, dlclose; N times over. Each load gets the library afresh (its data
 * and bss as built: the region an unloaded library leaves is zeroed before it is reused),
 * so every round must give the same compressed size.
 *
 *   cycle.wasm ROUNDS */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* <dlfcn.h>, as wasi-libc declares it; dylink provides these functions. */
#define RTLD_NOW 2
#define RTLD_LOCAL 8
void *dlopen(const char *file, int mode);
void *dlsym(void *handle, const char *name);
int dlclose(void *handle);
char *dlerror(void);

typedef size_t (*bound_fn)(size_t);
typedef size_t (*compress_fn)(void *, size_t, const void *, size_t, int);
typedef size_t (*decompress_fn)(void *, size_t, const void *, size_t);
typedef unsigned (*is_error_fn)(size_t);
typedef const char *(*version_fn)(void);

#define LEN (1 << 20)

static int round_trip(int round, const unsigned char *data, unsigned char *back,
                      size_t *packed_len) {
    void *h = dlopen("libzstd.so", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        printf("round %d: %s\n", round, dlerror());
        return 1;
    }
    bound_fn bound = (bound_fn)dlsym(h, "ZSTD_compressBound");
    compress_fn compress = (compress_fn)dlsym(h, "ZSTD_compress");
    decompress_fn decompress = (decompress_fn)dlsym(h, "ZSTD_decompress");
    is_error_fn is_error = (is_error_fn)dlsym(h, "ZSTD_isError");
    version_fn version = (version_fn)dlsym(h, "ZSTD_versionString");
    if (!bound || !compress || !decompress || !is_error || !version) {
        printf("round %d: %s\n", round, dlerror());
        return 1;
    }
    size_t cap = bound(LEN);
    unsigned char *packed = malloc(cap);
    size_t n = compress(packed, cap, data, LEN, 9);
    size_t m = is_error(n) ? n : decompress(back, LEN, packed, n);
    free(packed);
    int ok = !is_error(n) && m == LEN && memcmp(data, back, LEN) == 0;
    printf("round %d: zstd %s, %d bytes to %zu, %s\n", round, version(), LEN, n,
           ok ? "read back" : "DIFFERENT");
    *packed_len = n;
    if (dlclose(h) != 0) {
        printf("round %d: dlclose: %s\n", round, dlerror());
        return 1;
    }
    return !ok;
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 3;
    unsigned char *data = malloc(LEN), *back = malloc(LEN);
    if (!data || !back) return 2;
    unsigned x = 0x9e3779b9;
    for (size_t i = 0; i < LEN; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        data[i] = (x % 3 == 0) ? (unsigned char)x : "dynamic linking "[i % 16];
    }
    size_t first = 0;
    for (int r = 1; r <= rounds; r++) {
        size_t n;
        if (round_trip(r, data, back, &n)) return 1;
        if (r == 1) first = n;
        if (n != first) {
            printf("round %d: %zu bytes, not %zu as in round 1\n", r, n, first);
            return 1;
        }
    }
    return 0;
}
