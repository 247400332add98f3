"""Benchmarks against the baselines; scripts/bench_*.py write their tables to results/."""
