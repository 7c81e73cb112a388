"""The ``fastecg`` command: ``fastecg info``, ``fastecg demo``, ``fastecg preprocess``,
``fastecg --version``.

Every bad argument ends in an argparse message and exit status 2, never a traceback:
each option's range is checked by its ``type`` function, the options' combinations
before any work starts, and a ``ValueError`` or ``TypeError`` that still comes out of
the library is reported the same way. An ``OSError`` of the work itself (a full disk) is
one line on stderr and exit status 1. An output folder that a failed run created is
removed again, unless it holds work a rerun resumes from.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from typing import Callable, Optional, Sequence

# What the demo runs; its argument ranges follow from these.
_N_LEADS = 12                      # synthetic_ecg's default
_BAND_HZ = (0.5, 45.0)
_BAND_ORDER = 4
# sosfiltfilt's default padding of that band-pass (order sections, none first-order):
# the record must be longer than it.
_BAND_PADLEN = 3 * (2 * _BAND_ORDER + 1)
_MAX_FS = 100_000.0                # Hz; also bounds the 0.6 s median window (60,001 samples)
_MAX_VALUES = 2 ** 26              # records x leads x samples: a quick demo, not a benchmark
_MAX_REPEATS = 1000
_MAX_SEED = 2 ** 32 - 1


def _info(args: argparse.Namespace) -> int:
    import platform

    import torch

    import fastecg
    from fastecg import registry

    print(f"fastecg {fastecg.__version__}  torch {torch.__version__}  "
          f"python {platform.python_version()}  threads {torch.get_num_threads()}")
    print("backends:")
    for name, info in fastecg.backends().items():
        print(f"  {name:<7} {'yes' if info.available else 'no ':<4} {info.reason}")
    print("registries:")
    # Every instance the module exports, so that a new registry cannot be left out.
    registries = [obj for obj in map(registry.__dict__.get, registry.__all__)
                  if isinstance(obj, registry.Registry)]
    width = max(len(reg.kind) for reg in registries)
    for reg in registries:
        print(f"  {reg.kind:<{width}} {', '.join(reg.list()) or '-'}")
    return 0


def _best_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def _demo(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    import fastecg
    from fastecg import numpy_path
    from fastecg.data import synthetic_ecg

    sig = synthetic_ecg(args.records, fs=args.fs, duration_s=args.seconds, seed=args.seed)
    x = torch.from_numpy(sig)
    print(f"input: synthetic 12-lead ECG {tuple(sig.shape)} float32, fs={args.fs:g} Hz "
          f"(seed {args.seed})")
    print(f"  before: mean {sig.mean():+.3f} mV, std {sig.std():.3f} mV, "
          f"range [{sig.min():.2f}, {sig.max():.2f}] mV")
    y = fastecg.ops.normalize(x, method="z-score")
    ref = numpy_path.normalize(sig, method="z-score")
    per_record = y.reshape(y.shape[0], -1)
    print(f"  after z-score: record means within {per_record.mean(1).abs().max():.1e} of 0, "
          f"record stds within {(per_record.std(1) - 1).abs().max():.1e} of 1")
    print(f"  max |fastecg - NumPy path| = {np.abs(y.numpy() - ref).max():.2e}")
    t_numpy = _best_ms(lambda: numpy_path.normalize(sig, method="z-score"), args.repeats)
    t_fast = _best_ms(lambda: fastecg.ops.normalize(x, method="z-score"), args.repeats)
    backend = fastecg.ops._dispatch.resolve_backend("normalize", x)
    print(f"timing (best of {args.repeats}, {torch.get_num_threads()} threads): NumPy path "
          f"{t_numpy:.2f} ms, fastecg [{backend}] {t_fast:.2f} ms -> {t_numpy / t_fast:.1f}x")
    _demo_bandpass(sig, x, args)
    _demo_baseline(sig, x, args)
    return 0


def _demo_baseline(sig, x, args) -> None:
    import numpy as np
    import torch

    import fastecg
    from fastecg import numpy_path

    y = fastecg.ops.remove_baseline(x, args.fs)
    ref = numpy_path.remove_baseline(sig, args.fs)
    same = np.array_equal(y.numpy(), ref)
    print(f"baseline removal (dual median 0.2 s / 0.6 s): bit-for-bit equal to SciPy's "
          f"1-D median_filter per row: {same}")
    t_scipy = _best_ms(lambda: numpy_path.remove_baseline(sig, args.fs), max(1, args.repeats // 3))
    t_fast = _best_ms(lambda: fastecg.ops.remove_baseline(x, args.fs), args.repeats)
    print(f"timing: SciPy per row {t_scipy:.2f} ms, fastecg {t_fast:.2f} ms -> "
          f"{t_scipy / t_fast:.1f}x ({torch.get_num_threads()} threads)")


def _demo_bandpass(sig, x, args) -> None:
    import numpy as np
    import scipy.signal as ss
    import torch

    import fastecg

    lowcut, highcut = _BAND_HZ
    sos = fastecg.ops.butter_sos(_BAND_ORDER, lowcut, highcut, args.fs)
    ref = ss.sosfiltfilt(sos, sig, axis=-1)
    y = fastecg.ops.bandpass(x, args.fs, lowcut, highcut, order=_BAND_ORDER)
    err = np.abs(y.numpy() - ref).max() / np.abs(ref).max()
    print(f"bandpass {lowcut:g}-{highcut:g} Hz (Butterworth {_BAND_ORDER}, zero phase): "
          f"max |fastecg - SciPy sosfiltfilt| = {err:.1e} of the peak")
    t_scipy = _best_ms(lambda: ss.sosfiltfilt(sos, sig, axis=-1), args.repeats)
    t_fast = _best_ms(lambda: fastecg.ops.bandpass(x, args.fs, lowcut, highcut,
                                                   order=_BAND_ORDER), args.repeats)
    print(f"timing: SciPy sosfiltfilt {t_scipy:.2f} ms, fastecg {t_fast:.2f} ms -> "
          f"{t_scipy / t_fast:.1f}x ({torch.get_num_threads()} threads)")


def _int_in(lo: int, hi: int) -> Callable[[str], int]:
    """argparse type: a decimal integer in ``[lo, hi]``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be an integer in [{lo}, {hi}], got {text}")
        return value
    return parse


def _float_in(lo: float, hi: float, lo_open: bool = False) -> Callable[[str], float]:
    """argparse type: a finite float in ``[lo, hi]`` (``(lo, hi]`` with `lo_open`)."""
    interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (math.isfinite(value) and (lo < value if lo_open else lo <= value) and value <= hi):
            raise argparse.ArgumentTypeError(f"must be a finite number in {interval}, got {text}")
        return value
    return parse


def _check_out(option: str, path: str) -> None:
    """ValueError unless `path` is a folder, or can be created as one: its nearest
    existing ancestor is a folder this process may write in. Checked before any work, so
    that a file in its place is a one-line error, not a traceback after the training."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{option} {path!r} exists and is not a folder")
    parent = os.path.abspath(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"{option} {path!r}: {parent!r} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path!r}: cannot write in {parent!r}")


def _remove_new_folder(path: str, keep: Callable[[str], bool]) -> None:
    """After a failed run: removes the folder `path` that the run created (it did not
    exist before), unless it holds a file for which `keep(name)` is true (work a rerun
    resumes from); otherwise only its empty folders go."""
    import shutil

    files = [name for _, _, names in os.walk(path) for name in names]
    if not any(keep(name) for name in files):
        shutil.rmtree(path, ignore_errors=True)
        return
    for folder, _, _ in sorted(os.walk(path), key=lambda t: -len(t[0])):
        try:
            os.rmdir(folder)  # only an empty one
        except OSError:
            pass


def _check_demo(args: argparse.Namespace) -> None:
    """The options' combinations, checked before the demo starts; raises ValueError.
    (``--fs`` alone keeps the band below Nyquist: its type rejects fs <= 2 * 45 Hz.)"""
    n_samples = int(round(args.fs * args.seconds))
    if n_samples <= _BAND_PADLEN:
        min_s = (_BAND_PADLEN + 1) / args.fs
        raise ValueError(f"--seconds {args.seconds:g} at --fs {args.fs:g} Hz gives {n_samples} "
                         f"samples; the band-pass filter's padding needs more than "
                         f"{_BAND_PADLEN} (--seconds >= {min_s:.3g} at this fs)")
    n_values = args.records * _N_LEADS * n_samples
    if n_values > _MAX_VALUES:
        raise ValueError(f"--records {args.records} x {_N_LEADS} leads x {n_samples} samples "
                         f"= {n_values} values, above the demo's limit of {_MAX_VALUES}")


# ---- preprocess ----------------------------------------------------------------------------
_MAX_SIGLEN = 2 ** 31 - 1          # samples per lead: the store's index is int64, numpy's slice too
_MAX_WORKERS = 256
_MAX_BATCH = 65_536
_MAX_SHARD_MB = 2.0 ** 20          # 1 TiB: above any file system's comfort, below int64 offsets


def _recipe_name(text: str) -> str:
    """argparse type: the name of a preprocessing recipe."""
    from fastecg.registry import did_you_mean
    from fastecg.transforms.recipes import RECIPES

    if text not in RECIPES:
        raise argparse.ArgumentTypeError(f"unknown recipe {text!r}{did_you_mean(text, RECIPES)}"
                                         f" (recipes: {', '.join(sorted(RECIPES))})")
    return text


def _lead_list(text: str) -> list:
    """argparse type: comma-separated lead names, each once."""
    names = [name.strip() for name in text.split(",")]
    if not text.strip() or any(not name or not name.isprintable() for name in names):
        raise argparse.ArgumentTypeError(f"expected comma-separated lead names, got {text!r}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"a lead is named twice in {text!r}")
    return names


def _check_preprocess(args: argparse.Namespace) -> None:
    """Paths and the pipeline, checked before any record is read; raises ValueError."""
    import json
    import os

    from fastecg.data import find_records

    if not os.path.isdir(args.src):
        raise ValueError(f"SRC {args.src!r} is not a folder")
    if not find_records(args.src):
        raise ValueError(f"SRC {args.src!r} holds no WFDB records (*.hea)")
    _check_out("DST", args.dst)
    if os.path.abspath(args.dst) == os.path.abspath(args.src):
        raise ValueError("DST must differ from SRC")
    if args.config is not None:
        try:
            with open(args.config, encoding="utf-8") as f:
                args.config_value = json.load(f)
        except OSError as err:
            raise ValueError(f"--config {args.config!r}: {err.strerror or err}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"--config {args.config!r} is not JSON: {err}") from None
        if not isinstance(args.config_value, (dict, list)):
            raise ValueError(f"--config {args.config!r}: expected a pipeline config (an "
                             "object or a list of steps)")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA GPU is available")


def _preprocess(args: argparse.Namespace) -> int:
    from fastecg.data import WFDBDataset, write_store
    from fastecg.preprocessors import PreprocManager

    if args.recipe is not None:
        pipeline = PreprocManager.from_recipe(args.recipe)
    elif args.config is not None:
        pipeline = PreprocManager.from_config(args.config_value)
    else:
        pipeline = None
    leads = args.leads
    if leads is None and args.recipe is not None:  # recipes take the standard 12, in order
        from fastecg.transforms.recipes import STANDARD_LEADS

        leads = list(STANDARD_LEADS)
    dataset = WFDBDataset(args.src, fs=args.fs, leads=leads, siglen=args.siglen)
    try:
        summary = write_store(dataset, args.dst, pipeline, batch_size=args.batch_size,
                              workers=args.workers, dtype=args.dtype, device=args.device,
                              overwrite=args.overwrite, progress=not args.quiet,
                              shard_bytes=max(1, int(args.shard_mb * 2 ** 20)))
    except OSError as err:  # an unwritable DST: the user's to fix, reported as such
        raise ValueError(f"cannot write the store in {args.dst!r}: {err}") from None
    if summary["resumed"] is True:
        print(f"{args.dst}: complete store with these settings found; nothing to do "
              "(--overwrite rewrites it)")
    else:
        if summary["resumed"]:
            print(f"resumed: {summary['resumed']} records kept from an interrupted run")
        rate = summary["written"] / max(summary["seconds"], 1e-9)
        print(f"wrote {summary['written']} records to {args.dst} in {summary['seconds']:.1f} s "
              f"({rate:.1f} records/s)")
    print(f"skipped {len(summary['skipped'])} records")
    for record, reason in summary["skipped"]:
        print(f"  {record}: {reason}")
    return 0


def _add_preprocess(sub) -> None:
    pre = sub.add_parser("preprocess", help="read a folder of WFDB records, preprocess them, "
                         "write a memory-mapped ECGStore")
    pre.add_argument("src", metavar="SRC", help="folder of WFDB records (searched recursively)")
    pre.add_argument("dst", metavar="DST", help="folder of the store (created)")
    pipeline = pre.add_mutually_exclusive_group()
    pipeline.add_argument("--recipe", type=_recipe_name, default=None,
                          help="a published model's preprocessing (st_mem, ecgfounder, ...); "
                          "records are read as the standard 12 leads in order unless --leads "
                          "says otherwise")
    pipeline.add_argument("--config", metavar="FILE", default=None,
                          help="PreprocManager config as JSON (PreprocManager.to_config())")
    pre.add_argument("--fs", type=_float_in(0.0, _MAX_FS, lo_open=True), default=None,
                     help="resample every record to this rate, Hz, before the pipeline")
    pre.add_argument("--siglen", type=_int_in(1, _MAX_SIGLEN), default=None,
                     help="crop or zero-pad every record to this many samples, before "
                     "the pipeline")
    pre.add_argument("--leads", type=_lead_list, default=None,
                     help="comma-separated lead names to keep, in this order")
    pre.add_argument("--workers", type=_int_in(0, _MAX_WORKERS), default=0,
                     help="DataLoader processes reading records (0: read in this one)")
    pre.add_argument("--batch-size", type=_int_in(1, _MAX_BATCH), default=32,
                     help="records per pipeline call (32)")
    pre.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                     help="stored sample type (float32)")
    pre.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                     help="where the pipeline runs (cpu)")
    pre.add_argument("--shard-mb", type=_float_in(0.0, _MAX_SHARD_MB, lo_open=True),
                     default=2048.0, help="size of each signal file, MiB (2048)")
    pre.add_argument("--overwrite", action="store_true",
                     help="start over (default: keep a complete store, resume an "
                     "interrupted one from its finished shards)")
    pre.add_argument("--quiet", action="store_true", help="no progress bar")
    pre.set_defaults(func=_preprocess, check=_check_preprocess, parser=pre,
                     output=("dst", _finished_shard))


def _finished_shard(name: str) -> bool:
    """A file of a finished shard, which a rerun of ``preprocess`` resumes from."""
    return name.startswith("shard-") and name.endswith(".npz")


def _any_file(name: str) -> bool:
    """Any file: a checkpoint or metrics a rerun with ``--resume`` goes on from."""
    return True


def _ssl_run(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from fastecg.ssl import cli as ssl_cli  # torch loads only when the command runs

        return getattr(ssl_cli, name)(args)
    return run


def _add_ssl_commands(sub) -> None:
    pre = sub.add_parser("pretrain", help="self-supervised pretraining (st_mem, mae_1d, ...) "
                         "on synthetic ECG or a store; resumes exactly, runs under torchrun")
    pre.add_argument("--method", default="st_mem", help="SSL method (st_mem)")
    pre.add_argument("--data", default="synthetic",
                     help="'synthetic' or a store folder written by `fastecg preprocess`")
    pre.add_argument("--records", type=_int_in(1, _MAX_VALUES), default=64,
                     help="synthetic records (64)")
    pre.add_argument("--preset", choices=("tiny", "small", "paper"), default="small",
                     help="model size: tiny, small (CPU-friendly), paper (published) (small)")
    pre.add_argument("--model-args", default="{}",
                     help="JSON object of constructor arguments, over the preset")
    pre.add_argument("--steps", type=_int_in(1, 10**9), default=20, help="optimizer steps (20)")
    pre.add_argument("--batch-size", type=_int_in(1, 1 << 20), default=8,
                     help="records per process per step (8)")
    pre.add_argument("--lr", type=_float_in(0.0, 10.0, lo_open=True), default=3e-4,
                     help="AdamW learning rate (3e-4)")
    pre.add_argument("--out", default="fastecg_pretrain",
                     help="folder: train/ (checkpoints, metrics.csv), pretrained/ (the "
                     "model); one holding an earlier run's checkpoints needs --resume or "
                     "--overwrite (fastecg_pretrain)")
    _add_trainer_options(pre)
    pre.set_defaults(func=_ssl_run("run_pretrain"), parser=pre, output=("out", _any_file),
                     check=lambda args: _check_out("--out", args.out))
    fine = sub.add_parser("finetune", help="a classifier on a pretrained SSL encoder")
    fine.add_argument("--checkpoint", default="fastecg_pretrain/pretrained",
                      help="save_pretrained folder (fastecg_pretrain/pretrained)")
    fine.add_argument("--data", default="synthetic",
                      help="'synthetic' (labelled) or a store folder with targets")
    fine.add_argument("--records", type=_int_in(1, _MAX_VALUES), default=64,
                      help="synthetic records (64)")
    fine.add_argument("--mode", choices=("linear_probe", "full"), default="linear_probe")
    fine.add_argument("--layer-decay", type=_float_in(0.0, 1.0, lo_open=True), default=None,
                      help="layer-wise lr decay (full mode)")
    fine.add_argument("--steps", type=_int_in(1, 10**9), default=20, help="(20)")
    fine.add_argument("--batch-size", type=_int_in(1, 1 << 20), default=8, help="(8)")
    fine.add_argument("--lr", type=_float_in(0.0, 10.0, lo_open=True), default=1e-3,
                      help="(1e-3)")
    fine.add_argument("--out", default="fastecg_finetune",
                      help="folder for train/ and finetuned/ (the classifier, "
                           "save_pretrained); one holding an earlier run's checkpoints "
                           "needs --resume or --overwrite (fastecg_finetune)")
    _add_trainer_options(fine)
    fine.set_defaults(func=_ssl_run("run_finetune"), parser=fine, check=_check_finetune,
                      output=("out", _any_file))


def _add_trainer_options(parser: argparse.ArgumentParser) -> None:
    """The Trainer's options, which pretrain and finetune share."""
    parser.add_argument("--amp", choices=("bf16", "fp16"), default=None,
                        help="mixed precision")
    parser.add_argument("--ckpt-every", type=_int_in(1, 10**9), default=None,
                        help="checkpoint period in steps (only at the end)")
    earlier = parser.add_mutually_exclusive_group()
    earlier.add_argument("--resume", action="store_true",
                         help="continue from the latest checkpoint in --out (without it, "
                         "an --out that holds checkpoints is refused)")
    earlier.add_argument("--overwrite", action="store_true",
                         help="start afresh in an --out that holds an earlier run: its "
                         "train/ and saved model are deleted first")
    parser.add_argument("--seed", type=_int_in(0, _MAX_SEED), default=0, help="(0)")
    parser.add_argument("--workers", type=_int_in(0, 256), default=0,
                        help="DataLoader workers")
    parser.add_argument("--threads", type=_int_in(1, 4096), default=None,
                        help="torch threads")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _check_finetune(args: argparse.Namespace) -> None:
    _check_out("--out", args.out)
    if args.layer_decay is not None and args.mode != "full":
        raise ValueError(f"--layer-decay scales the encoder's learning rates, which "
                         f"--mode {args.mode} freezes: use it with --mode full")


def _ssl_compare(args: argparse.Namespace) -> int:
    from fastecg.ssl.compare import run_ssl_compare  # torch loads only when the command runs

    return run_ssl_compare(args)


def _add_ssl_compare(sub) -> None:
    cmp = sub.add_parser("ssl-compare", help="pretrain every SSL method for the same budget, "
                         "score each against its random-init twin (linear probe, kNN, "
                         "fine-tuning), write results.csv, results.md and plots")
    cmp.add_argument("--quick", action="store_true",
                     help="small encoders, 400 synthetic records, 300 steps: minutes on a CPU")
    cmp.add_argument("--data", default="synthetic",
                     help="'synthetic' or a store folder with targets (`fastecg preprocess`)")
    cmp.add_argument("--methods", default=None,
                     help="comma-separated SSL methods (all registered ones)")
    cmp.add_argument("--steps", type=_int_in(1, 10**9), default=None,
                     help="pretraining steps per method (quick 300, else 1000)")
    cmp.add_argument("--records", type=_int_in(2, _MAX_VALUES), default=None,
                     help="records used (quick 400, else 2000)")
    cmp.add_argument("--batch-size", type=_int_in(1, 1 << 20), default=None,
                     help="pretraining batch (quick 32, else 64)")
    cmp.add_argument("--protocols", default=None,
                     help="comma-separated of linear_probe, knn, finetune (quick: "
                     "linear_probe,knn; else all)")
    cmp.add_argument("--seq-len", type=_int_in(50, 10**9), default=None,
                     help="samples per record, a multiple of 50 (synthetic: 1000)")
    cmp.add_argument("--out", default="ssl_compare", help="output folder (ssl_compare)")
    cmp.add_argument("--seed", type=_int_in(0, _MAX_SEED), default=0, help="(0)")
    cmp.add_argument("--threads", type=_int_in(1, 4096), default=None, help="torch threads")
    cmp.add_argument("--quiet", action="store_true", help="no progress bars")
    cmp.set_defaults(func=_ssl_compare, parser=cmp, output=("out", _any_file),
                     check=lambda args: _check_out("--out", args.out))


def build_parser() -> argparse.ArgumentParser:
    import fastecg  # the package alone: no torch

    parser = argparse.ArgumentParser(
        prog="fastecg", description="Compiled-kernel acceleration for ECG deep learning.")
    parser.add_argument("--version", action="version", version=f"fastecg {fastecg.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser("info", help="backends available in this install, registries")
    info.set_defaults(func=_info, parser=info)
    demo = sub.add_parser("demo", help="preprocess the bundled synthetic ECG, compare with "
                          "the NumPy path (values and timing)")
    demo.add_argument("--records", type=_int_in(1, _MAX_VALUES), default=64,
                      help="records in the batch (64)")
    demo.add_argument("--fs", type=_float_in(2 * _BAND_HZ[1], _MAX_FS, lo_open=True),
                      default=500.0,
                      help=f"sampling rate, Hz, above {2 * _BAND_HZ[1]:g} (500)")
    demo.add_argument("--seconds", type=_float_in(0.0, 3600.0, lo_open=True), default=10.0,
                      help=f"record length, s; more than {_BAND_PADLEN} samples (10)")
    demo.add_argument("--seed", type=_int_in(0, _MAX_SEED), default=0,
                      help=f"0 to {_MAX_SEED} (0)")
    demo.add_argument("--repeats", type=_int_in(1, _MAX_REPEATS), default=10,
                      help="timing repeats (10)")
    demo.set_defaults(func=_demo, check=_check_demo, parser=demo)
    _add_preprocess(sub)
    _add_ssl_commands(sub)
    _add_ssl_compare(sub)
    from fastecg.bench.command import add_bench_command  # numpy, no torch

    add_bench_command(sub, _int_in)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    command_parser = args.parser
    # The command's output folder, and what in it a failed run leaves for a rerun
    output, keep = getattr(args, "output", (None, None))
    new_output = output is not None and not os.path.exists(getattr(args, output))
    finished = False
    try:
        if getattr(args, "check", None):
            args.check(args)
        status = args.func(args)
        finished = True
        return status
    except (ValueError, TypeError) as err:  # a combination the checks above let through
        command_parser.error(str(err))
    except OSError as err:  # the arguments were good; the work failed (a full disk, ...)
        print(f"{command_parser.prog}: error: {err}", file=sys.stderr)
        return 1
    finally:
        if new_output and not finished and os.path.isdir(getattr(args, output)):
            _remove_new_folder(getattr(args, output), keep)


if __name__ == "__main__":
    sys.exit(main())
