#include "test.h"
int res_counter;
int res_buf[64];
__attribute__((constructor)) static void up(void) { res_counter++; log_str("ctor "); }
__attribute__((destructor)) static void down(void) { log_str("dtor "); }
int res_get(void) { return res_counter; }
void res_dirty(void) { res_buf[3] = 7; res_counter = 50; }
int res_buf3(void) { return res_buf[3]; }
