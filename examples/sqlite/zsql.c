/* libzsql.so: SQL functions zstd_compress(blob [, level]) and zstd_decompress(blob), a
 * library that needs two others (libsqlite3.so and libzstd.so, recorded as NEEDED). The
 * sqlite example loads it at run time with `.load libzsql.so zsql_init`: its dependencies
 * resolve against the libsqlite3.so the program already has and a libzstd.so loaded with
 * it, and SQLite calls its functions through the pointers it registers. */
#include "sqlite3.h"
#include "zstd.h"

static void compress(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    const void *src = sqlite3_value_blob(argv[0]);
    size_t len = (size_t)sqlite3_value_bytes(argv[0]);
    int level = argc > 1 ? sqlite3_value_int(argv[1]) : 3;
    size_t cap = ZSTD_compressBound(len);
    void *dst = sqlite3_malloc64(cap);
    if (!dst) {
        sqlite3_result_error_nomem(ctx);
        return;
    }
    size_t n = ZSTD_compress(dst, cap, src, len, level);
    if (ZSTD_isError(n)) {
        sqlite3_free(dst);
        sqlite3_result_error(ctx, ZSTD_getErrorName(n), -1);
        return;
    }
    sqlite3_result_blob64(ctx, dst, n, sqlite3_free);
}

static void decompress(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    const void *src = sqlite3_value_blob(argv[0]);
    size_t len = (size_t)sqlite3_value_bytes(argv[0]);
    unsigned long long size = ZSTD_getFrameContentSize(src, len);
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN) {
        sqlite3_result_error(ctx, "zstd_decompress: not one zstd frame with its size", -1);
        return;
    }
    void *dst = sqlite3_malloc64(size ? size : 1);
    if (!dst) {
        sqlite3_result_error_nomem(ctx);
        return;
    }
    size_t n = ZSTD_decompress(dst, size, src, len);
    if (ZSTD_isError(n)) {
        sqlite3_free(dst);
        sqlite3_result_error(ctx, ZSTD_getErrorName(n), -1);
        return;
    }
    sqlite3_result_blob64(ctx, dst, n, sqlite3_free);
}

int zsql_init(sqlite3 *db) {
    int flags = SQLITE_UTF8 | SQLITE_DETERMINISTIC;
    int rc = sqlite3_create_function(db, "zstd_compress", 1, flags, 0, compress, 0, 0);
    if (rc == SQLITE_OK)
        rc = sqlite3_create_function(db, "zstd_compress", 2, flags, 0, compress, 0, 0);
    if (rc == SQLITE_OK)
        rc = sqlite3_create_function(db, "zstd_decompress", 1, flags, 0, decompress, 0, 0);
    return rc;
}
