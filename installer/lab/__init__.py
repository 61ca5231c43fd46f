"""Lab plumbing: bridges, taps, network namespaces for test and demo labs on one host."""
