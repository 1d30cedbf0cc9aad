int good_data = 5;
int good_fn(void) { return good_data; }
