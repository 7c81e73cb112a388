"""Benchmark workloads, timing and the ``fastecg bench`` runner.

:mod:`fastecg.bench.workloads` defines what is timed (every op's inputs, candidates,
reference and tolerance), :mod:`fastecg.bench.timing` how (warm-up, alternating paired
rounds, percentiles, peak memory), :mod:`fastecg.bench.runner` runs them and writes
``results.json``, the table and the plots. ``benchmarks/bench_*.py`` import the same
workloads, so the recorded JSON and the command time the same things.
"""
