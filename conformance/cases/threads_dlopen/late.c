_Thread_local int late_tv = 7;
int late_get(void) { return late_tv++; }
