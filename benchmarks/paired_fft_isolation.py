"""Paired, process-isolated timing of ``bandpass(method="fft", backend="cpu")`` for two builds.

Each build is a git worktree with its extension built in place (``python setup.py
build_ext --inplace``), e.g.::

    git worktree add /tmp/fft_old 9c86fb8 && git worktree add /tmp/fft_new HEAD
    (cd /tmp/fft_old && MAX_JOBS=2 python setup.py -q build_ext --inplace)
    (cd /tmp/fft_new && MAX_JOBS=2 python setup.py -q build_ext --inplace)
    OMP_WAIT_POLICY=PASSIVE python benchmarks/paired_fft_isolation.py --rounds 10

Every round launches one fresh process per build (order swapped every round) with
``PYTHONPATH=<worktree>/python`` (the CPU path needs nothing else: triton kernels are
registered by name and imported lazily), ``--threads`` torch threads (default 2) and
OMP_WAIT_POLICY=PASSIVE. With ``--threads 1`` a call is timed in the calling thread's CPU
time (``time.thread_time``: the kernel then runs on that thread alone), which time spent
waiting for the other processes of a loaded machine does not inflate; otherwise in wall time.
A process times, for its build:

* ``clean_fwd``: forward on ``torch.randn(64, 12, 5000)`` (seed 0), 8 warm-up + 30 timed;
* ``clean_fwd_bwd``: forward + backward on the same batch (requires_grad, a fixed
  upstream gradient), 8 warm-up + 30 timed;
* ``holter_fwd``: forward on ``torch.randn(2, 12, 1_800_000)``, 3 warm-up + 5 timed;
* ``real_fwd``: forward on the CinC 2021 sample records (``../shared/data/cinc2021``,
  read with wfdb into an (n_records, 12, 5000) float32 batch, mV), 8 warm-up + 30 timed,
  when the folder exists.

The new/old ratio of medians is taken within each round; the report gives the median and
the 20-80 percentiles of the per-round ratios. On a shared machine whose load changes
every few seconds a round's two processes see different load, so a second, interleaved
phase (``--pairs``, 0 skips it) keeps one warmed-up process per build alive and times
single calls old/new back to back (ABBA order): per-pair ratios resolve a few percent. The script also computes, in Python, what
the new kernel's pairing rule (f24c921, csrc/cpu/zero_phase_fft.cpp ``pair_rows``) does
to each batch: in each consecutive block of 2L rows (L = 8 float32, 4 float64) rows are
sorted by max|x| (+inf when not finite) and neighbours paired while the larger peak is
<= 4x the smaller; unpaired rows get a zero partner, and a block needs
ceil(lanes / L) complex transforms instead of one.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

from paired_builds import (commit_of as _commit, cpu_model as _cpu_model, interleave,
                           spread as _spread, start_servers, stats as _stats, stop_servers,
                           wait_ready)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "cinc2021"))
DEFAULT_OUT = os.path.join(HERE, "results", "bandpass_fft_isolation_paired.json")
PAIR_PEAK_RATIO = 4.0


# --------------------------------------------------------------------------- worker
def _clock(threads: int):
    """Thread CPU time on 1 thread (the kernel runs on the caller), wall time otherwise."""
    return time.thread_time if threads == 1 else time.perf_counter


def _worker(args: argparse.Namespace) -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    import fastecg
    import fastecg.ops as ops
    import fastecg._C as C  # noqa: F401  (the extension whose kernels are timed)

    tree = os.path.realpath(args.tree)
    loaded = [m.__file__ for n, m in list(sys.modules.items())
              if n.startswith("fastecg") and getattr(m, "__file__", None)]
    stray = [f for f in loaded if not os.path.realpath(f).startswith(tree + os.sep)]
    if stray:
        raise SystemExit(f"fastecg modules loaded from outside {tree}: {stray}")
    torch.set_num_threads(args.threads)
    clock = _clock(args.threads)

    def call(x):
        return ops.bandpass(x, 500.0, method="fft", backend="cpu")

    def timed(fn, warmup, reps):
        for _ in range(warmup):
            fn()
        out = []
        for _ in range(reps):
            t0 = clock()
            fn()
            out.append(clock() - t0)
        return out

    result = {"fastecg_file": fastecg.__file__, "extension_file": C.__file__,
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "loadavg_before": open("/proc/loadavg").read().split()[:3], "workloads": {}}
    wl = result["workloads"]

    torch.manual_seed(0)
    x = torch.randn(64, 12, 5000, dtype=torch.float32)
    wl["clean_fwd"] = _stats(timed(lambda: call(x), 8, 30))
    if args.save_outputs:
        np.save(os.path.join(args.save_outputs, "clean.npy"), call(x)[:4].numpy())

    xg = x.clone().requires_grad_(True)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))

    def fwd_bwd():
        xg.grad = None
        call(xg).backward(g)

    wl["clean_fwd_bwd"] = _stats(timed(fwd_bwd, 8, 30))
    if args.save_outputs:
        np.save(os.path.join(args.save_outputs, "clean_grad.npy"), xg.grad[:4].numpy())
    del xg, g

    torch.manual_seed(0)
    h = torch.randn(2, 12, 1_800_000, dtype=torch.float32)
    wl["holter_fwd"] = _stats(timed(lambda: call(h), 3, 5))
    del h

    if args.real:
        r = torch.from_numpy(np.load(args.real))
        wl["real_fwd"] = _stats(timed(lambda: call(r), 8, 30))
        if args.save_outputs:
            np.save(os.path.join(args.save_outputs, "real.npy"), call(r).numpy())
    result["loadavg_after"] = open("/proc/loadavg").read().split()[:3]
    print("RESULT " + json.dumps(result))


def _serve(args: argparse.Namespace) -> None:
    """Persistent worker for the interleaved phase: warms every workload up, then times
    one call per line read from stdin (a workload name) and prints the seconds."""
    import torch
    import fastecg
    import fastecg.ops as ops

    if not os.path.realpath(fastecg.__file__).startswith(os.path.realpath(args.tree) + os.sep):
        raise SystemExit(f"fastecg from {fastecg.__file__}, not {args.tree}")
    torch.set_num_threads(args.threads)
    clock = _clock(args.threads)

    def call(x):
        return ops.bandpass(x, 500.0, method="fft", backend="cpu")

    torch.manual_seed(0)
    x = torch.randn(64, 12, 5000, dtype=torch.float32)
    xg = x.clone().requires_grad_(True)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))

    def fwd_bwd():
        xg.grad = None
        call(xg).backward(g)

    torch.manual_seed(0)
    h = torch.randn(2, 12, 1_800_000, dtype=torch.float32)
    fns = {"clean_fwd": (lambda: call(x), 8), "clean_fwd_bwd": (fwd_bwd, 8),
           "holter_fwd": (lambda: call(h), 3)}
    if args.real:
        r = torch.from_numpy(np.load(args.real))
        fns["real_fwd"] = (lambda: call(r), 8)
    for fn, warmup in fns.values():
        for _ in range(warmup):
            fn()
    print("READY " + json.dumps(sorted(fns)), flush=True)
    for line in sys.stdin:
        fn = fns[line.strip()][0]
        t0 = clock()
        fn()
        print(f"{clock() - t0!r}", flush=True)


# --------------------------------------------------------------------------- pairing rule
def pairing_rule(batch: np.ndarray, block: int) -> dict:
    """What pair_rows does to a batch: rows flattened to (rows, n), blocks of `block`
    consecutive rows (the last may be shorter), sorted by peak, neighbours paired while
    the larger peak <= 4x the smaller and both finite. Counts unpaired rows and the
    complex transforms needed (ceil(lanes / L) per block; the old kernel needed 1)."""
    rows = batch.reshape(-1, batch.shape[-1]).astype(np.float64)
    finite = np.isfinite(rows).all(axis=1)
    peak = np.where(finite, np.abs(rows).max(axis=1), np.inf)
    lanes_per_transform = block // 2
    unpaired = transforms = blocks = 0
    for r0 in range(0, len(rows), block):
        p = np.sort(peak[r0:r0 + block])
        i = lanes = 0
        while i < len(p):
            if np.isfinite(p[i]) and i + 1 < len(p) and p[i + 1] <= PAIR_PEAK_RATIO * p[i]:
                i += 2
            else:
                unpaired += 1
                i += 1
            lanes += 1
        transforms += math.ceil(lanes / lanes_per_transform)
        blocks += 1
    return {"rows": len(rows), "block_rows": block, "unpaired_rows": unpaired,
            "unpaired_fraction": unpaired / len(rows), "blocks": blocks,
            "transforms_new": transforms, "transforms_old": blocks,
            "transform_ratio_new_over_old": transforms / blocks}


def load_real(folder: str, n: int = 5000) -> tuple[np.ndarray, list[str]]:
    import wfdb

    stems = sorted(f[:-4] for f in os.listdir(folder) if f.endswith(".hea"))
    out = np.zeros((len(stems), 12, n), dtype=np.float32)
    for i, stem in enumerate(stems):
        sig = wfdb.rdrecord(os.path.join(folder, stem)).p_signal.T  # (12, samples), mV
        m = min(n, sig.shape[1])
        out[i, :, :m] = sig[:12, :m]  # crop, or zero-pad the end
    return out, stems


# --------------------------------------------------------------------------- driver
def _run_worker(tree: str, real: str | None, save: str | None, threads: int) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(tree, "python")
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--tree", tree,
           "--threads", str(threads)]
    if real:
        cmd += ["--real", real]
    if save:
        cmd += ["--save-outputs", save]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, cwd=tempfile.gettempdir(), capture_output=True,
                       text=True)
    if p.returncode:
        raise RuntimeError(f"worker for {tree} failed ({p.returncode}):\n{p.stderr}")
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    res = json.loads(line[len("RESULT "):])
    res["process_wall_s"] = time.perf_counter() - t0
    return res


def _interleaved(builds: dict, real: str | None, pairs: dict, threads: int) -> dict:
    """Both builds in persistent processes at once; per workload, `pairs[w]` pairs of
    single calls, old and new back to back in ABBA order, so that load from other
    processes (which changes over seconds) hits both sides of a pair alike."""
    extra = ["--threads", str(threads)] + (["--real", real] if real else [])
    procs = start_servers(builds, os.path.abspath(__file__), extra)
    try:
        return interleave(procs, wait_ready(procs), pairs)
    finally:
        stop_servers(procs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--old", default="/tmp/fft_old")
    ap.add_argument("--new", default="/tmp/fft_new")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--pairs", type=int, default=200,
                    help="interleaved phase: single-call pairs per workload (holter: "
                         "pairs // 10); 0 skips it")
    ap.add_argument("--threads", type=int, default=2,
                    help="torch threads per process (1: timed in thread CPU time)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tree", help=argparse.SUPPRESS)
    ap.add_argument("--real", help=argparse.SUPPRESS)
    ap.add_argument("--save-outputs", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return _worker(args)
    if args.serve:
        return _serve(args)

    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    t_start = time.time()
    builds = {"old": os.path.realpath(args.old), "new": os.path.realpath(args.new)}
    tmp = tempfile.mkdtemp(prefix="fft_iso_")
    import torch  # version only; nothing is timed in this process

    torch.manual_seed(0)
    clean = torch.randn(64, 12, 5000).numpy()
    torch.manual_seed(0)
    holter = torch.randn(2, 12, 1_800_000).numpy()
    pairing = {"clean_64x12x5000_float32": pairing_rule(clean, 16),
               "clean_64x12x5000_float64": pairing_rule(clean, 8),
               "holter_2x12x1800000_float32": pairing_rule(holter, 16)}
    del holter
    real_path, stems = None, []
    if os.path.isdir(args.data):
        real, stems = load_real(args.data)
        real_path = os.path.join(tmp, "real.npy")
        np.save(real_path, real)
        pairing["real_float32"] = pairing_rule(real, 16)
        pairing["real_float64"] = pairing_rule(real, 8)
        lead_peak = np.abs(real).max(axis=2)  # (records, 12)
        pairing["real_lead_peak_mV"] = {"median": float(np.median(lead_peak)),
                                        "min": float(lead_peak.min()),
                                        "max": float(lead_peak.max())}
    for k, v in pairing.items():
        print(f"pairing {k}: {v}", flush=True)

    rounds = []
    save_dirs = {b: os.path.join(tmp, b) for b in builds}
    for d in save_dirs.values():
        os.makedirs(d)
    for r in range(args.rounds):
        order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
        entry = {"round": r, "order": order}
        for b in order:
            entry[b] = _run_worker(builds[b], real_path, save_dirs[b] if r == 0 else None,
                                   args.threads)
        ratios = {w: entry["new"]["workloads"][w]["median_s"]
                  / entry["old"]["workloads"][w]["median_s"]
                  for w in entry["new"]["workloads"]}
        entry["ratio_new_over_old"] = ratios
        rounds.append(entry)
        print(f"round {r} ({'/'.join(order)}): "
              + "  ".join(f"{w} {entry['old']['workloads'][w]['median_s'] * 1e3:.2f}->"
                          f"{entry['new']['workloads'][w]['median_s'] * 1e3:.2f} ms "
                          f"x{q:.3f}" for w, q in ratios.items()), flush=True)

    interleaved = {}
    if args.pairs:
        t0 = time.time()
        interleaved = _interleaved(builds, real_path,
                                   {"default": args.pairs, "holter_fwd": max(2, args.pairs // 10)},
                                   args.threads)
        interleaved_wall = time.time() - t0

    # the two builds compute the same thing (the f24c921 change moves rounding only)
    agreement = {}
    for name in ("clean", "clean_grad", "real"):
        fo, fn = (os.path.join(save_dirs[b], name + ".npy") for b in ("old", "new"))
        if os.path.exists(fo) and os.path.exists(fn):
            a, b_ = np.load(fo), np.load(fn)
            agreement[name] = {"max_abs_diff": float(np.abs(a - b_).max()),
                               "max_abs": float(np.abs(a).max())}

    workloads = list(rounds[0]["ratio_new_over_old"])
    summary = {}
    for w in workloads:
        summary[w] = {
            "ratio_new_over_old": _spread([e["ratio_new_over_old"][w] for e in rounds]),
            "old_median_s": _spread([e["old"]["workloads"][w]["median_s"] for e in rounds]),
            "new_median_s": _spread([e["new"]["workloads"][w]["median_s"] for e in rounds]),
        }
    result = {
        "what": 'bandpass(x, 500.0, method="fft", backend="cpu"), paired process-isolated '
                "timing of two builds; ratio = new median / old median within a round",
        "machine": {"cpu_model": _cpu_model(), "logical_cpus": os.cpu_count(),
                    "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "torch_threads": args.threads,
                    "clock": "thread_time" if args.threads == 1 else "perf_counter",
                    "OMP_WAIT_POLICY": "PASSIVE"},
        "builds": {b: {"worktree": t, "commit": _commit(t)} for b, t in builds.items()},
        "rounds_n": args.rounds,
        "workloads": {
            "clean_fwd": "randn(64, 12, 5000) float32 seed 0; 8 warm-up, 30 timed",
            "clean_fwd_bwd": "same, requires_grad, forward + backward(fixed g); 8 + 30",
            "holter_fwd": "randn(2, 12, 1_800_000) float32 seed 0; 3 warm-up, 5 timed",
            "real_fwd": f"{len(stems)} CinC 2021 records (12, 5000) float32 mV; 8 + 30",
        },
        "real_records": stems,
        "pairing_rule": pairing,
        "output_agreement_old_vs_new": agreement,
        "summary": summary,
        "interleaved": {
            "what": "both builds in persistent processes, single calls old/new back to "
                    "back in ABBA order after the usual warm-up; per-pair ratio new/old",
            "wall_s": interleaved_wall if args.pairs else 0.0,
            "workloads": interleaved},
        "rounds": rounds,
        "total_wall_s": time.time() - t_start,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(f"\nwrote {args.out} ({result['total_wall_s']:.0f} s)")
    for w in workloads:
        s = summary[w]["ratio_new_over_old"]
        print(f"{w:14s} new/old median {s['median']:.3f}  p20-p80 {s['p20']:.3f}-{s['p80']:.3f}"
              f"  (old {summary[w]['old_median_s']['median'] * 1e3:.2f} ms, new "
              f"{summary[w]['new_median_s']['median'] * 1e3:.2f} ms)")
    for w, v in interleaved.items():
        q = v["per_pair_ratio"]
        print(f"interleaved {w:14s} {v['pairs']} pairs: per-pair new/old median {q['median']:.3f}"
              f"  p20-p80 {q['p20']:.3f}-{q['p80']:.3f}; ratio of medians "
              f"{v['ratio_of_medians']:.3f}; 95% CI of the median ratio "
              f"{v['median_ratio_ci95'][0]:.3f}-{v['median_ratio_ci95'][1]:.3f}")
    print("agreement:", agreement)


if __name__ == "__main__":
    main()
