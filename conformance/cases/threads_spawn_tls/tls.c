_Thread_local int bumps;
int lib_bump(void) { return ++bumps; }
