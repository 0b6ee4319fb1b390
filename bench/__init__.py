"""Benchmarks of kolors-tryon: what each result costs, and how much paid capacity it uses.

Run them with `make bench` (or `make bench QUICK=1`); each module is one benchmark and
writes its figures to `bench/results/<name>.json`. They are not tests: CI runs only the
smallest case of one (tests/integration/test_bench_smoke.py), so the code cannot rot.
"""
