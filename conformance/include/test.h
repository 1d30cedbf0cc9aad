/* What every conformance program shares: output through the host, exports, dlfcn. */
#ifndef DYLINK_TEST_H
#define DYLINK_TEST_H

#define EXPORT(name) __attribute__((export_name(#name)))

__attribute__((import_module("test"), import_name("log_str"))) void log_str(const char *s);
__attribute__((import_module("test"), import_name("log_int"))) void log_int(int v);

/* <dlfcn.h> as wasi-libc declares it (freestanding programs have no libc headers). */
#define RTLD_LAZY 1
#define RTLD_NOW 2
#define RTLD_NOLOAD 4
#define RTLD_LOCAL 8
#define RTLD_GLOBAL 256
#define RTLD_NODELETE 4096
#define RTLD_DEFAULT ((void *)0)
#define RTLD_NEXT ((void *)-1)
typedef struct {
    const char *dli_fname;
    void *dli_fbase;
    const char *dli_sname;
    void *dli_saddr;
} Dl_info;
void *dlopen(const char *file, int mode);
void *dlsym(void *handle, const char *name);
int dlclose(void *handle);
char *dlerror(void);
int dladdr(const void *addr, Dl_info *info);

static inline int str_eq(const char *a, const char *b) {
    while (*a && *a == *b) { a++; b++; }
    return *a == *b;
}
static inline int str_has(const char *hay, const char *needle) {
    for (; *hay; hay++) {
        const char *h = hay, *n = needle;
        while (*n && *h == *n) { h++; n++; }
        if (!*n) return 1;
    }
    return 0;
}
#endif
