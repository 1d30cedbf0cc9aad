int main_put(int v);
extern int main_counter;
int greet(int x) { main_counter += x; return main_put(x * 2); }
int greet_data = 31;
