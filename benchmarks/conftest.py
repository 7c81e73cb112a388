"""Benchmark plumbing: every bench_<op>.py times all candidates on the same input in one
run; at the end this writes benchmarks/results/<op>.json with medians, 20/80
percentiles, errors, and each candidate's speed ratio against every other one.

Each candidate's own test times it in its own stretch of the run, and on a shared machine
a busy stretch can land on any one of them. The `paired` fixture also times the main
candidates round by round (every candidate once per round, the order rotated from round
to round) and records each round's ratios: their median and 20/80 percentiles go to the
JSON's "paired" entries, a ratio that load drifting over the run does not skew.

``pytest benchmarks`` records; ``pytest benchmarks --benchmark-disable`` is the quick
smoke mode CI uses (each candidate runs once, nothing is written).
"""

import datetime
import json
import os
import pathlib
import platform
import subprocess
import time

import numpy as np
import pytest
import torch

RESULTS = pathlib.Path(__file__).parent / "results"

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def _commit() -> str:
    if os.environ.get("FASTECG_COMMIT"):  # a copy of the tree without .git (a lent GPU)
        return os.environ["FASTECG_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=RESULTS.parent).stdout.strip()
    except OSError:
        return "unknown"


def _device() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()} x{os.cpu_count()} (CPU)"


@pytest.fixture
def paired(benchmark):
    """``paired(group, op, candidates, rounds, steady=False)``: times ``candidates``
    ({label: callable without arguments}) round by round, each round calling every
    candidate once, starting one further along the list than the round before; each call's
    time is kept for the per-round ratios (see pytest_sessionfinish). Wall-clock times of
    host calls: a GPU candidate would have to synchronise itself.

    ``steady=True``: each timed call follows an untimed call of the same candidate, so
    that no candidate's time holds the state the one before it left (an evicted cache,
    an idle second core: on the shared 2-core machine a few-millisecond call after a
    200 ms single-threaded one takes ~1.5x its back-to-back time), as a training loop
    calling the same step every batch sees it.

    A call's result is freed after its time is taken, as a training loop frees a batch
    later, with other work in between: freeing a batch-sized result can hand the top of
    glibc's heap back to the operating system, at a cost (several milliseconds for a
    7.7 MB batch here) set by what the calls before it allocated, not by the call."""

    def run(group: str, op: str, candidates: dict, rounds: int, steady: bool = False) -> None:
        labels = list(candidates)
        seconds = {label: [] for label in labels}
        if not benchmark.disabled:
            for fn in candidates.values():  # warm-up: caches, thread pools, lazy imports
                fn()

        def one_round():
            first = len(seconds[labels[0]]) % len(labels)
            for label in labels[first:] + labels[:first]:
                if steady:
                    candidates[label]()
                start = time.perf_counter()
                result = candidates[label]()
                seconds[label].append(time.perf_counter() - start)
                del result  # freed untimed (see the docstring)

        benchmark.group = group
        benchmark.extra_info.update({"op": op, "paired_seconds": seconds, "steady": steady})
        benchmark.pedantic(one_round, rounds=rounds, iterations=1)

    return run


def _paired_record(bench) -> dict:
    """Per-candidate median times and, for every pair, the distribution of the ratio of
    their times within the same round (other / this: above 1, this one is faster)."""
    seconds = {k: np.asarray(v) for k, v in bench.extra_info["paired_seconds"].items()}
    speedup = {}
    for label, own in seconds.items():
        speedup[label] = {}
        for other, theirs in seconds.items():
            if other != label:
                ratio = theirs / own
                speedup[label][other] = {
                    "median": round(float(np.median(ratio)), 3),
                    "p20": round(float(np.percentile(ratio, 20)), 3),
                    "p80": round(float(np.percentile(ratio, 80)), 3)}
    return {"group": bench.group, "rounds": len(next(iter(seconds.values()))),
            "steady": bool(bench.extra_info.get("steady", False)),
            "median_ms": {k: round(1e3 * float(np.median(v)), 3) for k, v in seconds.items()},
            "speedup_over": speedup}


def pytest_sessionfinish(session):
    bench_session = getattr(session.config, "_benchmarksession", None)
    if bench_session is None or bench_session.disabled:
        return
    by_op: dict[str, list] = {}
    paired_by_op: dict[str, list] = {}
    for bench in bench_session.benchmarks:
        if bench.stats is None or not bench.stats.data:
            continue
        if "paired_seconds" in bench.extra_info:
            paired_by_op.setdefault(bench.extra_info["op"], []).append(_paired_record(bench))
            continue
        # A candidate timed on a slice of the workload (too slow for the whole) sets
        # extra_info["scaled_by"]; its times are scaled up to the whole workload.
        data_ms = 1e3 * np.asarray(bench.stats.data) * bench.extra_info.get("scaled_by", 1)
        record = {
            **bench.extra_info,
            "name": bench.name,
            "group": bench.group,
            "median_ms": float(np.median(data_ms)),
            "p20_ms": float(np.percentile(data_ms, 20)),
            "p80_ms": float(np.percentile(data_ms, 80)),
            "rounds": len(data_ms),
        }
        if "bytes" in bench.extra_info:  # memory traffic at least: input read, output written
            scaled_bytes = bench.extra_info["bytes"] * bench.extra_info.get("scaled_by", 1)
            record["gb_per_s"] = round(scaled_bytes / record["median_ms"] / 1e6, 1)
        by_op.setdefault(bench.extra_info.get("op", "misc"), []).append(record)
    versions = {"torch": torch.__version__, "numpy": np.__version__,
                "python": platform.python_version()}
    try:
        import scipy

        versions["scipy"] = scipy.__version__
    except ImportError:
        pass
    RESULTS.mkdir(exist_ok=True)
    for op in by_op.keys() | paired_by_op.keys():
        records = by_op.get(op, [])
        for group in {r["group"] for r in records}:
            members = [r for r in records if r["group"] == group]
            for r in members:
                r["speedup_over"] = {o["label"]: round(o["median_ms"] / r["median_ms"], 3)
                                     for o in members if o is not r}
        out = {"op": op, "device": _device(), "threads": torch.get_num_threads(),
               "commit": _commit(), "date": datetime.date.today().isoformat(),
               "versions": versions, "results": records,
               "paired": paired_by_op.get(op, [])}
        (RESULTS / f"{op}.json").write_text(json.dumps(out, indent=1) + "\n")
