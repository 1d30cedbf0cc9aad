int found_me(void) { return 5; }
