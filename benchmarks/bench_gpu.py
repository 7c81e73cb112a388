"""GPU benchmarks (skipped without a CUDA GPU): the CUDA and Triton kernels against the
torch approximations on the same GPU and against SciPy on the host's CPU cores, same
data, one run. Results: benchmarks/results/<op>_gpu.json (op = bandpass, baseline,
normalize), with the device's name.

Each GPU group also times ``device_copy``, a clone of the input: it reads and writes
the bytes an op on the signal must move at least, so time(copy) / time(op) is the
fraction of the copy bandwidth the op reaches. ``gb_per_s`` counts the input read once
and the output written once. Host peers: SciPy in one call, and with the rows split
over all host cores (threads for sosfiltfilt, which releases the GIL; processes for
the median filter, which does not).
"""

import functools
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest
import scipy.signal as ss
import torch

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)

import fastecg  # noqa: E402
# the shared workload definitions, not the CPU suites (which pin torch to 2 threads)
from fastecg.bench.workloads import BAND_HZ, FS, avg_pool_dual, band_sos, dual_median_rows  # noqa: E402
from fastecg.bench.workloads import fft_mask  # noqa: E402
from fastecg.bench.workloads import plain_torch_normalize as plain_torch  # noqa: E402
from fastecg.data import synthetic_ecg  # noqa: E402

CORES = os.cpu_count()
LOW, HIGH = BAND_HZ
SOS = band_sos(FS)
_dual_median_rows = dual_median_rows  # windows 101, 301 at 500 Hz
THREADS = ThreadPoolExecutor(CORES)
PROCESSES = ProcessPoolExecutor(CORES, mp_context=multiprocessing.get_context("fork"))
BATCH = synthetic_ecg(64, seed=0)                                   # (64, 12, 5000)
HOLTER = {"bandpass": np.tile(synthetic_ecg(8, seed=1), (1, 1, 360)),  # (8, 12, 1.8M)
          "baseline": np.tile(synthetic_ecg(2, seed=1), (1, 1, 360))}  # (2, 12, 1.8M)


def _data(op, workload):
    return BATCH if workload == "batch" else HOLTER[op]


@functools.cache
def _reference(op, workload):
    """SciPy's result on the host's cores, computed once per workload."""
    data = _data(op, workload)
    if op == "bandpass":
        return on_all_cores(THREADS, _sosfiltfilt_rows, data)
    if op == "baseline":
        return on_all_cores(PROCESSES, _dual_median_rows, data)
    return plain_torch(torch.from_numpy(data).double(), "z-score").numpy()


def on_all_cores(pool, fn, x):
    rows = x.reshape(-1, x.shape[-1])
    parts = np.array_split(rows, min(len(rows), CORES))
    return np.concatenate(list(pool.map(fn, parts))).reshape(x.shape)


def _sosfiltfilt_rows(rows):
    return ss.sosfiltfilt(SOS, rows, axis=-1)


def synchronized(fn):
    def run(x):
        out = fn(x)
        torch.cuda.synchronize()
        return out
    return run


def _record(benchmark, op, label, data, out, ref, group, **extra):
    err = np.abs(np.asarray(out, dtype=np.float64) - ref)
    benchmark.group = group
    benchmark.extra_info.update({
        "op": f"{op}_gpu", "label": label, "shape": list(data.shape), "dtype": "float32",
        "bytes": 2 * data.nbytes, "max_rel_error": float(err.max() / np.abs(ref).max()),
        "bitwise_equal": bool(np.array_equal(out, ref)), **extra})


def _time(benchmark, fn, arg, slow):
    if slow:
        benchmark.pedantic(fn, (arg,), rounds=3, iterations=1, warmup_rounds=1)
    else:
        benchmark.pedantic(fn, (arg,), rounds=30, iterations=1, warmup_rounds=3)


def _run(benchmark, op, label, fn, on_gpu, data, ref, group, scaled_by=1, **extra):
    """Check `fn`'s output against `ref` once, then time it; `scaled_by` > 1 runs a
    host peer on the first 1/scaled_by of the records and scales its time up."""
    if scaled_by > 1:
        data = data[: data.shape[0] // scaled_by]
        ref = ref[: data.shape[0]]
    arg = torch.from_numpy(data).cuda() if on_gpu else data
    fn = synchronized(fn) if on_gpu else fn
    out = fn(arg)
    out = out.cpu().numpy() if on_gpu else np.asarray(out)
    _record(benchmark, op, label, data, out, ref, group, device="cuda" if on_gpu else "host",
            scaled_by=scaled_by, **extra)
    _time(benchmark, fn, arg, slow=not on_gpu or data.shape[-1] > 100_000)


# ---- bandpass: sosfiltfilt 0.5-45 Hz order 4 ---------------------------------------------

def _bandpass(backend):
    return lambda x: fastecg.ops.bandpass(x, FS, LOW, HIGH, backend=backend)


BANDPASS = {
    "device_copy": (torch.clone, True),
    "fastecg_iir_cuda": (_bandpass("cuda"), True),
    "fastecg_iir_triton": (_bandpass("triton"), True),
    "fastecg_fft": (lambda x: fastecg.ops.bandpass(x, FS, LOW, HIGH, method="fft"), True),
    "torch_fft_mask": (fft_mask, True),
    "scipy_sosfiltfilt_1call": (_sosfiltfilt_rows, False),
    "scipy_sosfiltfilt_all_cores": (lambda x: on_all_cores(THREADS, _sosfiltfilt_rows, x),
                                    False),
}


@pytest.mark.parametrize("workload", ["batch", "holter"])
@pytest.mark.parametrize("label", list(BANDPASS))
def test_bandpass_gpu(benchmark, label, workload):
    fn, on_gpu = BANDPASS[label]
    scaled_by = 8 if workload == "holter" and label == "scipy_sosfiltfilt_1call" else 1
    _run(benchmark, "bandpass", label, fn, on_gpu, _data("bandpass", workload),
         _reference("bandpass", workload),
         f"bandpass gpu {workload}", scaled_by=scaled_by)


@pytest.mark.parametrize("label", ["fastecg_iir_cuda", "fastecg_iir_triton", "fastecg_fft",
                                   "torch_fft_mask"])
def test_bandpass_forward_backward_gpu(benchmark, label):
    fn = BANDPASS[label][0]
    x0 = torch.from_numpy(BATCH).cuda()
    grad = torch.randn_like(x0)

    def step(_):
        x = x0.clone().requires_grad_()
        fn(x).backward(grad)
        torch.cuda.synchronize()
        return x.grad

    benchmark.group = "bandpass gpu forward+backward batch"
    benchmark.extra_info.update({"op": "bandpass_gpu", "label": label, "device": "cuda",
                                 "mode": "forward+backward", "shape": list(BATCH.shape)})
    _time(benchmark, step, None, slow=False)


# ---- baseline: dual median 101/301 (exact) and dual mean -----------------------------------

def _baseline(backend, method="median"):
    return lambda x: fastecg.ops.remove_baseline(x, FS, method=method, backend=backend)


BASELINE = {
    "device_copy": (torch.clone, True),
    "fastecg_median_cuda": (_baseline("cuda"), True),
    "fastecg_median_triton": (_baseline("triton"), True),
    "fastecg_mean": (_baseline("auto", "mean"), True),
    "torch_avg_pool1d_dual": (avg_pool_dual, True),
    "scipy_1d_per_row_all_cores": (lambda x: on_all_cores(PROCESSES, _dual_median_rows, x),
                                   False),
}


@pytest.mark.parametrize("workload", ["batch", "holter"])
@pytest.mark.parametrize("label", list(BASELINE))
def test_baseline_gpu(benchmark, label, workload):
    fn, on_gpu = BASELINE[label]
    _run(benchmark, "baseline", label, fn, on_gpu, _data("baseline", workload),
         _reference("baseline", workload), f"baseline gpu {workload}")


# ---- normalize: per-lead z-score --------------------------------------------------------

NORMALIZE = {
    "device_copy": torch.clone,
    "fastecg_cuda": lambda x: fastecg.ops.normalize(x, per_channel=True, backend="cuda"),
    "fastecg_triton": lambda x: fastecg.ops.normalize(x, per_channel=True, backend="triton"),
    "plain_torch": lambda x: plain_torch(x, "z-score"),
}


@pytest.mark.parametrize("label", list(NORMALIZE))
def test_normalize_gpu(benchmark, label):
    _run(benchmark, "normalize", label, NORMALIZE[label], True, BATCH,
         _reference("normalize", "batch"), "normalize gpu batch")
