"""Polyphase resampling by a rational factor, equal to ``scipy.signal.resample_poly``.

One custom op, ``fastecg::resample_poly``, computes upfirdn's polyphase filter cropped as
resample_poly crops it, only at the kept outputs (see csrc/cpu/resample.cpp):

    y[..., m] = sum_i xe[..., i] * taps[m * down + offset - up * i],   0 <= m < n_out,

xe the signal extended with cval. It is linear in x, and its adjoint is the same op with the
taps reversed, up and down swapped and offset -> len(taps) - 1 - offset (output length
n_in), so the backward is one call of the op itself (twice differentiable, any backend).
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .._spec import (resample_factors, resample_half_len, resample_length, resample_taps,
                     resample_window_key)
from ._cache import design_op, tensor_cache
from ._dispatch import (check_backend_name, compiled_op, custom_op, kernel_for, register_kernel,
                        resolve_backend)
from ._validate import check_signal, kernel_dtype

__all__ = ["resample", "RESAMPLE_PADTYPES"]

# SciPy's padtypes that fastecg supports: the constant extension (upfirdn's), and the
# np.pad-like backgrounds that resample_poly subtracts before filtering and adds back after.
RESAMPLE_PADTYPES = ("constant", "mean", "median", "maximum", "minimum")


# ---- kernels ---------------------------------------------------------------------------
# Every kernel takes x (..., n_in), taps (L,) in x's dtype, and returns (..., n_out),
# contiguous: each row filtered on its own.

def _phase_layout(n_taps: int, up: int, down: int, offset: int) -> tuple[np.ndarray, int, int]:
    """Output m = c + up * q (c < up) reads input base + c_shift[c] + down * q + t for the
    taps of phase k_c; returns (index, base, width): index[c, t] = the tap that multiplies
    xe[base + down * q + t] in output c + up * q (-1: none)."""
    index = []
    starts = []
    for c in range(up):
        q = c * down + offset
        i_max = q // up
        k = q - up * i_max
        count = -(-(n_taps - k) // up) if k < n_taps else 0
        starts.append(i_max - count + 1)
        index.append([k + up * (count - 1 - r) for r in range(count)])
    base = min(s for s, idx in zip(starts, index) if idx) if any(index) else 0
    width = max((s - base + len(idx) for s, idx in zip(starts, index) if idx), default=1)
    table = np.full((up, width), -1, dtype=np.int64)
    for c, (s, idx) in enumerate(zip(starts, index)):
        table[c, s - base:s - base + len(idx)] = idx
    return table, base, width


@tensor_cache(maxsize=64)
def _phase_index(n_taps: int, up: int, down: int, offset: int, device: str):
    table, base, width = _phase_layout(n_taps, up, down, offset)
    index = torch.as_tensor(table, device=device)
    return index.clamp_min(0), index >= 0, base, width


@register_kernel("resample", "torch")
def resample_reference(x: Tensor, taps: Tensor, up: int, down: int, offset: int, n_out: int,
                       cval: float = 0.0) -> Tensor:
    """Pure-PyTorch reference (any device): one strided ``conv1d`` with one output channel
    per phase class (outputs m = c mod up read the same taps at inputs that advance by
    `down` per `up` outputs), interleaved back into time order."""
    lead, n_in = x.shape[:-1], x.shape[-1]
    n_rows = math.prod(lead)
    rows = x.reshape(n_rows, n_in)
    if n_rows == 0 or n_out == 0:
        return rows.new_zeros(*lead, n_out)
    index, valid, base, width = _phase_index(taps.shape[0], up, down, offset, str(rows.device))
    weight = torch.where(valid, taps[index], taps.new_zeros(())).unsqueeze(1)  # (up, 1, width)
    n_q = -(-n_out // up)
    span = (n_q - 1) * down + width
    start = min(max(base, 0), n_in)
    ext = F.pad(rows[:, start:], (max(-base, 0), max(base + span - n_in, 0)), value=cval)
    out = F.conv1d(ext[:, None, :span], weight, stride=down)  # (rows, up, n_q)
    out = out.transpose(1, 2).reshape(n_rows, n_q * up)[:, :n_out]
    return out.reshape(*lead, n_out).contiguous()


register_kernel("resample", "cpu", compiled_op("_resample_poly_kernel"))
register_kernel("resample", "cuda", compiled_op("_resample_poly_kernel"))


# ---- custom op -------------------------------------------------------------------------

@custom_op("fastecg::resample_poly")
def _resample_poly(x: Tensor, taps: Tensor, up: int, down: int, offset: int, n_out: int,
                   cval: float, backend: str) -> Tensor:
    return kernel_for("resample", x, backend)(x, taps, up, down, offset, n_out, cval)


@_resample_poly.register_fake
def _(x, taps, up, down, offset, n_out, cval, backend):
    torch._check(taps.dim() == 1, lambda: f"taps must be 1-D, got shape {tuple(taps.shape)}")
    return x.new_empty((*x.shape[:-1], n_out))


def _setup_context(ctx, inputs, output):
    x, taps, up, down, offset, _, _, backend = inputs
    ctx.save_for_backward(taps)
    ctx.args = (up, down, offset, x.shape[-1], backend)


def _backward(ctx, grad):
    (taps,) = ctx.saved_tensors
    up, down, offset, n_in, backend = ctx.args
    # The transpose of the polyphase filter: reversed taps, up and down swapped; the
    # extension by cval is a constant, so it drops out.
    dx = _resample_poly(grad, taps.flip(0), down, up, taps.shape[0] - 1 - offset, n_in, 0.0,
                        backend)
    return dx, None, None, None, None, None, None, None


_resample_poly.register_autograd(_backward, setup_context=_setup_context)


# ---- filter design ------------------------------------------------------------------------

def _design_fake(up, down, window, params, device, dtype):
    return torch.empty(2 * resample_half_len(up, down) + 1, dtype=dtype, device=device)


# NumPy's dtype for the design's arithmetic, from a table: reading it off a new tensor
# (`torch.empty((), dtype=dtype).numpy()`) fails inside torch.func.grad / vjp ("Cannot
# access data pointer"), where a first call designs the taps.
_NUMPY_DTYPES = {torch.float16: np.float16, torch.float32: np.float32,
                 torch.float64: np.float64}


# The design comes from SciPy, which torch.compile cannot trace (design_op: cached in eager
# mode, a custom op of the graph under compile).
@design_op("fastecg::resample_design", _design_fake)
def resample_design(up: int, down: int, window: str, params: list[float], device: str,
                    dtype: torch.dtype) -> Tensor:
    """resample_poly's taps (gain `up`) for reduced (up, down), in `dtype` on `device`.
    SciPy's arithmetic: the float64 design cast to the signal's dtype, then times up in
    that dtype."""
    h = resample_taps(up, down, (window, tuple(params)))
    h = h.astype(_NUMPY_DTYPES[dtype])
    h *= up
    return torch.from_numpy(h).to(device)


def _given_taps(window, up: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Taps given as an array (SciPy: a list or an array), times `up`, in `dtype`."""
    if isinstance(window, Tensor):
        if window.requires_grad and torch.is_grad_enabled():
            raise ValueError("resample: the window taps require grad, but gradients with "
                             "respect to them are not supported; pass window.detach()")
        h = window.to(device=device, dtype=torch.float64)
    else:
        h = torch.as_tensor(np.asarray(window, dtype=np.float64), device=device)
    if h.dim() != 1 or h.shape[0] == 0:
        raise ValueError(f"resample: window taps must be a non-empty 1-D array, got shape "
                         f"{tuple(h.shape)}")
    return (h * up).to(dtype)


def _is_taps(window) -> bool:
    return isinstance(window, (list, np.ndarray, Tensor))


# ---- public function ---------------------------------------------------------------------

def _background(x: Tensor, padtype: str) -> Tensor:
    if padtype == "mean":
        return x.mean(-1, keepdim=True)
    if padtype == "maximum":
        return x.amax(-1, keepdim=True)
    if padtype == "minimum":
        return x.amin(-1, keepdim=True)
    # np.median: the mean of the two middle values of an even count.
    ordered = x.sort(-1).values
    n = x.shape[-1]
    return (ordered[..., (n - 1) // 2:(n - 1) // 2 + 1] + ordered[..., n // 2:n // 2 + 1]) / 2


def check_resample_args(window, padtype: str, cval, backend: str) -> Optional[tuple]:
    """What can be checked without a signal; returns the window's design key (None for
    taps given as an array)."""
    key = None if _is_taps(window) else resample_window_key(window)
    if padtype not in RESAMPLE_PADTYPES:
        raise ValueError(f"resample: unknown padtype {padtype!r}; expected one of "
                         f"{RESAMPLE_PADTYPES}")
    if cval is not None:
        if padtype != "constant":
            raise ValueError(f"resample: cval has no effect when padtype is {padtype!r}")
        if isinstance(cval, bool) or not isinstance(cval, numbers.Real) or not math.isfinite(cval):
            raise ValueError(f"resample: cval must be a finite number, got {cval!r}")
    check_backend_name(backend)
    return key


def resample(x: Tensor, up: Optional[int] = None, down: Optional[int] = None, *,
             fs_in: Optional[float] = None, fs_out: Optional[float] = None,
             window: Union[str, tuple, float, list, np.ndarray, Tensor] = ("kaiser", 5.0),
             padtype: str = "constant", cval: Optional[float] = None,
             backend: str = "auto") -> Tensor:
    """Resample along the last axis by ``up / down`` with a polyphase FIR filter.

    Equal to ``scipy.signal.resample_poly(x, up, down, axis=-1, window=window,
    padtype=padtype, cval=cval)``: the same low-pass design (``firwin(2 * half_len + 1,
    1 / max(up, down), window=window)`` with ``half_len = 10 * max(up, down)`` of the
    factors reduced by their gcd, gain `up`), the same centring and the same edges.

    Parameters
    ----------
    x : Tensor, shape (..., n_samples)
        Signals (any unit); float16, bfloat16, float32 or float64, CPU or CUDA, any
        strides. Never modified.
    up, down : int, optional
        Upsampling and downsampling factors, positive integers (reduced by their gcd).
    fs_in, fs_out : float, optional
        Instead of `up` and `down`: the sampling rates in Hz. ``up / down`` is then
        ``fs_out / fs_in`` in lowest terms, which must be a ratio of integers of at most
        1000 each (500 -> 360 Hz: 18/25; the float 1000/3 -> 360 Hz: 27/25); otherwise
        ValueError: pass the factors explicitly.
    window : str, tuple, float or array_like, optional
        The low-pass design's window as ``scipy.signal.get_window`` takes it (default
        ``("kaiser", 5.0)``, SciPy's), or the filter's taps as a list, array or tensor
        (designed for the rate ``up`` times the input's; SciPy centres on them and
        multiplies them by `up`). Designed taps are cached per (up, down, window, device,
        dtype); taps given as a list or array are copied to the device on every call (pass
        a tensor on `x`'s device to avoid it).
    padtype : {"constant", "mean", "median", "maximum", "minimum"}, optional
        Values assumed beyond both ends: `cval` (default 0), or the signal's mean, median,
        maximum or minimum along the axis (subtracted before filtering and added back, as
        SciPy does). SciPy's upfirdn extension modes ("line", "symmetric", ...) are not
        supported.
    cval : float, optional
        The constant for ``padtype="constant"`` (default 0.0); finite.
    backend : {"auto", "cpu", "cuda", "torch"}, optional
        Kernel to run; ``"auto"`` picks the fastest one available for `x`'s device.

    Returns
    -------
    Tensor, shape (..., ceil(n_samples * up / down))
        Same dtype and device as `x`, contiguous; differentiable in `x`. With ``up ==
        down`` (after reduction) a copy of `x`, unfiltered, as in SciPy.

    Raises
    ------
    TypeError
        If `x` is not a floating-point tensor.
    ValueError
        If `up` or `down` is not a positive integer, both or neither of (up, down) and
        (fs_in, fs_out) are given, the rates' ratio is not a small-integer ratio, the
        window or padtype is unknown, `cval` is given with another padtype or is not
        finite, or `backend` is unknown; all before any work.
    RuntimeError
        If a forced `backend` is unavailable or cannot run on `x`'s device.

    Notes
    -----
    Polyphase: output m reads only the taps of its phase, ``ceil(len(taps) / up)`` of
    them, so no zero-stuffed sample is multiplied and no discarded output computed. The
    arithmetic is in `x`'s dtype, as SciPy's (it casts the taps to it); half types are
    computed in float32 and rounded back. Measured against SciPy in float64, relative to
    the signal's peak: at most 3.3e-7 in float32 over 10 ratios and lengths 1-5000, as
    far as SciPy's own float32 result (the taps' rounding to float32, which SciPy does
    too, dominates); ~1e-15 in float64. The gradient is exact: the transposed polyphase
    filter, one call of the same kernel.

    References
    ----------
    .. [1] P. P. Vaidyanathan, "Multirate Systems and Filter Banks", Prentice Hall, 1993.
    .. [2] P. Virtanen et al., "SciPy 1.0", Nature Methods 17, 2020.

    Examples
    --------
    >>> resample(torch.randn(8, 12, 5000), 1, 2).shape
    torch.Size([8, 12, 2500])
    >>> resample(torch.randn(8, 12, 5000), fs_in=500, fs_out=360).shape
    torch.Size([8, 12, 3600])
    """
    check_signal(x, "resample", min_samples=0)
    plan = _plan(x, up, down, fs_in, fs_out, window, padtype, cval, backend)
    up, down, taps = plan.up, plan.down, plan.taps
    if up == down:  # SciPy's shortcut (no filter is designed)
        return x.clone()
    n_in = x.shape[-1]
    if n_in == 0:
        return x[..., :0].clone()
    if taps is None:
        taps = _given_taps(window, up, x.device, plan.dtype)
    offset = (taps.shape[0] - 1) // 2  # the output is centred on the filter
    n_out = resample_length(n_in, up, down)
    xk = x if x.dtype == plan.dtype else x.to(plan.dtype)
    if padtype == "constant":
        out = _resample_poly(xk, taps, up, down, offset, n_out, plan.cval, backend)
    else:
        level = _background(xk, padtype)
        out = _resample_poly(xk - level, taps, up, down, offset, n_out, 0.0, backend) + level
    return out if out.dtype == x.dtype else out.to(x.dtype)


class _Plan(NamedTuple):
    up: int
    down: int
    dtype: torch.dtype
    cval: float
    taps: Optional[Tensor]  # the design's, None for taps given as an array


# Eager calls' checked arguments and designed taps, per (arguments, device, dtype): a
# training loop calls with the same ones every batch, and their checks and the design's
# lookup cost more than a small batch's filtering.
_PLANS: dict = {}
_PLANS_MAX = 256


def _plan(x: Tensor, up, down, fs_in, fs_out, window, padtype: str, cval, backend: str) -> _Plan:
    """Every check of the call's arguments (ValueError before any work) and the design."""
    compiling = torch.compiler.is_compiling()
    key = None
    if not compiling and not _is_taps(window):
        # Types too: True == 1 and 5 == 5.0 hash alike, but the checks tell them apart.
        key = (up, type(up), down, type(down), fs_in, type(fs_in), fs_out, type(fs_out),
               window, padtype, cval, type(cval), backend, x.device, x.dtype)
        try:
            plan = _PLANS.get(key)
        except TypeError:  # a window spec that does not hash: no caching
            plan, key = None, None
        if plan is not None:
            return plan
    up, down = resample_factors(up, down, fs_in, fs_out)
    design = check_resample_args(window, padtype, cval, backend)
    dtype = kernel_dtype(x)
    taps = None
    if up != down:
        if not compiling:
            resolve_backend("resample", x, backend)  # fail early, with the reason
            if design is not None:
                resample_taps(up, down, design)  # designs (cached) or names the bad window
        if design is not None:
            taps = resample_design(up, down, design[0], list(design[1]), str(x.device), dtype)
    plan = _Plan(up, down, dtype, float(cval or 0.0), taps)
    if key is not None and len(_PLANS) < _PLANS_MAX:
        _PLANS[key] = plan
    return plan
