_Thread_local int later_tv = 40;
int later_get(void) { return later_tv++; }
