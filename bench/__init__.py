"""tickd benchmarks: ``python -m bench NAME [--quick] [--json PATH]`` (see bench/README.md)."""
