#include "test.h"
void (*lib_logger(void))(int) { return log_int; }
