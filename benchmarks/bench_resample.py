"""resample: fastecg's kernels against scipy.signal.resample_poly and plain PyTorch, same input.

Workload: (64, 12, 5000) float32 at 500 Hz resampled to 250, 100 and 360 Hz (the rates of
ST-MEM, HuBERT-ECG and MIT-BIH), 2 threads. Peers: ``scipy.signal.resample_poly`` called
once on the whole batch (the same filter: the reference for the error), and
``torch.nn.functional.interpolate(mode="linear")`` (what PyTorch code often uses instead:
no anti-aliasing filter, a different result, reported for speed only).
"""

import functools

import numpy as np
import pytest
import scipy.signal as ss
import torch

import fastecg
from fastecg._spec import resample_factors
from fastecg.data import synthetic_ecg

torch.set_num_threads(2)
FS = 500
RATES = [250, 100, 360]
X = torch.from_numpy(synthetic_ecg(64, seed=0))  # (64, 12, 5000) float32
SHAPE = tuple(X.shape)


@functools.cache
def reference(fs_out):
    """resample_poly on float64: what a float32 result is measured against."""
    up, down = resample_factors(None, None, FS, fs_out)
    return ss.resample_poly(X.double().numpy(), up, down, axis=-1)


def scipy_resample_poly(x, fs_out):
    up, down = resample_factors(None, None, FS, fs_out)
    return torch.from_numpy(ss.resample_poly(x.numpy(), up, down, axis=-1))


def torch_interpolate(x, fs_out):
    return torch.nn.functional.interpolate(x, size=-(-x.shape[-1] * fs_out // FS), mode="linear")


CANDIDATES = {
    "scipy_resample_poly": scipy_resample_poly,
    "torch_interpolate_linear": torch_interpolate,
    "fastecg_cpu": lambda x, fs_out: fastecg.ops.resample(x, fs_in=FS, fs_out=fs_out,
                                                          backend="cpu"),
    "fastecg_torch": lambda x, fs_out: fastecg.ops.resample(x, fs_in=FS, fs_out=fs_out,
                                                            backend="torch"),
}


def _info(label, fs_out, mode, out=None):
    info = {"op": "resample", "label": label, "fs_in": FS, "fs_out": fs_out, "mode": mode,
            "shape": list(SHAPE), "dtype": "float32", "device": "cpu"}
    if out is not None and label != "torch_interpolate_linear":
        ref = reference(fs_out)
        info["max_rel_error"] = float(np.abs(out.numpy() - ref).max() / np.abs(ref).max())
    return info


@pytest.mark.parametrize("fs_out", RATES)
@pytest.mark.parametrize("label", list(CANDIDATES))
def test_forward(benchmark, label, fs_out):
    benchmark.group = f"resample forward 500->{fs_out} Hz"
    fn = CANDIDATES[label]
    benchmark.extra_info.update(_info(label, fs_out, "forward", fn(X, fs_out)))
    benchmark(fn, X, fs_out)


@pytest.mark.parametrize("fs_out", RATES)
def test_paired_forward(paired, fs_out):
    """Every candidate once per round, so that each round's ratios share the machine's load."""
    paired(f"resample forward 500->{fs_out} Hz paired", "resample",
           {label: functools.partial(CANDIDATES[label], X, fs_out)
            for label in ("scipy_resample_poly", "torch_interpolate_linear", "fastecg_cpu")},
           rounds=40)


@pytest.mark.parametrize("fs_out", RATES)
@pytest.mark.parametrize("label", ["torch_interpolate_linear", "fastecg_cpu"])
def test_forward_backward(benchmark, label, fs_out):
    benchmark.group = f"resample forward+backward 500->{fs_out} Hz"
    benchmark.extra_info.update(_info(label, fs_out, "forward+backward"))
    fn = CANDIDATES[label]
    grad = torch.randn(fn(X, fs_out).shape)

    def step():
        x = X.clone().requires_grad_()
        fn(x, fs_out).backward(grad)
        return x.grad

    benchmark(step)
