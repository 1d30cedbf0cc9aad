/* The sqlite example: SQLite 3.46.0 (the amalgamation and the wasm32-wasi VFS that the
 * libsqlite3-sys 0.30.1 crate carries; build.sh fetches it from crates.io and checks its
 * hash) built as a side module (libsqlite3.so) and used by a WASI program that carries libc
 * (a non-PIE main, as hello).
 *
 *   sqlite.wasm DATABASE SQL...     runs each SQL text in turn, printing every row
 *
 * An argument `.load LIBRARY FUNCTION` instead dlopens LIBRARY and calls its
 * `int FUNCTION(sqlite3 *)` with the database, as SQLite's shell loads an extension.
 *
 * The program registers a SQL function of its own, twice(x), and a collation, so the
 * library calls back into the program through function pointers. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "sqlite3.h"

/* <dlfcn.h>, as wasi-libc declares it; dylink provides these functions. */
#define RTLD_NOW 2
#define RTLD_LOCAL 8
void *dlopen(const char *file, int mode);
void *dlsym(void *handle, const char *name);
char *dlerror(void);

/* `.load LIBRARY FUNCTION`: 0 when loaded and initialised. */
static int load(sqlite3 *db, const char *command) {
    char library[256], function[256];
    if (sscanf(command, ".load %255s %255s", library, function) != 2) {
        fprintf(stderr, "usage: .load LIBRARY FUNCTION\n");
        return 1;
    }
    void *h = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    int (*init)(sqlite3 *) = h ? (int (*)(sqlite3 *))dlsym(h, function) : NULL;
    if (!init) {
        fprintf(stderr, "%s\n", dlerror());
        return 1;
    }
    int rc = init(db);
    if (rc != SQLITE_OK) fprintf(stderr, "%s: %s\n", function, sqlite3_errstr(rc));
    return rc != SQLITE_OK;
}

static int print_row(void *first, int n, char **values, char **names) {
    if (*(int *)first) {
        for (int i = 0; i < n; i++) printf("%s%s", i ? "|" : "", names[i]);
        printf("\n");
        *(int *)first = 0;
    }
    for (int i = 0; i < n; i++) printf("%s%s", i ? "|" : "", values[i] ? values[i] : "NULL");
    printf("\n");
    return 0;
}

static void twice(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    if (sqlite3_value_type(argv[0]) == SQLITE_INTEGER)
        sqlite3_result_int64(ctx, 2 * sqlite3_value_int64(argv[0]));
    else
        sqlite3_result_double(ctx, 2 * sqlite3_value_double(argv[0]));
}

static int nocase(void *arg, int a_len, const void *a, int b_len, const void *b) {
    (void)arg;
    int n = a_len < b_len ? a_len : b_len;
    int c = strncasecmp(a, b, n);
    return c ? c : a_len - b_len;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DATABASE SQL...\n", argv[0]);
        return 2;
    }
    sqlite3 *db;
    if (sqlite3_open(argv[1], &db) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", argv[1], sqlite3_errmsg(db));
        return 1;
    }
    sqlite3_create_function(db, "twice", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL, twice,
                            NULL, NULL);
    sqlite3_create_collation(db, "program_nocase", SQLITE_UTF8, NULL, nocase);
    for (int i = 2; i < argc; i++) {
        if (strncmp(argv[i], ".load ", 6) == 0) {
            if (load(db, argv[i])) {
                sqlite3_close(db);
                return 1;
            }
            continue;
        }
        int first = 1;
        char *error = NULL;
        if (sqlite3_exec(db, argv[i], print_row, &first, &error) != SQLITE_OK) {
            fprintf(stderr, "%s\n", error);
            sqlite3_free(error);
            sqlite3_close(db);
            return 1;
        }
    }
    printf("sqlite %s\n", sqlite3_libversion());
    return sqlite3_close(db) == SQLITE_OK ? 0 : 1;
}
