const char *plugin_name(void) { return "double"; }
int plugin_run(int x) { return 2 * x; }
