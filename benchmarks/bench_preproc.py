"""Preprocessing pipelines: the ``ecgfounder`` recipe end to end (50 Hz notch, Butterworth
band-pass 0.67-40 Hz, 0.4 s median baseline, z-score) on fastecg against the same chain
in NumPy/SciPy at its best, on the same input in one run; each step on its own; and the
pipeline's memory.

Workload: (64, 12, 5000) float32 at 500 Hz (10 s records), 2 threads. Run with
``OMP_WAIT_POLICY=PASSIVE`` (set before Python starts: OpenMP reads it when torch loads
it) so that idle OpenMP threads sleep instead of spinning on cores other processes share;
the value is recorded with the results::

    OMP_WAIT_POLICY=PASSIVE python -m pytest benchmarks/bench_preproc.py

Peers:

* ``scipy_chain_2proc``: SciPy at its best: the filters designed once, each step one call
  on the whole array (``sosfiltfilt`` along the last axis, the z-score as array
  reductions), the running median row by row (``scipy.ndimage.median_filter``'s O(log w)
  1-D path; its N-D call is ~100x slower) with the rows split over 2 processes;
* ``numpy_path``: :class:`fastecg.numpy_path.PreprocManager` of the same recipe (the
  same calls, the median in one process);
* ``fastecg``: :class:`fastecg.preprocessors.PreprocManager` of the recipe (CPU kernels).

The end-to-end and per-step ratios come from paired rounds (every candidate once per
round, the order rotated; see conftest.py), so load drifting over the run on the shared
cores does not skew them. Memory: the torch profiler's allocation timeline of one
pipeline call (what the pipeline allocates beyond its input), and tracemalloc's peak for
the NumPy path.
"""

import functools
import multiprocessing
import os
import tracemalloc
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
import scipy.ndimage as nd
import scipy.signal as ss
import torch

from fastecg import numpy_path
from fastecg.data import synthetic_ecg
from fastecg.preprocessors import PreprocManager
from fastecg.transforms.config import SignalInfo

torch.set_num_threads(2)
if os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
    warnings.warn("run the preprocessing benchmark with OMP_WAIT_POLICY=PASSIVE (see the "
                  "module docstring)")

FS = 500.0
X = synthetic_ecg(64, seed=0)  # (64, 12, 5000) float32
XT = torch.from_numpy(X)
PIPELINE = PreprocManager.from_recipe("ecgfounder", fs=FS)
NUMPY_PIPELINE = numpy_path.PreprocManager.from_recipe("ecgfounder", fs=FS)
PROCESSES = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork"))

# The chain as SciPy runs it best: designs once, one call per step.
NOTCH = ss.tf2sos(*ss.iirnotch(50.0, 30.0, fs=FS))
BAND = ss.butter(4, [0.67, 40.0], btype="bandpass", fs=FS, output="sos")
KERNEL = int(0.4 * FS) // 2 * 2 + 1  # 201: medfilt's odd kernel of 0.4 s


def _median_removed(rows):
    out = np.empty_like(rows)
    for i, row in enumerate(rows):
        out[i] = row - nd.median_filter(row, KERNEL, mode="constant")
    return out


def scipy_notch(x):
    return ss.sosfiltfilt(NOTCH, x, axis=-1)


def scipy_band(x):
    return ss.sosfiltfilt(BAND, x, axis=-1)


def scipy_median_2proc(x):
    rows = x.reshape(-1, x.shape[-1])
    half = rows.shape[0] // 2
    parts = PROCESSES.map(_median_removed, (rows[:half], rows[half:]))
    return np.concatenate(list(parts)).reshape(x.shape)


def scipy_zscore(x):
    mean = x.mean(axis=(-2, -1), keepdims=True)
    return (x - mean) / (x.std(axis=(-2, -1), keepdims=True) + 1e-8)


def scipy_chain_2proc(x):
    return scipy_zscore(scipy_median_2proc(scipy_band(scipy_notch(x)))).astype(x.dtype)


CANDIDATES = {
    "fastecg": lambda: PIPELINE(XT),
    "scipy_chain_2proc": lambda: scipy_chain_2proc(X),
    "numpy_path": lambda: NUMPY_PIPELINE(X),
}


@functools.lru_cache(maxsize=1)
def _reference():
    return NUMPY_PIPELINE(X.astype(np.float64))


def _rel_err(out):
    ref = _reference()
    out = np.asarray(out.numpy() if isinstance(out, torch.Tensor) else out, dtype=np.float64)
    return float(np.abs(out - ref).max() / np.abs(ref).max())


def _info(label, **extra):
    return {"op": "preproc", "label": label, "recipe": "ecgfounder", "shape": list(X.shape),
            "dtype": "float32", "device": "cpu", "threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), **extra}


@pytest.mark.parametrize("label", list(CANDIDATES))
def test_end_to_end(benchmark, label):
    fn = CANDIDATES[label]
    benchmark.group = "preproc ecgfounder end to end"
    benchmark.extra_info.update(_info(label, max_rel_error=_rel_err(fn())))
    benchmark.pedantic(fn, rounds=3 if label == "numpy_path" else 8, iterations=1,
                       warmup_rounds=1)


def test_paired_end_to_end(paired):
    """The issue's target: fastecg >= 10x the SciPy chain at its best, same rounds."""
    paired("preproc ecgfounder end to end paired", "preproc", CANDIDATES, rounds=15)


# Each step of the recipe on its own, against its SciPy call (fastecg's input is the
# previous step's output, as in the pipeline).
_STEPS = dict(zip(("notch", "bandpass", "median", "zscore"), list(PIPELINE.steps)[2:]))
_SCIPY_STEPS = {"notch": scipy_notch, "bandpass": scipy_band, "median": scipy_median_2proc,
                "zscore": scipy_zscore}


@pytest.mark.parametrize("step", list(_STEPS))
def test_paired_step(paired, step):
    info = SignalInfo(FS, 12, 5000, None)
    module = _STEPS[step]
    scipy_fn = _SCIPY_STEPS[step]
    x64 = X.astype(np.float64)  # SciPy's filters return float64, the next step's input
    paired(f"preproc ecgfounder step {step} paired", "preproc",
           {"fastecg": lambda: module.run(XT, info), "scipy": lambda: scipy_fn(x64)},
           rounds=10)


def _profiled_allocations(fn):
    """(sizes of the allocations, peak bytes live beyond what existed before) of one
    call, from the torch profiler's memory timeline."""
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import Action, MemoryProfile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True):
        pass  # the profiler's own first-use allocations stay out of the measured call
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True,
                 record_shapes=True) as prof:
        out = fn()
    live, peak, sizes = 0, 0, []
    for _, action, _, size in MemoryProfile(prof.profiler.kineto_results).timeline:
        if action == Action.CREATE:
            live += size
            sizes.append(size)
        elif action == Action.DESTROY:
            live -= size
        peak = max(peak, live)
    del out
    return sizes, peak


def test_memory(benchmark):
    """A pipeline of k steps allocates at most one output per step, and holds at most
    two at once (a step's input and its output); the caller's input is not copied."""
    output = X.nbytes
    sizes, peak = _profiled_allocations(lambda: PIPELINE(XT))
    big = [s for s in sizes if s >= output // 2]
    tracemalloc.start()
    NUMPY_PIPELINE(X)
    numpy_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    benchmark.group = "preproc ecgfounder memory"
    benchmark.extra_info.update(_info(
        "fastecg", steps=len(PIPELINE), output_bytes=output, allocations=len(sizes),
        output_sized_allocations=len(big), allocated_bytes=int(sum(sizes)),
        peak_bytes_beyond_input=int(peak), peak_in_outputs=round(peak / output, 3),
        numpy_path_peak_bytes=int(numpy_peak), numpy_path_peak_in_outputs=round(
            numpy_peak / output, 3)))
    assert len(big) <= len(PIPELINE)
    assert peak <= 2.05 * output
    benchmark.pedantic(CANDIDATES["fastecg"], rounds=1, iterations=1)
