"""Paired timing of two builds of fastecg, op by op: is any op slower after a change?

Each build is a git worktree with its extension built in place, e.g.::

    git worktree add /tmp/build_old <commit> && git worktree add /tmp/build_new HEAD
    (cd /tmp/build_old && MAX_JOBS=2 python setup.py -q build_ext --inplace)
    (cd /tmp/build_new && MAX_JOBS=2 python setup.py -q build_ext --inplace)
    OMP_WAIT_POLICY=PASSIVE python benchmarks/paired_builds.py --old /tmp/build_old \\
        --new /tmp/build_new --out benchmarks/results/paired_builds.json

One persistent process per build (``PYTHONPATH=<worktree>/python``, two torch threads,
OMP_WAIT_POLICY=PASSIVE) warms every workload up, then times single calls on request.
The driver asks old and new for one call each, back to back, in ABBA order, so load from
other processes (which changes over seconds) hits both sides of a pair alike; the report
gives, per workload, the median and 20-80 percentiles of the per-pair new/old ratios and
a bootstrap 95% interval of the median ratio. The workloads are public calls that both
builds accept, on a ``(64, 12, 5000)`` float32 batch (10 s, 500 Hz, 64 records): each
op's CPU kernel forward, and forward + backward where the op is differentiable. The two
builds' outputs are compared too (max |new - old| relative to the peak).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "results", "paired_builds.json")


# --------------------------------------------------------------------------- shared
def stats(times) -> dict:
    """Median and 20/80th percentiles of a list of seconds, and the list."""
    a = np.asarray(times)
    return {"median_s": float(np.median(a)), "p20_s": float(np.percentile(a, 20)),
            "p80_s": float(np.percentile(a, 80)), "times_s": [float(t) for t in times]}


def spread(values) -> dict:
    """Median, 20/80th percentiles, min and max of per-round (or per-pair) values."""
    a = np.asarray(values)
    return {"median": float(np.median(a)), "p20": float(np.percentile(a, 20)),
            "p80": float(np.percentile(a, 80)), "min": float(a.min()),
            "max": float(a.max()), "per_round": [float(v) for v in a]}


def commit_of(tree: str) -> str:
    return subprocess.run(["git", "-C", tree, "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def interleave(procs: dict, names, pairs: dict) -> dict:
    """Per workload, ``pairs[w]`` (or ``pairs["default"]``) pairs of single calls in the
    ``"old"`` and ``"new"`` serving processes, back to back in ABBA order."""

    def one(b, w):
        procs[b].stdin.write(w + "\n")
        procs[b].stdin.flush()
        return float(procs[b].stdout.readline())

    out = {}
    for w in names:
        t = {"old": [], "new": []}
        for i in range(pairs.get(w, pairs["default"])):
            for b in (("old", "new") if i % 2 == 0 else ("new", "old")):
                t[b].append(one(b, w))
        o, n = np.asarray(t["old"]), np.asarray(t["new"])
        ratios = n / o
        boot = np.random.default_rng(0).choice(ratios, (2000, len(ratios)))
        ci = np.percentile(np.median(boot, axis=1), [2.5, 97.5])
        per_pair = spread(ratios)
        per_pair.pop("per_round")
        out[w] = {"pairs": len(o), "ratio_of_medians": float(np.median(n) / np.median(o)),
                  "per_pair_ratio": per_pair, "median_ratio_ci95": [float(c) for c in ci],
                  "old_s": stats(o), "new_s": stats(n)}
    return out


def start_servers(builds: dict, script: str, extra=()) -> dict:
    """One ``--serve`` process per build; returns them once both print READY."""
    procs = {}
    for b, tree in builds.items():
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE",
                   PYTHONPATH=os.path.join(tree, "python"))
        procs[b] = subprocess.Popen(
            [sys.executable, script, "--serve", "--tree", tree, *extra], env=env,
            cwd=tempfile.gettempdir(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, bufsize=1)
    return procs


def wait_ready(procs: dict) -> list:
    names = None
    for b, p in procs.items():
        line = p.stdout.readline()
        if not line.startswith("READY "):
            raise RuntimeError(f"worker {b} failed to start: {line!r}")
        names = json.loads(line[6:])
    return names


def stop_servers(procs: dict) -> None:
    for p in procs.values():
        p.stdin.close()
        p.wait(timeout=120)


# --------------------------------------------------------------------------- server
def _workloads(save: str):
    import torch
    import fastecg.ops as ops

    torch.manual_seed(0)
    x = torch.randn(64, 12, 5000, dtype=torch.float32)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    from scipy.signal import butter

    sos = butter(4, [0.5, 45.0], btype="bandpass", fs=500.0, output="sos")
    calls = {
        "normalize_zscore": lambda v: ops.normalize(v, "z-score", backend="cpu"),
        "bandpass_iir": lambda v: ops.bandpass(v, 500.0, backend="cpu"),
        "bandpass_fft": lambda v: ops.bandpass(v, 500.0, method="fft", backend="cpu"),
        "bandpass_fir": lambda v: ops.bandpass(v, 500.0, method="fir"),
        "sosfiltfilt": lambda v: ops.sosfiltfilt(sos, v, backend="cpu"),
        "baseline_median": lambda v: ops.remove_baseline(v, 500.0, backend="cpu"),
        "baseline_mean": lambda v: ops.remove_baseline(v, 500.0, method="mean",
                                                       backend="cpu"),
    }
    fns = {}
    for name, call in calls.items():
        fns[name + "_fwd"] = (lambda c=call: c(x))
        if name not in ("baseline_median",):  # the median has no useful gradient to time
            xg = x.clone().requires_grad_(True)

            def fwd_bwd(c=call, xg=xg):
                xg.grad = None
                c(xg).backward(g)

            fns[name + "_fwd_bwd"] = fwd_bwd
        if save:
            np.save(os.path.join(save, name + ".npy"), call(x)[:8].numpy())
    return fns


def _serve(args) -> None:
    import torch
    import fastecg

    if not os.path.realpath(fastecg.__file__).startswith(os.path.realpath(args.tree) + os.sep):
        raise SystemExit(f"fastecg from {fastecg.__file__}, not {args.tree}")
    torch.set_num_threads(2)
    fns = _workloads(args.save_outputs)
    for fn in fns.values():
        for _ in range(6):
            fn()
    print("READY " + json.dumps(list(fns)), flush=True)
    for line in sys.stdin:
        fn = fns[line.strip()]
        t0 = time.perf_counter()
        fn()
        print(f"{time.perf_counter() - t0!r}", flush=True)


# --------------------------------------------------------------------------- driver
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--old", required=False)
    ap.add_argument("--new", required=False)
    ap.add_argument("--pairs", type=int, default=100)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tree", help=argparse.SUPPRESS)
    ap.add_argument("--save-outputs", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return _serve(args)
    if not (args.old and args.new):
        ap.error("--old and --new worktrees are required")
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    builds = {"old": os.path.realpath(args.old), "new": os.path.realpath(args.new)}
    tmp = tempfile.mkdtemp(prefix="paired_builds_")
    saves = {b: os.path.join(tmp, b) for b in builds}
    procs = {}
    for b in builds:
        os.makedirs(saves[b])
        procs.update(start_servers({b: builds[b]}, os.path.abspath(__file__),
                                   ["--save-outputs", saves[b]]))
    t0 = time.time()
    try:
        names = wait_ready(procs)
        result = interleave(procs, names, {"default": args.pairs})
    finally:
        stop_servers(procs)
    agreement = {}
    for f in sorted(os.listdir(saves["old"])):
        a, b = np.load(os.path.join(saves["old"], f)), np.load(os.path.join(saves["new"], f))
        agreement[f[:-4]] = float(np.abs(a - b).max() / np.abs(a).max())
    import torch

    doc = {"what": "new/old time of single calls, paired ABBA between two persistent "
                   "processes; (64, 12, 5000) float32, 2 torch threads",
           "machine": {"cpu_model": cpu_model(), "logical_cpus": os.cpu_count(),
                       "loadavg_end": open("/proc/loadavg").read().split()[:3],
                       "torch": torch.__version__, "python": platform.python_version()},
           "builds": {b: {"worktree": t, "commit": commit_of(t)} for b, t in builds.items()},
           "wall_s": time.time() - t0, "workloads": result,
           "max_abs_diff_over_peak": agreement}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(doc, fh, indent=1)
    for w, r in result.items():
        p = r["per_pair_ratio"]
        print(f"{w:28s} new/old median {p['median']:.3f} (p20-p80 {p['p20']:.3f}-"
              f"{p['p80']:.3f}; 95% CI of median {r['median_ratio_ci95'][0]:.3f}-"
              f"{r['median_ratio_ci95'][1]:.3f})")
    print("outputs, max |new - old| / peak:", agreement)


if __name__ == "__main__":
    main()
