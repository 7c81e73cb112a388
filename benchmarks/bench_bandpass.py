"""bandpass / sosfiltfilt: fastecg against SciPy (one call, and rows split over 2
threads: sosfiltfilt releases the GIL) and torch_ecg's FFT-mask approach, same input.

Workloads: (64, 12, 5000) float32 at 500 Hz, 0.5-45 Hz, order 4; and a 1-hour
Holter batch (2, 12, 500 * 3600) for linearity in length.
"""

import functools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.signal as ss
import torch

import fastecg
from fastecg.bench.workloads import BAND_HZ, FS, SIZES, band_fir, band_sos, fft_mask, make_input

torch.set_num_threads(2)
LOW, HIGH = BAND_HZ
SOS = band_sos(FS)
WORKLOADS = {"batch": make_input(SIZES["ecg"]), "holter": make_input(SIZES["holter"])}


@functools.cache
def reference(workload):
    # on first use: a module importing this one for its helpers (bench_gpu.py) pays nothing
    return ss.sosfiltfilt(SOS, WORKLOADS[workload], axis=-1)

POOL = ThreadPoolExecutor(2)


def scipy_one_call(x):
    return ss.sosfiltfilt(SOS, x, axis=-1)


def on_two_threads(filt, x):
    """`filt` on each half of the rows, one thread each (SciPy releases the GIL)."""
    rows = x.reshape(-1, x.shape[-1])
    half = rows.shape[0] // 2
    return np.concatenate(list(POOL.map(filt, (rows[:half], rows[half:])))).reshape(x.shape)


def scipy_two_threads(x):
    return on_two_threads(lambda r: ss.sosfiltfilt(SOS, r, axis=-1), x)


CANDIDATES = {
    "scipy_sosfiltfilt_1call": (scipy_one_call, "numpy"),
    "scipy_sosfiltfilt_2threads": (scipy_two_threads, "numpy"),
    "torch_fft_mask": (fft_mask, "torch"),
    "fastecg_iir_cpu": (lambda x: fastecg.ops.bandpass(x, FS, LOW, HIGH, backend="cpu"), "torch"),
    "fastecg_fft": (lambda x: fastecg.ops.bandpass(x, FS, LOW, HIGH, method="fft"), "torch"),
}


@pytest.mark.parametrize("workload", list(WORKLOADS))
@pytest.mark.parametrize("label", list(CANDIDATES))
def test_bandpass(benchmark, label, workload):
    fn, kind = CANDIDATES[label]
    data = WORKLOADS[workload]
    arg = data if kind == "numpy" else torch.from_numpy(data)
    out = np.asarray(fn(arg))
    ref = reference(workload)
    err = np.abs(out - ref) / np.abs(ref).max()
    interior = err[..., 5000:-5000] if data.shape[-1] > 20000 else err
    benchmark.group = f"bandpass {workload}"
    benchmark.extra_info.update({
        "op": "bandpass", "label": label, "shape": list(data.shape), "dtype": "float32",
        "device": "cpu", "max_rel_error": float(err.max()),
        "max_rel_error_interior": float(interior.max())})
    if workload == "holter":
        benchmark.pedantic(fn, (arg,), rounds=3, iterations=1)
    else:
        benchmark(fn, arg)


def test_paired_batch(paired):
    """Every candidate once per round, so that each round's ratios share the machine's load."""
    data = WORKLOADS["batch"]
    args = {"numpy": data, "torch": torch.from_numpy(data)}
    paired("bandpass batch paired", "bandpass",
           {label: functools.partial(fn, args[kind]) for label, (fn, kind) in CANDIDATES.items()},
           rounds=30)


BACKWARD = {"torch_fft_mask_autograd": fft_mask,
            "fastecg_iir_cpu": CANDIDATES["fastecg_iir_cpu"][0],
            "fastecg_fft": CANDIDATES["fastecg_fft"][0]}


@pytest.mark.parametrize("label", list(BACKWARD))
def test_forward_backward(benchmark, label):
    x0 = torch.from_numpy(WORKLOADS["batch"])
    grad = torch.randn(x0.shape)
    fn = BACKWARD[label]
    benchmark.group = "bandpass forward+backward batch"
    benchmark.extra_info.update({"op": "bandpass", "label": label, "mode": "forward+backward",
                                 "shape": list(x0.shape), "dtype": "float32"})

    def step():
        x = x0.clone().requires_grad_()
        fn(x).backward(grad)
        return x.grad

    benchmark(step)


# FIR method: torch_ecg's default 101 taps at 500 Hz, against SciPy's filtfilt (the same
# taps, one call on the whole array, and rows split over 2 threads).
TAPS = band_fir(FS)


@functools.cache
def fir_reference():
    return ss.filtfilt(TAPS, 1.0, WORKLOADS["batch"], axis=-1)


def scipy_fir_two_threads(x):
    return on_two_threads(lambda r: ss.filtfilt(TAPS, 1.0, r, axis=-1), x)


FIR = {
    "scipy_filtfilt_1call": (lambda x: ss.filtfilt(TAPS, 1.0, x, axis=-1), "numpy"),
    "scipy_filtfilt_2threads": (scipy_fir_two_threads, "numpy"),
    "fastecg_fir": (lambda x: fastecg.ops.bandpass(x, FS, LOW, HIGH, method="fir",
                                                   numtaps=101), "torch"),
}


@pytest.mark.parametrize("label", list(FIR))
def test_fir(benchmark, label):
    fn, kind = FIR[label]
    data = WORKLOADS["batch"]
    arg = data if kind == "numpy" else torch.from_numpy(data)
    fir_ref = fir_reference()
    err = np.abs(np.asarray(fn(arg)) - fir_ref) / np.abs(fir_ref).max()
    benchmark.group = "bandpass fir batch"
    benchmark.extra_info.update({"op": "bandpass", "label": label, "method": "fir",
                                 "numtaps": 101, "shape": list(data.shape),
                                 "dtype": "float32", "max_rel_error": float(err.max())})
    benchmark(fn, arg)
