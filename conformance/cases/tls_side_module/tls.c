_Thread_local int tv = 5;
_Thread_local int tz;
int get_tv(void) { return tv * 10 + tz; }
void set_tv(int v) { tv = v; tz = 1; }
int *tv_addr(void) { return &tv; }
