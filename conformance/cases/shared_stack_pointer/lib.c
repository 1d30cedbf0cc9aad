int main_recurse(int depth, volatile char *above);
int lib_recurse(int depth, volatile char *above) {
    volatile char frame[200];
    frame[0] = (char)depth;
    if (above && !(frame < above)) return -1000;   /* the stack grows down across modules */
    if (depth == 0) return frame[0];
    return main_recurse(depth - 1, frame) + frame[0];
}
