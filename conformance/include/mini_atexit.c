/* The part of a libc that dlclose needs: atexit handlers per DSO. */
typedef void (*handler_t)(void *);
static struct { handler_t fn; void *arg; void *dso; } handlers[64];
static int count;
int __cxa_atexit(handler_t fn, void *arg, void *dso) {
    if (count == 64) return -1;
    handlers[count].fn = fn; handlers[count].arg = arg; handlers[count].dso = dso;
    count++;
    return 0;
}
void __cxa_finalize(void *dso) {
    for (int i = count - 1; i >= 0; i--) {
        if (handlers[i].fn && (!dso || handlers[i].dso == dso)) {
            handler_t fn = handlers[i].fn;
            handlers[i].fn = 0;
            fn(handlers[i].arg);
        }
    }
}
