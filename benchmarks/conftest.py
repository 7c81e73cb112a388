"""Benchmark plumbing: every bench_<op>.py times all candidates on the same input in one
run; at the end this writes benchmarks/results/<op>.json with medians, 20/80
percentiles, errors, and each candidate's speed ratio against every other one.

``pytest benchmarks`` records; ``pytest benchmarks --benchmark-disable`` is the quick
smoke mode CI uses (each candidate runs once, nothing is written).
"""

import datetime
import json
import os
import pathlib
import platform
import subprocess

import numpy as np
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


def pytest_sessionfinish(session):
    bench_session = getattr(session.config, "_benchmarksession", None)
    if bench_session is None or bench_session.disabled:
        return
    by_op: dict[str, list] = {}
    for bench in bench_session.benchmarks:
        if bench.stats is None or not bench.stats.data:
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
    for op, records in by_op.items():
        for group in {r["group"] for r in records}:
            members = [r for r in records if r["group"] == group]
            for r in members:
                r["speedup_over"] = {o["label"]: round(o["median_ms"] / r["median_ms"], 3)
                                     for o in members if o is not r}
        out = {"op": op, "device": _device(), "threads": torch.get_num_threads(),
               "commit": _commit(), "date": datetime.date.today().isoformat(),
               "versions": versions, "results": records}
        (RESULTS / f"{op}.json").write_text(json.dumps(out, indent=1) + "\n")
