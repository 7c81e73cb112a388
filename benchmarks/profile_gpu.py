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
    "median cuda batch": lambda: fastecg.ops.remove_baseline(BATCH, 500.0, backend="cuda"),
}

for name, fn in CASES.items():
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
    print(f"\n== {name} (3 calls)")
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=10,
                                    max_name_column_width=60))
