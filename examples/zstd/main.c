/* The zstd example: a real library, the Zstandard reference implementation (zstd 1.5.7,
 * the lib/ sources the zstd-sys crate of Cargo.lock carries), built as a side module
 * (libzstd.so) and used by a WASI program that carries libc (a non-PIE main, as hello).
 *
 *   main.wasm compress LEVEL IN OUT     one frame, with its content size and a checksum
 *   main.wasm decompress IN OUT         every frame of IN, streamed
 *
 * It prints one line saying what it did; on failure, a message on stderr and exit code 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zstd.h"

static int fail(const char *what, const char *detail) {
    fprintf(stderr, "zstd example: %s: %s\n", what, detail);
    return 1;
}

/* The whole of `path`, in a buffer from malloc; NULL on failure. */
static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        unsigned char *bigger = realloc(buf, cap *= 2);
        if (!bigger) free(buf);
        buf = bigger;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static int write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t n = fwrite(data, 1, len, f);
    return fclose(f) == 0 && n == len ? 0 : -1;
}

static int compress(int level, const char *in, const char *out) {
    size_t len;
    unsigned char *src = read_file(in, &len);
    if (!src) return fail(in, "cannot be read");
    size_t bound = ZSTD_compressBound(len);
    void *dst = malloc(bound);
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    if (!dst || !cctx) return fail("compress", "out of memory");
    size_t r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
    if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
    if (!ZSTD_isError(r)) r = ZSTD_compress2(cctx, dst, bound, src, len);
    if (ZSTD_isError(r)) return fail("compress", ZSTD_getErrorName(r));
    if (write_file(out, dst, r) != 0) return fail(out, "cannot be written");
    printf("compressed %zu bytes to %zu at level %d\n", len, r, level);
    ZSTD_freeCCtx(cctx);
    free(dst);
    free(src);
    return 0;
}

static int decompress(const char *in, const char *out) {
    size_t len;
    unsigned char *src = read_file(in, &len);
    if (!src) return fail(in, "cannot be read");
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    size_t chunk = ZSTD_DStreamOutSize(), cap = chunk, total = 0;
    unsigned char *dst = malloc(cap);
    if (!dctx || !dst) return fail("decompress", "out of memory");
    ZSTD_inBuffer input = {src, len, 0};
    size_t r = 0;
    while (input.pos < input.size) {
        if (cap - total < chunk) {
            unsigned char *bigger = realloc(dst, cap *= 2);
            if (!bigger) return fail("decompress", "out of memory");
            dst = bigger;
        }
        ZSTD_outBuffer output = {dst + total, cap - total, 0};
        r = ZSTD_decompressStream(dctx, &output, &input);
        if (ZSTD_isError(r)) return fail("decompress", ZSTD_getErrorName(r));
        total += output.pos;
    }
    if (r != 0) return fail("decompress", "the input ends inside a frame");
    if (write_file(out, dst, total) != 0) return fail(out, "cannot be written");
    printf("decompressed %zu bytes to %zu\n", len, total);
    ZSTD_freeDCtx(dctx);
    free(dst);
    free(src);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "compress") == 0) {
        char *end;
        long level = strtol(argv[2], &end, 10);
        if (*end || level < ZSTD_minCLevel() || level > ZSTD_maxCLevel())
            return fail(argv[2], "is not a compression level");
        return compress((int)level, argv[3], argv[4]);
    }
    if (argc == 4 && strcmp(argv[1], "decompress") == 0) return decompress(argv[2], argv[3]);
    fprintf(stderr, "usage: %s compress LEVEL IN OUT | decompress IN OUT\n", argv[0]);
    return 2;
}
