_Thread_local int work_tv = 100;
int work_bump(void) { return ++work_tv; }
