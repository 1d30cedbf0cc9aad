#include "test.h"
int bss_sum(void);
int aligned_ok(void);
int big_sum(void);
EXPORT(bss) int bss(void) { return bss_sum(); }
EXPORT(aligned) int aligned(void) { return aligned_ok(); }
EXPORT(big) int big(void) { return big_sum(); }
