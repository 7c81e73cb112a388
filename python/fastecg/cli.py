"""The ``fastecg`` command: ``fastecg info``, ``fastecg demo``."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable, Optional, Sequence


def _info(args: argparse.Namespace) -> int:
    import platform

    import torch

    import fastecg
    from fastecg.registry import (AUGMENTERS, BACKBONES, LOSSES, MODELS, OPTIMIZERS,
                                  PREPROCESSORS, SCHEDULERS, SSL)

    print(f"fastecg {fastecg.__version__}  torch {torch.__version__}  "
          f"python {platform.python_version()}  threads {torch.get_num_threads()}")
    print("backends:")
    for name, info in fastecg.backends().items():
        print(f"  {name:<7} {'yes' if info.available else 'no ':<4} {info.reason}")
    print("registries:")
    for reg in (MODELS, BACKBONES, OPTIMIZERS, SCHEDULERS, LOSSES, PREPROCESSORS, AUGMENTERS, SSL):
        print(f"  {reg.kind:<14} {', '.join(reg.list()) or '-'}")
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

    sos = fastecg.ops.butter_sos(4, 0.5, 45.0, args.fs)
    ref = ss.sosfiltfilt(sos, sig, axis=-1)
    y = fastecg.ops.bandpass(x, args.fs, 0.5, 45.0)
    err = np.abs(y.numpy() - ref).max() / np.abs(ref).max()
    print(f"bandpass 0.5-45 Hz (Butterworth 4, zero phase): max |fastecg - SciPy sosfiltfilt| "
          f"= {err:.1e} of the peak")
    t_scipy = _best_ms(lambda: ss.sosfiltfilt(sos, sig, axis=-1), args.repeats)
    t_fast = _best_ms(lambda: fastecg.ops.bandpass(x, args.fs, 0.5, 45.0), args.repeats)
    print(f"timing: SciPy sosfiltfilt {t_scipy:.2f} ms, fastecg {t_fast:.2f} ms -> "
          f"{t_scipy / t_fast:.1f}x ({torch.get_num_threads()} threads)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastecg", description="Compiled-kernel acceleration for ECG deep learning.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser("info", help="backends available in this install, registries")
    info.set_defaults(func=_info)
    demo = sub.add_parser("demo", help="preprocess the bundled synthetic ECG, compare with "
                          "the NumPy path (values and timing)")
    demo.add_argument("--records", type=int, default=64, help="records in the batch (64)")
    demo.add_argument("--fs", type=float, default=500.0, help="sampling rate, Hz (500)")
    demo.add_argument("--seconds", type=float, default=10.0, help="record length, s (10)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--repeats", type=int, default=10, help="timing repeats (10)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
