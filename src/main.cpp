// sluice: wiring only. Parsing, policy and I/O live in their modules.
int main() { return 0; }
