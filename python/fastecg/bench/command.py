"""The ``fastecg bench`` subcommand: its arguments and what it runs. Parsing imports
NumPy but no torch, so a bad argument ends in an argparse message (exit 2) at once."""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
from typing import Callable, Sequence

from . import workloads

SIZE_NAMES = ("small", "ecg", "holter", "sweep")
DEVICES = ("cpu", "cuda")
MAX_THREADS = 4096


def _names_in(choices: Callable[[], Sequence[str]], what: str) -> Callable[[str], list[str]]:
    """argparse type: a comma-separated list of names from ``choices()``; repeats dropped."""
    def parse(text: str) -> list[str]:
        known = list(choices())
        names = [name.strip() for name in text.split(",")]
        bad = [name for name in names if name not in known]
        if bad:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(map(repr, bad))}; choose from {', '.join(known)}")
        return list(dict.fromkeys(names))
    return parse


def _one_of(choices: Sequence[str], what: str) -> Callable[[str], str]:
    """argparse type: one of ``choices``."""
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {text!r}; choose from {', '.join(choices)}")
        return text
    return parse


def _check(args: argparse.Namespace) -> None:
    """--out must be a folder or not exist yet, and writable; --device cuda needs a
    visible GPU. Creates --out (last, once the other options are known good), so that a
    folder the run could not write is reported before any benchmark runs."""
    # Python 3.11's argparse turns "--opt=--" into [] without calling the option's type
    for option, value in (("--ops", args.ops), ("--sizes", args.sizes),
                          ("--threads", args.threads), ("--device", args.device),
                          ("--out", args.out)):
        if isinstance(value, list) and not value:
            raise ValueError(f"{option}: expected a value, got '--'")
    out = pathlib.Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {args.out}: exists and is not a folder")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA GPU is visible to torch")
    try:
        out.mkdir(parents=True, exist_ok=True)
        # permissions alone do not tell (root, read-only mounts, /proc): write a file
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise ValueError(f"--out {args.out}: cannot write there ({err.strerror or err})") \
            from None


def run_command(args: argparse.Namespace) -> int:
    """Runs the benchmark; 1 if a checked candidate's output is outside its tolerance."""
    import os

    # kineto (the profiler behind the peak-memory figures) logs its stages to stderr
    # unless told before torch loads
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    from . import plots, runner

    cfg = runner.BenchConfig(ops=args.ops or workloads.names(), device=args.device,
                             sizes=args.sizes, threads=args.threads, quick=args.quick,
                             out=pathlib.Path(args.out))
    doc = runner.run(cfg, log=lambda line: print(line, flush=True))
    runner.print_table(doc)
    print(f"wrote {runner.write_json(doc, cfg.out)}")
    try:
        for path in plots.write_plots(doc, cfg.out):
            print(f"wrote {path}")
    except ImportError:
        print("plots skipped: matplotlib is not installed (pip install matplotlib)")
    failed = [f"{r['op']} {r['variant']} {r['size']} {r['label']}" for r in doc["results"]
              if r.get("checked") and r.get("within_tolerance") is False]
    if failed:
        print(f"outside tolerance: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def add_bench_command(sub, int_type: Callable[[int, int], Callable[[str], int]]) -> None:
    """Adds ``bench`` to the ``fastecg`` subparsers ``sub``; ``int_type(lo, hi)`` is the
    command line's integer-range argparse type."""
    ops = ",".join(workloads.names())
    bench = sub.add_parser(
        "bench", help="time every op against SciPy/NumPy and plain PyTorch on this machine: "
        "table, results.json, plots")
    bench.add_argument("--ops", type=_names_in(workloads.names, "op"), default=None,
                       help=f"comma-separated, from {ops} (all)")
    bench.add_argument("--device", type=_one_of(DEVICES, "device"), default="cpu",
                       help="cpu or cuda: where fastecg and the torch approximations run (cpu)")
    bench.add_argument("--sizes", type=_names_in(lambda: SIZE_NAMES, "size"), default=["ecg"],
                       help="comma-separated: small (4x12x1000), ecg (64x12x5000; 16 records "
                       "with --quick), holter (2x12x1.8M samples; 10 min with --quick), sweep "
                       "(4x12 x 1250 to 320000 samples; to 20000 with --quick) (ecg)")
    bench.add_argument("--threads", type=int_type(1, MAX_THREADS), default=None,
                       help="torch threads and SciPy workers (all this process may use)")
    bench.add_argument("--quick", action="store_true",
                       help="fewer rounds, smaller ecg and holter sizes, a shorter sweep")
    bench.add_argument("--out", default="fastecg_bench",
                       help="folder for results.json and the plots (./fastecg_bench)")
    bench.set_defaults(func=run_command, check=_check, parser=bench)
