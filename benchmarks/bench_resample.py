"""resample: fastecg's kernels against scipy.signal.resample_poly and plain PyTorch, same input.

Workload: (64, 12, 5000) float32 at 500 Hz resampled to 250, 100 and 360 Hz (the rates of
ST-MEM, HuBERT-ECG and MIT-BIH), 2 threads. Peers: ``scipy.signal.resample_poly`` called
once on the whole batch (the same filter: the reference for the error), and
``torch.nn.functional.interpolate(mode="linear")`` (what PyTorch code often uses instead:
no anti-aliasing filter, a different result, reported for speed only). The paired rounds
are timed on the wall clock and, separately, on the process's CPU time (the steadier ratio
on a loaded machine; see test_paired_forward_cpu_time).
"""

import functools
import time

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
def test_paired_forward_cpu_time(benchmark, fs_out):
    """The paired rounds on the process's CPU time (all threads' user + system time) instead
    of the wall clock. On the shared machine a preempted thread stalls a 2-thread call's wall
    time without burning CPU time (OMP_WAIT_POLICY=PASSIVE), so this ratio of work drifts
    less with the load. fastecg and interpolate both run on 2 threads, so their ratio of
    work is their ratio of time on an idle machine as far as both scale alike; SciPy runs on
    one thread, where work and time are the same."""
    labels = ["scipy_resample_poly", "torch_interpolate_linear", "fastecg_cpu"]
    seconds = {label: [] for label in labels}

    def one_round():
        first = len(seconds[labels[0]]) % len(labels)
        for label in labels[first:] + labels[:first]:
            start = time.process_time()
            CANDIDATES[label](X, fs_out)
            seconds[label].append(time.process_time() - start)

    for label in labels:
        CANDIDATES[label](X, fs_out)
    benchmark.group = f"resample forward 500->{fs_out} Hz (CPU time, paired)"
    benchmark.pedantic(one_round, rounds=40, iterations=1)
    if benchmark.disabled:
        return
    cpu_ms = {k: np.asarray(v) * 1e3 for k, v in seconds.items()}
    info = {**_info("cpu_time_paired", fs_out, "forward"),
            "cpu_time_median_ms": {k: round(float(np.median(v)), 3) for k, v in cpu_ms.items()}}
    for other in labels[:2]:
        ratio = cpu_ms[other] / cpu_ms["fastecg_cpu"]
        info[f"fastecg_cpu_over_{other}"] = {
            "median": round(float(np.median(ratio)), 3),
            "p20": round(float(np.percentile(ratio, 20)), 3),
            "p80": round(float(np.percentile(ratio, 80)), 3)}
    benchmark.extra_info.update(info)


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
