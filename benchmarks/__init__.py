"""Load generators and benchmark scenarios for pysfu (see benchmarks/RESULTS.md)."""
