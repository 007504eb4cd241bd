"""The benchmark suite: real processes, a real Redis, fake CRMs, wrk as the load generator.

Run with `make bench` (or `python -m bench --help`). Results go to bench/results/latest.{md,json};
the README quotes them. Numbers are reported next to references measured in the same run, as ratios,
because the machines are noisy.
"""
