/* The library the threads call. */
int square(int x) { return x * x; }
