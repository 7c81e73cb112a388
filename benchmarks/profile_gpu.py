"""Per-kernel GPU time of fastecg's CUDA ops (torch.profiler), to see where time goes.

Usage (on a GPU machine): python benchmarks/profile_gpu.py
"""

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

import fastecg
from fastecg.data import synthetic_ecg

BATCH = torch.from_numpy(synthetic_ecg(64, seed=0)).cuda()
HOLTER = torch.from_numpy(np.tile(synthetic_ecg(8, seed=1), (1, 1, 360))).cuda()
CASES = {
    "bandpass cuda batch": lambda: fastecg.ops.bandpass(BATCH, 500.0, backend="cuda"),
    "bandpass cuda holter": lambda: fastecg.ops.bandpass(HOLTER, 500.0, backend="cuda"),
    "bandpass triton holter": lambda: fastecg.ops.bandpass(HOLTER, 500.0, backend="triton"),
    "bandpass fft batch": lambda: fastecg.ops.bandpass(BATCH, 500.0, method="fft"),
    "bandpass cuda forward+backward batch": lambda: _forward_backward("iir"),
    "bandpass fft forward+backward batch": lambda: _forward_backward("fft"),
    "median cuda batch": lambda: fastecg.ops.remove_baseline(BATCH, 500.0, backend="cuda"),
    "median cuda holter": lambda: fastecg.ops.remove_baseline(HOLTER[:2], 500.0,
                                                              backend="cuda"),
    "mean batch": lambda: fastecg.ops.remove_baseline(BATCH, 500.0, method="mean"),
}
GRAD = torch.randn_like(BATCH)


def _forward_backward(method):
    x = BATCH.detach().requires_grad_()
    (fastecg.ops.bandpass(x, 500.0, method=method) * GRAD).sum().backward()


def _ms_per_call(fn, calls=20) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / calls


TIMES = {}

for name, fn in CASES.items():
    fn()
    torch.cuda.synchronize()
    TIMES[name] = _ms_per_call(fn)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
    print(f"\n== {name} (3 calls)")
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=10,
                                    max_name_column_width=60))

print("\n== ms per call, back to back (CUDA events, 20 calls)")
for name, ms in TIMES.items():
    print(f"  {name:40s} {ms:9.3f}")
