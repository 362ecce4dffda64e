"""Benchmarks of `particles`: run `python benchmarks/run.py` (see BENCHMARKS.md)."""
