/* The plugin host: dlopens every .so in the directory it is given and calls each plugin. */
#include <dirent.h>
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

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/plugins/";
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "cannot open %s\n", dir);
        return 2;
    }
    char *names[64];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 64) {
        size_t len = strlen(e->d_name);
        if (len > 3 && strcmp(e->d_name + len - 3, ".so") == 0) names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof names[0], by_name);
    int failures = 0;
    for (int i = 0; i < n; i++) {
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            printf("%s: %s\n", names[i], dlerror());
            failures++;
            continue;
        }
        const char *(*name)(void) = (const char *(*)(void))dlsym(h, "plugin_name");
        int (*run)(int) = (int (*)(int))dlsym(h, "plugin_run");
        if (name && run)
            printf("%s: %s says %d\n", names[i], name(), run(7));
        else
            printf("%s: not a plugin (%s)\n", names[i], dlerror());
        dlclose(h);
        free(names[i]);
    }
    printf("%d plugin(s), %d failed\n", n, failures);
    return failures;
}
