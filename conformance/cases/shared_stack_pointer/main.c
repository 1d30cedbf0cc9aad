#include "test.h"
int lib_recurse(int depth, volatile char *above);
int main_recurse(int depth, volatile char *above) {
    volatile char frame[300];
    frame[0] = (char)depth;
    if (above && !(frame < above)) return -1000;
    if (depth == 0) return frame[0];
    return lib_recurse(depth - 1, frame) + frame[0];
}
EXPORT(run) int run(int depth) { return main_recurse(depth, 0); }
