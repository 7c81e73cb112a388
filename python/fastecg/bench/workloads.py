"""What ``fastecg bench`` and ``benchmarks/bench_*.py`` time: every op's workloads, the
candidates that compute each one, the reference their outputs are checked against and
the tolerance of that check.

A workload is one op and variant (``bandpass`` / ``iir``) on one input size. Its
candidates are fastecg on each backend that runs on the device, the strongest CPU peer
(SciPy or NumPy called the fast way: one vectorised call where the library is
multi-threaded or vectorised, rows split over the allowed threads where it is
single-threaded and releases the GIL, over processes where it keeps the GIL), and the
plain-PyTorch approximation ECG code uses today (a different algorithm for some ops:
its error is reported, not checked).

Ops add their workloads with :func:`register`; ``fastecg bench`` lists and runs whatever
is registered, so an op that lands later appears without editing the command::

    @register("augment")
    def _augment(size: Size, device: str, pools: Pools) -> list[Workload]:
        ...

Importing this module imports no torch (the command checks ``--ops`` against
:func:`names` before any work); the builders import it when they run.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import multiprocessing
import os
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Callable, Optional

import numpy as np

__all__ = ["Size", "Candidate", "Workload", "Pools", "SIZES", "register", "names",
           "build", "make_input", "sweep_sizes"]

FS = 500.0                    # Hz: PhysioNet/CinC 12-lead recordings
BAND_HZ = (0.5, 45.0)         # the band-pass every ECG pipeline here uses
BAND_ORDER = 4
FIR_TAPS = 101                # torch_ecg's default FIR length at 500 Hz
BASELINE_WINDOWS_S = (0.2, 0.6)
RESAMPLE_HZ = (250, 360)      # ST-MEM's rate and MIT-BIH's (an 18/25 polyphase ratio)


@dataclasses.dataclass(frozen=True)
class Size:
    """An input size: ``shape`` is (records, leads, samples) at ``fs`` Hz."""
    name: str
    shape: tuple[int, int, int]
    fs: float = FS
    seed: int = 0

    @property
    def seconds(self) -> float:
        return self.shape[-1] / self.fs


# The recorded pytest-benchmark workloads (benchmarks/results/*.json) use the same
# arrays: "ecg" is their "batch", "holter" their 1-hour "holter".
SIZES = {
    "small": Size("small", (4, 12, 1000)),
    "ecg": Size("ecg", (64, 12, 5000)),
    "holter": Size("holter", (2, 12, 500 * 3600), seed=1),
}
SWEEP_LENGTHS = (1250, 5000, 20_000, 80_000, 320_000)   # 2.5 s to 10.7 min at 500 Hz
SWEEP_RECORDS = 4


def sweep_sizes(quick: bool = False) -> list[Size]:
    """Signal lengths for the time-against-length plot, 4 records of 12 leads each."""
    lengths = SWEEP_LENGTHS[:3] if quick else SWEEP_LENGTHS
    return [Size(f"sweep_{n}", (SWEEP_RECORDS, 12, n), seed=2) for n in lengths]


def make_input(size: Size) -> np.ndarray:
    """Synthetic 12-lead ECG of ``size`` in float32 mV. Recordings over a minute repeat
    a 10 s stretch (synthesising an hour sample by sample takes longer than filtering it)."""
    return _make_input(size.shape, size.fs, size.seed)


@functools.lru_cache(maxsize=4)
def _make_input(shape: tuple, fs: float, seed: int) -> np.ndarray:
    from fastecg.data import synthetic_ecg

    records, leads, n = shape
    block = int(round(10 * fs))
    if n <= 6 * block:
        return synthetic_ecg(records, leads, fs=fs, duration_s=n / fs, seed=seed)
    reps = -(-n // block)
    base = synthetic_ecg(records, leads, fs=fs, duration_s=10.0, seed=seed)
    return np.ascontiguousarray(np.tile(base, (1, 1, reps))[..., :n])


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One way to compute a workload. ``fn`` takes the input as a NumPy array on the
    host (``host=True``) or as a tensor on the benchmark's device, and returns the
    output in the same kind. ``role``: ``"fastecg"``, ``"peer"`` (SciPy/NumPy at its
    best) or ``"approx"`` (the plain-PyTorch approximation). ``checked``: its output
    must agree with the reference within the workload's tolerance."""
    label: str
    fn: Callable[[Any], Any]
    role: str
    host: bool = False
    checked: bool = True


@dataclasses.dataclass
class Workload:
    """One op variant on one input. ``reference(x)`` is computed once from the float32
    input ``x`` (a NumPy array); a candidate's error is ``max |out - ref| / max |ref|``
    (the fraction of the signal's peak), and ``tolerance`` is the op's documented bound
    on it (0: bit-for-bit equal). ``bytes_moved``: the input read once and the output
    written once, for GB/s."""
    op: str
    variant: str
    size: Size
    candidates: list[Candidate]
    reference: Callable[[np.ndarray], np.ndarray]
    tolerance: float
    params: dict = dataclasses.field(default_factory=dict)
    out_samples: Optional[int] = None

    @property
    def name(self) -> str:
        return f"{self.op} {self.variant}"

    @property
    def bytes_moved(self) -> int:
        records, leads, n = self.size.shape
        return 4 * records * leads * (n + (self.out_samples or n))


def _exit_with_parent() -> None:
    """Worker initializer: on Linux, be sent SIGTERM when the parent dies, so a killed
    run leaves no idle workers behind holding its output pipe."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Pools:
    """Thread and process pools for the host peers, ``workers`` each, made on first use
    and shut down by :meth:`close`. Processes start from a fork server (forking this
    process, whose OpenMP and pool threads may hold locks, could deadlock a child); the
    peers' functions are this module's, the arrays travel pickled."""

    def __init__(self, workers: int):
        self.workers = max(1, int(workers))
        self._threads: Optional[Executor] = None
        self._processes: Optional[Executor] = None

    def threads(self) -> Executor:
        if self._threads is None:
            self._threads = ThreadPoolExecutor(self.workers)
        return self._threads

    def processes(self) -> Executor:
        if self._processes is None:
            self._processes = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("forkserver"),
                initializer=_exit_with_parent)
        return self._processes

    def close(self) -> None:
        for pool in (self._threads, self._processes):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._threads = self._processes = None

    def split_rows(self, fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                   processes: bool = False) -> np.ndarray:
        """``fn`` on the rows of ``x`` split into one part per worker (threads for code
        that releases the GIL, processes for code that keeps it)."""
        rows = x.reshape(-1, x.shape[-1])
        parts = min(self.workers, rows.shape[0])
        if parts <= 1:
            out = fn(rows)
        else:
            pool = self.processes() if processes else self.threads()
            out = np.concatenate(list(pool.map(fn, np.array_split(rows, parts))))
        return out.reshape(x.shape[:-1] + out.shape[-1:])


# ---- registry ---------------------------------------------------------------------------

Builder = Callable[[Size, str, Pools], "list[Workload]"]
_BUILDERS: dict[str, Builder] = {}


def register(op: str) -> Callable[[Builder], Builder]:
    """Decorator: ``builder(size, device, pools) -> list[Workload]`` gives ``op``'s
    workloads on ``size`` for ``device`` ("cpu" or "cuda"). A duplicate name is an error."""
    def add(builder: Builder) -> Builder:
        if op in _BUILDERS:
            raise ValueError(f"bench workloads for {op!r} are already registered")
        _BUILDERS[op] = builder
        return builder
    return add


def names() -> list[str]:
    """The ops that have workloads, in registration order."""
    return list(_BUILDERS)


def build(op: str, size: Size, device: str, pools: Pools) -> list[Workload]:
    """``op``'s workloads on ``size``; KeyError for an op with none."""
    return _BUILDERS[op](size, device, pools)


def fastecg_backends(kernel: str, device: str) -> list[str]:
    """fastecg's compiled backends that have ``kernel`` and run on ``device`` here, fastest
    first (the pure-PyTorch reference backend is a correctness tool, not a candidate)."""
    from fastecg.ops import _dispatch

    order = ("cuda", "triton") if device == "cuda" else ("cpu",)
    available = _dispatch.backends()
    return [b for b in order if _dispatch.has_kernel(kernel, b) and available[b].available]


def _to_numpy(y) -> np.ndarray:
    return y if isinstance(y, np.ndarray) else y.detach().cpu().numpy()


# ---- normalize ----------------------------------------------------------------------------

def numpy_zscore_rows(rows: np.ndarray) -> np.ndarray:
    """Per-lead z-score with NumPy (ddof=1, fastecg's convention)."""
    from fastecg import numpy_path

    return numpy_path.normalize(rows, "z-score", per_channel=True)


def plain_torch_normalize(x, method: str = "z-score"):
    """What a user writes in PyTorch (torch_ecg's normalize)."""
    if method == "min-max":
        lo, hi = x.amin(-1, keepdim=True), x.amax(-1, keepdim=True)
        return (x - lo) / (hi - lo + 1e-7)
    return (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + 1e-7)


@register("normalize")
def _normalize(size: Size, device: str, pools: Pools) -> list[Workload]:
    import fastecg

    cands = [Candidate(f"fastecg_{b}", functools.partial(
        fastecg.ops.normalize, method="z-score", per_channel=True, backend=b), "fastecg")
        for b in fastecg_backends("normalize", device)]
    # NumPy's reductions are single-threaded and release the GIL: rows over threads.
    cands.append(Candidate("numpy_path_threads", lambda x: pools.split_rows(
        numpy_zscore_rows, x), "peer", host=True))
    cands.append(Candidate("plain_torch", plain_torch_normalize, "approx"))
    return [Workload("normalize", "z-score", size, cands,
                     lambda x: numpy_zscore_rows(x.astype(np.float64)), tolerance=1e-5)]


# ---- bandpass -----------------------------------------------------------------------------

@functools.cache
def band_sos(fs: float = FS) -> np.ndarray:
    import scipy.signal as ss

    return ss.butter(BAND_ORDER, BAND_HZ, btype="bandpass", fs=fs, output="sos")


@functools.cache
def band_fir(fs: float = FS) -> np.ndarray:
    import scipy.signal as ss

    return ss.firwin(FIR_TAPS, BAND_HZ, pass_zero=False, fs=fs)


def sosfiltfilt_rows(rows: np.ndarray, fs: float = FS) -> np.ndarray:
    """SciPy's ``sosfiltfilt`` of the ECG band on ``rows`` (one call, last axis)."""
    import scipy.signal as ss

    return ss.sosfiltfilt(band_sos(fs), rows, axis=-1)


def filtfilt_fir_rows(rows: np.ndarray, fs: float = FS) -> np.ndarray:
    """SciPy's ``filtfilt`` with the 101-tap ECG band FIR on ``rows``."""
    import scipy.signal as ss

    return ss.filtfilt(band_fir(fs), 1.0, rows, axis=-1)


def fft_mask(x, fs: float = FS, band: tuple = BAND_HZ):
    """torch_ecg's ``bandpass_filter`` approach: zero the rFFT bins outside the band
    (no padding, a brick wall: not the Butterworth response)."""
    import torch

    spec = torch.fft.rfft(x)
    freqs = torch.fft.rfftfreq(x.shape[-1], d=1 / fs, device=x.device)
    spec = spec * ((freqs >= band[0]) & (freqs <= band[1]))
    return torch.fft.irfft(spec, n=x.shape[-1])


def _fft_reference(x: np.ndarray, fs: float) -> np.ndarray:
    import torch

    import fastecg

    return fastecg.ops.bandpass(torch.from_numpy(x), fs, *BAND_HZ, order=BAND_ORDER,
                                method="fft", backend="torch").numpy()


@register("bandpass")
def _bandpass(size: Size, device: str, pools: Pools) -> list[Workload]:
    import fastecg

    fs = size.fs

    def ours(method: str, backend: str):
        return functools.partial(fastecg.ops.bandpass, fs=fs, lowcut=BAND_HZ[0],
                                 highcut=BAND_HZ[1], order=BAND_ORDER, method=method,
                                 backend=backend)

    # sosfiltfilt and filtfilt run one row at a time and release the GIL: rows over threads.
    scipy_iir = Candidate("scipy_sosfiltfilt_threads", lambda x: pools.split_rows(
        functools.partial(sosfiltfilt_rows, fs=fs), x), "peer", host=True)
    approx = Candidate("torch_fft_mask", functools.partial(fft_mask, fs=fs), "approx",
                       checked=False)
    iir = [Candidate(f"fastecg_{b}", ours("iir", b), "fastecg")
           for b in fastecg_backends("sosfiltfilt", device)]
    # The fft method equals sosfiltfilt away from the edges only (reflect padding, not
    # odd padding and SciPy's initial conditions): SciPy's IIR is its peer in speed, and
    # its reference is the method's own float64 torch kernel.
    fft = [Candidate(f"fastecg_{b}", ours("fft", b), "fastecg")
           for b in (["cpu"] if device == "cpu" else ["auto"])]
    fir = [Candidate("fastecg_auto", ours("fir", "auto"), "fastecg")]
    return [
        Workload("bandpass", "iir", size, iir + [scipy_iir, approx],
                 lambda x: sosfiltfilt_rows(x.astype(np.float64), fs), tolerance=1e-5),
        Workload("bandpass", "fft", size,
                 fft + [dataclasses.replace(scipy_iir, checked=False), approx],
                 lambda x: _fft_reference(x.astype(np.float64), fs), tolerance=1e-5),
        Workload("bandpass", "fir", size, fir + [Candidate(
            "scipy_filtfilt_threads", lambda x: pools.split_rows(
                functools.partial(filtfilt_fir_rows, fs=fs), x), "peer", host=True)],
            lambda x: filtfilt_fir_rows(x.astype(np.float64), fs), tolerance=1e-5,
            params={"numtaps": FIR_TAPS}),
    ]


# ---- baseline -----------------------------------------------------------------------------

def median_windows(fs: float = FS) -> tuple[int, int]:
    """The dual median's odd windows in samples, ``2 * (int(window * fs) // 2) + 1``."""
    return tuple(2 * (int(w * fs) // 2) + 1 for w in BASELINE_WINDOWS_S)


def dual_median_rows(rows: np.ndarray, w1: int = 101, w2: int = 301) -> np.ndarray:
    """``x - median(median(x, w1), w2)`` on ``rows`` (n_rows, n_samples) with SciPy's
    O(log w) 1-D path, row by row (its N-D call on a (batch, leads, samples) array is
    ~50x slower)."""
    import scipy.ndimage as nd

    out = np.empty_like(rows)
    for i, r in enumerate(rows):
        out[i] = r - nd.median_filter(nd.median_filter(r, w1, mode="nearest"), w2,
                                      mode="nearest")
    return out


def dual_mean_rows(rows: np.ndarray, w1: int = 101, w2: int = 301) -> np.ndarray:
    """The same with moving averages: ``uniform_filter1d`` (mode "mirror", the reflect
    padding of ``remove_baseline(method="mean")``)."""
    import scipy.ndimage as nd

    return rows - nd.uniform_filter1d(nd.uniform_filter1d(rows, w1, axis=-1, mode="mirror"),
                                      w2, axis=-1, mode="mirror")


def avg_pool_dual(x, w1: int = 101, w2: int = 301):
    """The torch approximation: two ``avg_pool1d`` over reflect padding."""
    import torch.nn.functional as F

    y = x.reshape(-1, 1, x.shape[-1])
    for w in (w1, w2):
        y = F.avg_pool1d(F.pad(y, (w // 2, w // 2), mode="reflect"), w, stride=1)
    return x - y.view(x.shape)


@register("baseline")
def _baseline(size: Size, device: str, pools: Pools) -> list[Workload]:
    import fastecg

    fs = size.fs
    w1, w2 = median_windows(fs)

    def ours(method: str, backend: str):
        return functools.partial(fastecg.ops.remove_baseline, fs=fs,
                                 window1=BASELINE_WINDOWS_S[0], window2=BASELINE_WINDOWS_S[1],
                                 method=method, backend=backend)

    median_rows = functools.partial(dual_median_rows, w1=w1, w2=w2)
    mean_rows = functools.partial(dual_mean_rows, w1=w1, w2=w2)
    params = {"windows": [w1, w2]}
    # SciPy's median filter keeps the GIL: rows over processes. uniform_filter1d too, but
    # it is fast enough that pickling the rows costs more than it saves: one call.
    median = [Candidate(f"fastecg_{b}", ours("median", b), "fastecg")
              for b in fastecg_backends("median_filter", device)]
    median.append(Candidate("scipy_1d_per_row_processes", lambda x: pools.split_rows(
        median_rows, x, processes=True), "peer", host=True))
    mean = [Candidate(f"fastecg_{b}", ours("mean", b), "fastecg")
            for b in (fastecg_backends("moving_average", device) or ["auto"])]
    mean += [Candidate("scipy_uniform_filter1d", mean_rows, "peer", host=True),
             Candidate("torch_avg_pool1d_dual", functools.partial(avg_pool_dual, w1=w1, w2=w2),
                       "approx")]
    return _median_window_sweep(size, device, pools) + [
        # exact in the reference: median values are input values, so bit-for-bit equal
        Workload("baseline", "median", size, median,
                 lambda x: median_rows(x.reshape(-1, x.shape[-1])).reshape(x.shape),
                 tolerance=0.0, params=params),
        Workload("baseline", "mean", size, mean,
                 lambda x: mean_rows(x.astype(np.float64)), tolerance=1e-5, params=params),
    ]


SWEEP_WINDOWS = (51, 101, 201, 501, 1001, 2001)  # samples: 0.1 to 4 s at 500 Hz


def median_rows_1d(rows: np.ndarray, window: int) -> np.ndarray:
    """One median filter (mode "nearest") per row with SciPy's 1-D path."""
    import scipy.ndimage as nd

    return np.stack([nd.median_filter(r, window, mode="nearest") for r in rows])


def _median_window_sweep(size: Size, device: str, pools: Pools) -> list[Workload]:
    """One median stage against its window, on the 5000-sample size of the sweep only
    (the time-against-window plot): fastecg's O(log w) per sample against SciPy's."""
    import fastecg

    if size.name != f"sweep_{SWEEP_LENGTHS[1]}":
        return []
    out = []
    for w in SWEEP_WINDOWS:
        rows = functools.partial(median_rows_1d, window=w)
        cands = [Candidate(f"fastecg_{b}", functools.partial(
            fastecg.ops.median_filter1d, size=w, backend=b), "fastecg")
            for b in fastecg_backends("median_filter", device)]
        cands.append(Candidate("scipy_1d_per_row_processes", functools.partial(
            pools.split_rows, rows, processes=True), "peer", host=True))
        out.append(Workload("baseline", f"median_filter1d w={w}", size, cands,
                            lambda x, rows=rows: rows(x.reshape(-1, x.shape[-1])).reshape(
                                x.shape), tolerance=0.0, params={"window": w}))
    return out


# ---- resample -----------------------------------------------------------------------------

def resample_poly_rows(rows: np.ndarray, up: int, down: int) -> np.ndarray:
    """SciPy's ``resample_poly`` (Kaiser-windowed polyphase FIR) on ``rows``."""
    import scipy.signal as ss

    return ss.resample_poly(rows, up, down, axis=-1)


def torch_interpolate(x, n_out: int):
    """What PyTorch code often uses instead: linear interpolation, no anti-aliasing."""
    import torch.nn.functional as F

    return F.interpolate(x, size=n_out, mode="linear")


@register("resample")
def _resample(size: Size, device: str, pools: Pools) -> list[Workload]:
    import fastecg
    from fastecg._spec import resample_factors

    out = []
    for fs_out in RESAMPLE_HZ:
        up, down = resample_factors(None, None, size.fs, fs_out)
        n_out = -(-size.shape[-1] * up // down)
        rows = functools.partial(resample_poly_rows, up=up, down=down)
        cands = [Candidate(f"fastecg_{b}", functools.partial(
            fastecg.ops.resample, fs_in=size.fs, fs_out=fs_out, backend=b), "fastecg")
            for b in fastecg_backends("resample", device)]
        # upfirdn releases the GIL: rows over threads.
        cands += [Candidate("scipy_resample_poly_threads",
                            functools.partial(pools.split_rows, rows), "peer", host=True),
                  Candidate("torch_interpolate_linear",
                            functools.partial(torch_interpolate, n_out=n_out), "approx",
                            checked=False)]
        out.append(Workload("resample", f"{size.fs:g}->{fs_out} Hz", size, cands,
                            lambda x, rows=rows: rows(x.astype(np.float64)), tolerance=1e-5,
                            params={"fs_out": fs_out, "up": up, "down": down},
                            out_samples=n_out))
    return out


# ---- mae_mask -----------------------------------------------------------------------------

MAE_PATCH, MAE_RATIO, MAE_SEED = 50, 0.75, 0  # MAE-1D's temporal patches of 0.1 s at 500 Hz


def _mae_noise(shape: tuple, device: str):
    """The uniform noise every candidate's masking draws: one seeded generator per call,
    so that all of them keep the same patches."""
    import torch

    return torch.rand(shape, device=device, generator=_mae_generator(device))


def _mae_generator(device: str):
    import torch

    return torch.Generator(device).manual_seed(MAE_SEED)


def _mae_tokens(x):
    """Temporal tokens ``(B, T, n_leads * P)``: token t is every lead of time patch t."""
    b, c, n = x.shape
    t = n // MAE_PATCH
    tokens = x.reshape(b, c, t, MAE_PATCH).swapaxes(1, 2)
    return tokens.reshape(b, t, c * MAE_PATCH)


def torch_mae_masking(x):
    """The MAE reference code's random masking (He et al. 2022): patchify (a copy), argsort
    of uniform noise, gather of the kept tokens."""
    import torch

    tokens = _mae_tokens(x)
    b, t, d = tokens.shape
    n_keep = t - round(t * MAE_RATIO)
    ids_keep = _mae_noise((b, t), x.device.type).argsort(dim=-1)[:, :n_keep]
    return torch.gather(tokens, 1, ids_keep.unsqueeze(-1).expand(-1, -1, d))


MAE_STEP_SHAPE, MAE_DIM = (32, 12, 5000), 256  # the fused MAE step of issue #33


def mae_step_inputs(shape: tuple = MAE_STEP_SHAPE, dim: int = MAE_DIM, device: str = "cpu"):
    """One MAE-1D pretraining step's tensors: the signal ``x``, the patch embedding's
    ``weight (dim, n_leads * P)``, ``bias`` and ``pos (T, dim)`` (leaves that need
    gradients), the decoder's prediction ``pred (B, T, n_leads * P)`` (a leaf too) and
    ``grad_tokens (B, T_keep, dim)``, the gradient the encoder sends back to the kept
    tokens; seeded."""
    import torch

    b, c, n = shape
    t, d = n // MAE_PATCH, c * MAE_PATCH
    g = torch.Generator().manual_seed(MAE_SEED)
    new = lambda *s, scale=1.0: (torch.randn(*s, generator=g) * scale).to(device)  # noqa: E731
    return {"x": new(b, c, n), "weight": new(dim, d, scale=d ** -0.5).requires_grad_(),
            "bias": new(dim, scale=0.02).requires_grad_(),
            "pos": new(t, dim, scale=0.02).requires_grad_(),
            "pred": new(b, t, d).requires_grad_(),
            "grad_tokens": new(b, t - round(t * MAE_RATIO), dim)}


def _mae_step_leaves(inputs: dict):
    leaves = [inputs[k] for k in ("weight", "bias", "pos", "pred")]
    for leaf in leaves:
        leaf.grad = None  # as optimizer.zero_grad(set_to_none=True) leaves them
    return leaves


def fused_mae_step(inputs: dict, backend: str = "auto"):
    """Masking, embedding and loss of one step through fastecg's fused ops, forward and
    backward; returns the loss (gradients in the leaves' ``.grad``)."""
    import torch

    import fastecg

    _mae_step_leaves(inputs)
    x = inputs["x"]
    tokens, mask, _ = fastecg.ops.masked_patch_embed(
        x, inputs["weight"], inputs["bias"], inputs["pos"], MAE_PATCH, MAE_RATIO,
        generator=_mae_generator(x.device.type), backend=backend)
    loss = fastecg.ops.masked_reconstruction_loss(inputs["pred"], x, mask, MAE_PATCH,
                                                  backend=backend)
    torch.autograd.backward([tokens, loss], [inputs["grad_tokens"], None])
    return loss.detach()


def reference_mae_step(inputs: dict):
    """The same step as the MAE reference code does it: every patch embedded by a strided
    conv, argsort of the same noise, gather of the kept tokens, the loss on a patchified,
    normalised target over all patches, masked by multiplication."""
    import torch
    import torch.nn.functional as F

    _mae_step_leaves(inputs)
    x, weight = inputs["x"], inputs["weight"]
    b, c, n = x.shape
    t, dim = n // MAE_PATCH, weight.shape[0]
    tokens = F.conv1d(x, weight.view(dim, c, MAE_PATCH), inputs["bias"], stride=MAE_PATCH)
    tokens = tokens.transpose(1, 2) + inputs["pos"]
    ids_shuffle = _mae_noise((b, t), x.device.type).argsort(dim=-1)
    ids_restore = ids_shuffle.argsort(dim=-1)
    n_keep = t - round(t * MAE_RATIO)
    kept = tokens.gather(1, ids_shuffle[:, :n_keep, None].expand(-1, -1, dim))
    mask = torch.ones(b, t, device=x.device)
    mask[:, :n_keep] = 0
    mask = mask.gather(1, ids_restore)
    target = _mae_tokens(x)
    target = (target - target.mean(-1, keepdim=True)) / (
        target.var(-1, keepdim=True) + 1e-6).sqrt()
    loss = ((inputs["pred"] - target).square().mean(-1) * mask).sum() / mask.sum()
    torch.autograd.backward([kept, loss], [inputs["grad_tokens"], None])
    return loss.detach()


def _numpy_mae_masking(x: np.ndarray, noise: np.ndarray) -> np.ndarray:
    tokens = _mae_tokens(x)
    t = tokens.shape[1]
    ids_keep = np.argsort(noise, axis=-1, kind="stable")[:, :t - round(t * MAE_RATIO)]
    return np.take_along_axis(tokens, ids_keep[..., None], axis=1)


@register("mae_mask")
def _mae_mask(size: Size, device: str, pools: Pools) -> list[Workload]:
    import fastecg

    records, leads, n = size.shape
    t = n // MAE_PATCH
    if n % MAE_PATCH:
        return []

    def ours(x):
        gen = _mae_generator(x.device.type)
        return fastecg.ops.patch_mask(x, MAE_PATCH, MAE_RATIO, generator=gen).kept

    # NumPy is handed the noise drawn once (it has no stream equal to torch's): it is
    # timed without drawing it, in its favour.
    noise = _mae_noise((records, t), "cpu").numpy()
    n_keep = t - round(t * MAE_RATIO)
    cands = [Candidate("fastecg_auto", ours, "fastecg"),
             Candidate("numpy_argsort_take", functools.partial(_numpy_mae_masking, noise=noise),
                       "peer", host=True, checked=device == "cpu"),
             Candidate("torch_mae_reference", torch_mae_masking, "approx")]

    def reference(x):
        import torch

        return torch_mae_masking(torch.from_numpy(x).to(device)).double().cpu().numpy()

    return [Workload("mae_mask", f"temporal P={MAE_PATCH} r={MAE_RATIO}", size, cands,
                     reference, tolerance=0.0, params={"patch_size": MAE_PATCH,
                                                       "mask_ratio": MAE_RATIO},
                     out_samples=n_keep * MAE_PATCH)]


# ---- augment -------------------------------------------------------------------------------

# torch_ecg's documented seven-step AugmenterManager config (all defaults), the workload of
# issue #31's comparison; fs is set by the caller.
AUGMENT_CONFIG = dict(random=False, baseline_wander={}, label_smooth={}, mixup={},
                      random_flip={}, random_masking={}, random_renormalize={},
                      stretch_compress={})
AUGMENT_CLASSES, AUGMENT_SEED = 26, 1234

_WANDER_AMPL = ((0.01, 0.01, 0.02, 0.03), (0.01, 0.02, 0.04, 0.05), (0.1, 0.06, 0.04, 0.02),
                (0.02, 0.04, 0.07, 0.1), (0.05, 0.1, 0.16, 0.25), (0.1, 0.15, 0.25, 0.3),
                (0.25, 0.25, 0.3, 0.35))
_WANDER_NOISE = (0.001, 0.003, 0.01)
_WANDER_HZ = (0.33, 0.1, 0.05, 0.01)


@functools.lru_cache(maxsize=8)
def _wander_basis(n: int, fs: float, device: str):
    import torch

    arg = 2 * math.pi * torch.tensor(_WANDER_HZ, device=device)[:, None] * (
        torch.arange(n, device=device) / fs)
    return torch.cat([torch.sin(arg), torch.cos(arg)])


def careful_torch(x, y, g, fs: float):
    """torch_ecg's seven augmentation steps in batched torch written with care (what a
    careful user writes): parameters drawn for the whole batch at once, sinusoids as one
    matmul, masks by broadcasting, one gather for the stretch, ``var_mean`` for the
    renormalisation. ``x (B, n_leads, n)``, ``y (B, n_classes)``, ``g`` a generator on
    their device; returns the augmented ``(x, y)``."""
    import torch

    b, n_leads, n = x.shape
    dev = x.device
    ampl_rows = torch.tensor(_WANDER_AMPL, device=dev)
    noise_std = torch.tensor(_WANDER_NOISE, device=dev)
    # baseline wander (p 0.5): four sinusoids per lead as one matmul, plus white noise
    sel = (torch.rand(b, generator=g, device=dev) < 0.5).float()
    ampl = (x.amax(-1) - x.amin(-1)) * sel[:, None]
    rows = ampl_rows[torch.randint(len(ampl_rows), (b, n_leads), generator=g, device=dev)]
    phase = 2 * math.pi * torch.rand(b, n_leads, 4, generator=g, device=dev)
    coef = torch.cat([rows * torch.cos(phase), rows * torch.sin(phase)], -1) * ampl[..., None]
    std = noise_std[torch.randint(3, (b, n_leads), generator=g, device=dev)] * ampl
    x = torch.addcmul(x + coef @ _wander_basis(n, float(fs), str(dev)),
                      torch.randn(x.shape, generator=g, device=dev), std[..., None])
    # label smooth (p 0.5)
    smooth = torch.rand(b, 1, generator=g, device=dev) < 0.5
    y = torch.where(smooth, 0.9 * y + 0.1 / y.shape[-1], y)
    # mixup (p 0.5, lam ~ Beta(0.5, 0.5) per sample)
    gam = torch._standard_gamma(torch.full((2, b), 0.5, device=dev), generator=g)
    lam = torch.where(torch.rand(b, generator=g, device=dev) < 0.5, gam[0] / gam.sum(0), 1.0)
    perm = torch.randperm(b, generator=g, device=dev)
    x = lam[:, None, None] * x + (1 - lam[:, None, None]) * x[perm]
    y = lam[:, None] * y + (1 - lam[:, None]) * y[perm]
    # random flip (0.4 per sample, 0.2 per lead)
    flip = (torch.rand(b, 1, generator=g, device=dev) < 0.4) & (
        torch.rand(b, n_leads, generator=g, device=dev) < 0.2)
    # random masking (0.3 per sample; ~8 masks of 40-90 samples), by broadcasting
    k = 16
    centre = torch.randint(45, n - 45, (b, k, 1), generator=g, device=dev)
    radius = torch.randint(20, 46, (b, k, 1), generator=g, device=dev)
    on = (torch.rand(b, k, 1, generator=g, device=dev) < 0.5) & (
        torch.rand(b, 1, 1, generator=g, device=dev) < 0.3)
    t = torch.arange(n, device=dev)
    masked = ((t >= centre - radius) & (t < centre + radius) & on).any(1, keepdim=True)
    x = torch.where(masked, 0.0, x * (1 - 2 * flip.float())[..., None])
    # random renormalize (p 0.5)
    var, mu = torch.var_mean(x, dim=(-2, -1), keepdim=True, correction=0)
    new_mu = 0.025 + 0.0225 * torch.randn(b, 1, 1, generator=g, device=dev)
    new_sd = 0.2 + 0.036 * torch.randn(b, 1, 1, generator=g, device=dev)
    renorm = torch.rand(b, 1, 1, generator=g, device=dev) < 0.5
    gain = torch.where(renorm, new_sd * torch.rsqrt(var + 1e-12), 1.0)
    x = torch.addcmul(torch.where(renorm, new_mu - mu * gain, 0.0), x, gain)
    # stretch / compress (p 0.5, ratio ~ N(6%, 2.3%)): one gather with linear weights
    r = (0.06 + 0.0229 * torch.randn(b, generator=g, device=dev)).clamp(0, 0.12)
    sign = torch.where(torch.rand(b, generator=g, device=dev) < 0.5, -1.0, 1.0)
    new_len = torch.where(torch.rand(b, generator=g, device=dev) < 0.5,
                          ((1 + sign * r) * n).round(), float(n))
    half = ((new_len - n).abs() // 2)[:, None]
    m = torch.where(new_len[:, None] >= n, t + half, t - half)
    valid = (m >= 0) & (m < new_len[:, None])
    src = m * ((n - 1) / (new_len[:, None] - 1))
    i0 = src.floor().clamp(0, n - 1).long()
    frac = (src - i0)[:, None]
    i1 = (i0 + 1).clamp(max=n - 1)
    xa = x.gather(2, i0[:, None].expand(-1, n_leads, -1))
    xb = x.gather(2, i1[:, None].expand(-1, n_leads, -1))
    return torch.lerp(xa, xb, frac) * valid[:, None], y


def _augment_labels(records: int, device: str):
    import torch

    g = torch.Generator().manual_seed(AUGMENT_SEED)
    return (torch.rand(records, AUGMENT_CLASSES, generator=g) < 0.1).float().to(device)


@register("augment")
def _augment(size: Size, device: str, pools: Pools) -> list[Workload]:
    import torch

    from fastecg.augmenters import AugmenterManager

    records, leads, n = size.shape
    if n < 200:  # torch_ecg's masking needs room for its windows
        return []
    am = AugmenterManager.from_config(dict(AUGMENT_CONFIG, fs=size.fs))
    labels = _augment_labels(records, device)
    index = torch.arange(records, device=device)

    def ours(x, backend="auto"):
        return am(x, labels, seed=AUGMENT_SEED, epoch=0, indices=index, backend=backend)[0]

    def careful(x):
        g = torch.Generator(x.device).manual_seed(AUGMENT_SEED)
        return careful_torch(x, labels, g, size.fs)[0]

    def reference(x):  # the same draws on the torch backend (the fused pass's reference)
        return ours(torch.from_numpy(x).to(device), backend="torch").cpu().numpy()

    cands = [Candidate("fastecg_auto", ours, "fastecg"),
             Candidate("careful_batched_torch", careful, "approx", checked=False)]
    return [Workload("augment", "torch_ecg seven steps", size, cands, reference,
                     tolerance=1e-6, params={"steps": 7, "seed": AUGMENT_SEED})]


def default_workers() -> int:
    """The threads this process may use (its CPU affinity where the OS says)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
