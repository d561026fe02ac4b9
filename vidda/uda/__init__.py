"""Domain-adaptation methods and their parts (teacher, pseudo-labels, mixing, MIC, FD)."""
