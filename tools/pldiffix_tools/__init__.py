"""Developer tools: the embedded throwaway cluster, `make demo` and `make bench`."""
