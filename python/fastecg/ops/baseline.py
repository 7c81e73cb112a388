"""Baseline removal: exact running medians (``median_filter1d``) and ``remove_baseline``.

``remove_baseline(x, fs)`` is the classic ECG baseline-wander removal
``x - median(median(x, 0.2 s), 0.6 s)`` (``method="median"``, bit-for-bit
``scipy.ndimage.median_filter(..., mode="nearest")`` applied twice along time), or the
same with two centred moving averages (``method="mean"``, the dual ``avg_pool1d``
approximation, O(1) per sample).
"""

from __future__ import annotations

import numbers
from typing import Optional

import torch
from torch import Tensor

from .._rows import gather_selected
from ._dispatch import (check_backend_name, compiled_op, custom_op, kernel_for, register_kernel,
                        resolve_backend)
from .._spec import MAX_WINDOW, BoundaryMode, window_samples
from ._validate import check_signal, kernel_dtype

__all__ = ["median_filter1d", "remove_baseline", "window_samples", "MEDIAN_MODES"]

# Boundary modes by their scipy.ndimage names.
MEDIAN_MODES = {mode.name.lower(): mode for mode in BoundaryMode}
BASELINE_METHODS = ("median", "mean")
_ROWS_PER_REFERENCE_BLOCK_ELEMENTS = 1 << 24  # bounds each block of the reference's windows


# ---- index maps (SciPy's boundary rules, periodic for extensions longer than the signal) ---

def extended_index(q: Tensor, n: int, mode: int) -> Tensor:
    """Sample index read at (possibly out-of-range) positions ``q`` of a length-``n``
    signal under boundary ``mode``; ``-1`` stands for the constant ``cval``."""
    if mode == MEDIAN_MODES["nearest"]:
        return q.clamp(0, n - 1)
    if mode == MEDIAN_MODES["wrap"]:
        return q.remainder(n)
    if mode == MEDIAN_MODES["reflect"]:
        r = q.remainder(2 * n)
        return torch.where(r < n, r, 2 * n - 1 - r)
    if mode == MEDIAN_MODES["mirror"]:
        if n == 1:
            return torch.zeros_like(q)
        r = q.remainder(2 * n - 2)
        return torch.where(r < n, r, 2 * n - 2 - r)
    return torch.where((q >= 0) & (q < n), q, torch.full_like(q, -1))


# ---- kernels: rows (n_rows, n) -> (out, index) --------------------------------------------

@register_kernel("median_filter", "torch")
def median_filter_reference(rows: Tensor, sizes: list[int], origins: list[int], mode: int,
                            cval: float, subtract: bool, need_index: bool):
    """Pure-PyTorch chain of running medians (any device): gathers every window and
    sorts it, in blocks of rows and of outputs so that the ``(rows, outputs, w)`` window
    tensor stays bounded whatever the record's length.
    Slow (O(w log w) per sample); the reference for tests and the fallback."""
    n_rows, n = rows.shape
    arange = torch.arange(n, device=rows.device)
    index = arange.expand(n_rows, n)
    for w, origin in zip(sizes, origins):
        new_index = torch.empty_like(index)
        # Blocks of outputs as well as of rows: a long record's (n, w) windows at once
        # grew with it (a 7-minute record at 500 Hz took 2.9 GB).
        cols = max(1, min(n, _ROWS_PER_REFERENCE_BLOCK_ELEMENTS // w))
        block = max(1, _ROWS_PER_REFERENCE_BLOCK_ELEMENTS // (cols * w))
        for c in range(0, n, cols):
            q = (arange[c:c + cols, None] + (-(w // 2) - origin)
                 + torch.arange(w, device=rows.device))
            j = extended_index(q, n, mode)  # (cols, w) stage-input positions, -1 = cval
            for b in range(0, n_rows, block):
                idx_b = index[b:b + block]
                s = torch.where(j >= 0, idx_b[:, j.clamp(min=0)], -1)  # (B, cols, w) row indices
                vals = rows[b:b + block].gather(-1, s.clamp(min=0).flatten(1)).view(s.shape)
                vals = torch.where(s >= 0, vals, cval)
                nan = vals.isnan()
                order = torch.sort(vals.masked_fill(nan, float("inf")), dim=-1,
                                   stable=True).indices
                chosen = s.gather(-1, order[..., w // 2:w // 2 + 1])[..., 0]
                # a window holding NaN yields NaN: point at its first NaN
                first_nan = s.gather(-1, nan.int().argmax(-1, keepdim=True))[..., 0]
                new_index[b:b + block, c:c + cols] = torch.where(nan.any(-1), first_nan, chosen)
        index = new_index
    return gather_selected(rows, index, cval, subtract, need_index)


register_kernel("median_filter", "cpu", compiled_op("_median_filter_kernel"))
register_kernel("median_filter", "cuda", compiled_op("_median_filter_kernel"))
register_kernel("median_filter", "triton", "fastecg.triton_kernels.median:median_filter_forward")


@register_kernel("moving_average", "torch")
def moving_average_reference(rows: Tensor, sizes: list[int], subtract: bool) -> Tensor:
    """The torch approximation this matches: ``avg_pool1d`` over ``F.pad(.., "reflect")``
    per window (O(w) per sample; needs ``w // 2 < n``), of the rows less a level of their
    own (the first sample where finite): the sums' rounding then scales with the signal,
    not with a DC offset (at 1e4 mV float32 pooling was 4% of the peak off), and the
    level cancels in ``x - baseline``."""
    first = rows[:, :1]
    level = torch.where(first.isfinite(), first, torch.zeros_like(first))
    d = rows - level
    y = d[:, None]
    for w in sizes:
        y = torch.nn.functional.avg_pool1d(
            torch.nn.functional.pad(y, (w // 2, (w - 1) // 2), mode="reflect"), w, stride=1)
    return d - y[:, 0] if subtract else y[:, 0] + level


register_kernel("moving_average", "cpu", compiled_op("_moving_average_kernel"))


# ---- windows longer than the signal: exact shortcuts, O(n) memory -------------------------

def edge_regimes(size: int, origin: int, n: int, mode: int) -> tuple[int, int, int]:
    """Windows of a ``nearest`` or ``constant`` extension longer than ``2 n + 2``: output
    ``i <= left`` is the left edge value (``x[0]``, or `cval`), ``i >= right`` the right
    one, since that value fills more than half of the window (the samples below it
    then number at most ``size // 2`` and the median is it). Outputs between see both
    ends fill most of the window, and an equal shorter window serves them: dropping
    ``d`` copies from each end moves the median rank down by ``d`` and leaves the median
    unchanged while both ends keep more copies than the row has other samples (no value
    below both ends reaches the new rank; every value above both still passes it).
    Returns ``(left, right, middle_size)``, all in index arithmetic (no data read)."""
    k = size // 2
    if mode == MEDIAN_MODES["nearest"]:
        left, right = origin, 2 * k + origin + n - size          # x[0] / x[n-1] copies >= k + 1

        def ends(i):  # window positions at or left of 0, at or right of n - 1
            return 1 - i + k + origin, i - k - origin + size - n + 1
        bound = min(k + 2 - n, size - k - n + 1)
    else:
        left, right = origin - 1, 2 * k + 1 + origin + n - size  # cval copies >= k + 1

        def ends(i):
            return k + origin - i, i - k - origin + size - n
        bound = min(k - n, size - k - n - 1)
    lo, hi = max(0, left + 1), min(n - 1, right - 1)
    if lo > hi:
        return left, right, 0
    d = min(ends(hi)[0], ends(lo)[1], bound, (size - 1) // 2, k + origin, (size - 1) // 2 - origin)
    return left, right, size - 2 * max(d, 0)


def edge_median(x: Tensor, size: int, origin: int, mode: int, cval: float,
                backend: str) -> Tensor:
    """One running median of a ``nearest``/``constant`` window longer than ``2 n + 2``
    (see :func:`edge_regimes`): the edge values where they fill most of the window, one
    kernel call on the equal shorter window elsewhere. O(n) memory."""
    n = x.shape[-1]
    left, right, middle_size = edge_regimes(size, origin, n, mode)
    if middle_size:
        y, _ = _median_filter(x, [middle_size], [origin], mode, cval, False, _needs_index(x),
                              backend)
    else:
        y = x
    i = torch.arange(n, device=x.device)
    if mode == MEDIAN_MODES["nearest"]:
        first, last = x[..., :1], x[..., -1:]
    else:
        first = last = torch.full_like(x[..., :1], cval)
    out = torch.where(i <= left, first, torch.where(i >= right, last, y))
    # The shortcuts read the edges and a shorter window: a NaN the full window holds
    # (samples i - k - origin .. + size - 1 of the row, the extension's copies
    # included) must still make it NaN.
    start = i - size // 2 - origin
    nans = torch.nn.functional.pad(x.isnan().cumsum(-1), (1, 0))
    held = nans[..., (start + size).clamp(1, n)] - nans[..., start.clamp(0, n - 1)] > 0
    return out.masked_fill(held, float("nan"))


def _period(n: int, mode: int) -> int:
    return {MEDIAN_MODES["reflect"]: 2 * n, MEDIAN_MODES["mirror"]: 2 * n - 2,
            MEDIAN_MODES["wrap"]: n}[mode]


def periodic_closed_form(size: int, n: int, mode: int) -> bool:
    """Whether :func:`periodic_median` serves this window of a periodic extension
    (reflect, mirror, wrap): when its candidate search is short (at most 64 values to
    test: it tests ``r / q + 2``), or when the window is so long that the kernel's
    O(size) work memory would outgrow the signal's (beyond ``64 n + 2**20`` samples)."""
    if mode not in (MEDIAN_MODES["reflect"], MEDIAN_MODES["mirror"], MEDIAN_MODES["wrap"]):
        return False
    period = _period(n, mode)
    if period <= 1:
        return size > 1
    q, r = size // period, size % period  # (divmod does not take symbolic sizes)
    return q >= 1 and (r // q + 2 <= 64 or size > 64 * n + 2**20)


def _periodic_window_sums(per: Tensor, start: Tensor, length: int) -> Tensor:
    """Sums over positions ``[start, start + length)`` of the periodic sequences whose
    one period is each row of `per` (n_rows, period): prefix sums over one period."""
    period = per.shape[-1]
    cum = torch.nn.functional.pad(per.cumsum(-1), (1, 0))  # (n_rows, period + 1)

    def upto(pos):  # positions [0, pos) for any integer pos
        whole, part = pos.div(period, rounding_mode="floor"), pos.remainder(period)
        return whole * cum[:, -1:] + cum.gather(-1, part.expand(per.shape[0], -1))

    return upto(start + length) - upto(start)


def _one_period(rows: Tensor, mode: int) -> Tensor:
    """Each row's extension over one period of a periodic `mode`, (n_rows, period)."""
    n = rows.shape[-1]
    t = torch.arange(_period(n, mode), device=rows.device)
    return rows.gather(-1, extended_index(t, n, mode).expand(rows.shape[0], -1))


def _window_counts(ind: Tensor, start: Tensor, length: int, mode: int) -> Tensor:
    """How many of the extended row's positions ``[start, start + length)`` hold a sample
    with ``ind`` set (rows of `ind` are (n_rows, n))."""
    return _periodic_window_sums(_one_period(ind, mode).to(torch.int64), start, length)


def periodic_median(rows: Tensor, size: int, origin: int, mode: int) -> tuple[Tensor, Tensor]:
    """Running median under a periodic extension whose window holds q >= 1 whole periods
    plus r samples: ``(values, index)`` from one sort of each row and O(n) memory,
    whatever the window's length.

    With S the multiset of one period (weights 2 per sample for reflect, 2 but the ends 1
    for mirror, 1 for wrap; total P), the window at output i is q S plus the r samples
    R_i at its start, and the median is the lowest v with ``q F_S(v) + F_R(v) > size //
    2`` (F: counts at or below v). As ``0 <= F_R <= r``, only values with
    ``q F_S(v)`` within r of that rank can be it: at most ``r / q + 2`` sorted samples,
    each tested against every window with prefix sums over one period. For q >= r + 2
    that is the two values around S's own median. Every window holds every sample, so a
    NaN anywhere makes the row NaN."""
    n_rows, n = rows.shape
    device = rows.device
    if n == 1:
        index = torch.zeros_like(rows, dtype=torch.int64)
        return rows.clone(), index
    period = _period(n, mode)
    q, r = size // period, size % period
    rank = size // 2 + 1  # the median is the lowest v with at least `rank` samples <= v
    weight = torch.full((n,), 2 if mode != MEDIAN_MODES["wrap"] else 1, dtype=torch.int64,
                        device=device)
    if mode == MEDIAN_MODES["mirror"]:
        weight[0] = weight[-1] = 1
    vals, order = rows.sort(-1)  # NaN sort last
    cum = weight[order].cumsum(-1)
    # sorted positions from the first that the largest R_i could lift to `rank` to the
    # first that reaches it with no help from R_i (always a valid answer)
    first = (q * cum < rank - r).sum(-1, keepdim=True).clamp(max=n - 1)
    last = (q * cum < rank).sum(-1, keepdim=True).clamp(max=n - 1)
    start = (torch.arange(n, device=device) - size // 2 - origin)[None]
    pos = last.expand(n_rows, n).clone()
    # q cum rises by q or more a position, so last - first <= r // q + 1: the bound a
    # compiled graph takes (the data's own span would be a data-dependent loop); the
    # extra steps change nothing (p < last).
    span = min(r // q + 2, n) if torch.compiler.is_compiling() else int((last - first).max())
    for step in range(span - 1, -1, -1):
        p = (first + step).clamp(max=n - 1)
        v = vals.gather(-1, p)
        at_or_below = rows <= v
        f_s = (weight * at_or_below).sum(-1, keepdim=True)
        ok = q * f_s + _window_counts(at_or_below, start, r, mode) >= rank
        pos = torch.where(ok & (p < last), p.expand(n_rows, n), pos)
    index = order.gather(-1, pos)
    nan = rows.isnan()
    first_nan = nan.int().argmax(-1, keepdim=True)
    index = torch.where(nan.any(-1, keepdim=True), first_nan.expand(-1, n), index)
    return rows.gather(-1, index), index


def periodic_moving_average(rows: Tensor, size: int) -> Tensor:
    """Centred moving average of `size` samples over the reflect-padded row (torch's
    reflect, SciPy's mirror: period 2n - 2) for any window length, from prefix sums over
    one period in float64: O(n) memory."""
    n = rows.shape[-1]
    if n == 1:
        return rows.clone()
    per = _one_period(rows.to(torch.float64), MEDIAN_MODES["mirror"])
    start = (torch.arange(n, device=rows.device) - size // 2)[None]
    return (_periodic_window_sums(per, start, size) / size).to(rows.dtype)


# ---- custom ops ----------------------------------------------------------------------------

@custom_op("fastecg::median_filter")
def _median_filter(x: Tensor, sizes: list[int], origins: list[int], mode: int, cval: float,
                   subtract: bool, need_index: bool, backend: str) -> tuple[Tensor, Tensor]:
    rows = x.reshape(-1, x.shape[-1])
    out, index = kernel_for("median_filter", x, backend)(rows, sizes, origins, mode, cval,
                                                         subtract, need_index)
    return out.view(x.shape), (index.view(x.shape) if need_index else index)


@_median_filter.register_fake
def _(x, sizes, origins, mode, cval, subtract, need_index, backend):
    index = x.new_empty(x.shape if need_index else (0,), dtype=torch.int64)
    return x.new_empty(x.shape), index


def _median_setup(ctx, inputs, output):
    ctx.subtract, ctx.need_index = inputs[5], inputs[6]
    ctx.save_for_backward(output[1])


def _median_backward(ctx, grad, _grad_index):
    if not ctx.need_index:
        raise RuntimeError("median_filter: the forward pass ran without keeping indices; "
                           "call it with gradients enabled")
    (index,) = ctx.saved_tensors
    return median_filter_vjp(grad, index, ctx.subtract), None, None, None, None, None, None, None


_median_filter.register_autograd(_median_backward, setup_context=_median_setup)


def median_filter_vjp(grad: Tensor, index: Tensor, subtract: bool) -> Tensor:
    """Gradient of ``x[index]`` (or ``x - x[index]``): one-hot at each output's
    arg-median, summed with ``scatter_add`` (plain torch ops, so twice differentiable).
    Outputs that selected ``cval`` (index -1) send nothing back."""
    valid = index >= 0
    picked = torch.zeros_like(grad).scatter_add(-1, index.clamp(min=0),
                                                torch.where(valid, grad, 0))
    return grad - picked if subtract else picked


@custom_op("fastecg::moving_average")
def _moving_average(x: Tensor, sizes: list[int], subtract: bool, backend: str) -> Tensor:
    rows = x.reshape(-1, x.shape[-1])
    return kernel_for("moving_average", x, backend)(rows, sizes, subtract).view(x.shape)


@_moving_average.register_fake
def _(x, sizes, subtract, backend):
    return x.new_empty(x.shape)


def _mean_setup(ctx, inputs, output):
    ctx.sizes, ctx.subtract = inputs[1], inputs[2]


def _mean_backward(ctx, grad):
    return moving_average_vjp(grad, ctx.sizes, ctx.subtract), None, None, None


_moving_average.register_autograd(_mean_backward, setup_context=_mean_setup)


def moving_average_vjp(grad: Tensor, sizes: list[int], subtract: bool) -> Tensor:
    """Exact adjoint of the chain of reflect-padded moving averages: the vjp of the
    torch reference (the map is linear, so this is exact and twice differentiable).
    ``torch.func.vjp``, not ``requires_grad_`` and ``torch.autograd.grad``: functorch's
    transforms (``torch.func.grad``, ``vjp``, ``jacrev``) run this backward and forbid
    those, and plain autograd records the cotangent's path through it either way."""
    rows = grad.reshape(-1, grad.shape[-1])
    _, pullback = torch.func.vjp(lambda probe: moving_average_reference(probe, sizes, False),
                                 torch.zeros_like(rows))
    (g,) = pullback(rows)
    g = g.view(grad.shape)
    return grad - g if subtract else g


def _median_chain(x: Tensor, sizes: list[int], origins: list[int], mode: int, cval: float,
                  subtract: bool, backend: str) -> Tensor:
    """The chain of running medians (``x`` minus it if `subtract`). Windows far longer
    than the signal take :func:`edge_median` (nearest, constant) or
    :func:`periodic_median` (many periods of reflect, mirror, wrap), in O(n) memory;
    otherwise the chain is one kernel call (the kernel ranks each row once for it)."""
    n = x.shape[-1]

    def special(w):
        return (periodic_closed_form(w, n, mode) or
                (mode in (MEDIAN_MODES["nearest"], MEDIAN_MODES["constant"]) and w > 2 * n + 2))

    if not any(special(w) for w in sizes):
        out, _ = _median_filter(x, sizes, origins, mode, cval, subtract, _needs_index(x), backend)
        return out
    y = x
    for w, o in zip(sizes, origins):
        if periodic_closed_form(w, n, mode):
            rows = y.reshape(-1, n)
            y = rows.gather(-1, periodic_median(rows.detach(), w, o, mode)[1]).view(x.shape)
        elif special(w):
            y = edge_median(y, w, o, mode, cval, backend)
        else:
            y, _ = _median_filter(y, [w], [o], mode, cval, False, _needs_index(y), backend)
    return x - y if subtract else y


def _moving_average_chain(x: Tensor, sizes: list[int], subtract: bool, backend: str) -> Tensor:
    """The chain of moving averages; a window reaching past a whole reflected signal
    (``w // 2 >= n``) takes :func:`periodic_moving_average` (O(n) memory)."""
    n = x.shape[-1]
    if all(w // 2 < n for w in sizes):
        return _moving_average(x, sizes, subtract, backend)
    y = x
    for w in sizes:
        if w // 2 < n:
            y = _moving_average(y, [w], False, backend)
        else:
            y = periodic_moving_average(y.reshape(-1, n), w).view(x.shape)
    return x - y if subtract else y


# ---- public functions ------------------------------------------------------------------------

def _check_size(size: int, origin: int, name: str = "size") -> int:
    """`size` as a Python int (NumPy integers accepted), checked with `origin`."""
    if (isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1
            or size > MAX_WINDOW):
        raise ValueError(f"median_filter1d: {name} must be a positive int up to "
                         f"{MAX_WINDOW}, got {size!r}")
    size = int(size)
    if isinstance(origin, (bool, float)):
        raise ValueError(f"median_filter1d: origin must be an integer, got {origin!r}")
    if not -(size // 2) <= origin <= (size - 1) // 2:
        raise ValueError(f"median_filter1d: origin {origin} out of range "
                         f"[{-(size // 2)}, {(size - 1) // 2}] for size {size}")
    return size


def _needs_index(x: Tensor) -> bool:
    return torch.is_grad_enabled() and x.requires_grad


def median_filter1d(x: Tensor, size: int, mode: str = "nearest", cval: float = 0.0,
                    origin: int = 0, backend: str = "auto") -> Tensor:
    """Running median along the last axis: ``scipy.ndimage.median_filter`` on each row.

    Parameters
    ----------
    x : Tensor, shape (..., n_samples)
        float16, bfloat16, float32 or float64; any strides.
    size : int
        Window length in samples (odd or even, >= 1; may exceed ``n_samples``).
    mode : {"nearest", "reflect", "mirror", "constant", "wrap"}, optional
        How the signal is extended beyond its ends (``scipy.ndimage`` names).
    cval : float, optional
        Fill value of ``mode="constant"``.
    origin : int, optional
        Window placement as in SciPy: output ``i`` takes the window
        ``[i - size//2 - origin, i - size//2 - origin + size)``; the median is the
        element of sorted rank ``size // 2`` (the upper median for even sizes).
    backend : {"auto", "cpu", "cuda", "triton", "torch"}, optional

    Returns
    -------
    Tensor
        Same shape and dtype as `x`. Every output is one of the input samples (or
        `cval`), so the result is bit-for-bit SciPy's (up to the sign of a zero).

    Raises
    ------
    TypeError
        Non-floating `x`.
    ValueError
        ``size < 1``, `origin` out of range, unknown `mode`.

    Notes
    -----
    Algorithm (C++ kernel): each chunk of the row is ranked once by a radix sort of
    order-preserving integer keys, then the window slides over ranks with a bitset and
    a per-rank count, the median moving one occupied rank at a time. Cost O(1) radix
    passes plus O(1 + w / 64) bit operations per sample; extra memory O(n). Chained
    medians (``remove_baseline``) reuse the first ranking.

    Where it equals SciPy bit for bit: every mode, every size and origin, as long as the
    extension beyond each end is shorter than the signal (``size // 2 < n_samples``), and
    for ``nearest``, ``constant`` and ``wrap`` at any length. Where SciPy departs from its
    own definition (so we do not match it): ``mirror`` and ``reflect`` with an extension
    longer than the signal, where SciPy reads outside the array (values like 4e-308, or
    -1 offsets for four signal lengths or more); we repeat the reflection periodically,
    the definition, as for every other length. Windows far longer than the signal cost
    O(n) memory: ``nearest`` and ``constant`` windows are shortened to an equal one
    (the extra copies of the edge value or `cval` cancel in pairs around the median),
    and a periodic extension (``reflect``, ``mirror``, ``wrap``) of q whole periods plus
    r samples is answered from one sort and a search over at most ``r / q + 2`` values
    (see ``periodic_median``), used when that search is short or the window is longer
    than ``64 n + 2**20``; other windows are slid by the kernel (O(size) memory, so at
    most ~64 n).

    NaN: a window that holds a NaN yields NaN (as ``torch.median``); SciPy's result is
    unspecified there.

    The gradient is one-hot at each window's selected sample (``gradcheck`` holds on
    inputs without ties; ties send the gradient to the one sample selected).

    Examples
    --------
    >>> y = median_filter1d(torch.randn(2, 12, 5000), 101)
    """
    return _median_filter1d(x, size, mode, cval, origin, backend, False)


def _median_filter1d(x: Tensor, size: int, mode: str, cval: float, origin: int, backend: str,
                     subtract: bool) -> Tensor:
    """:func:`median_filter1d`, or (`subtract`) ``x`` minus it in the same kernel pass (one
    output written instead of the median and then the difference). Subtracting in the kernel
    rounds ``x - median`` once in the kernel's dtype, as ``x - median_filter1d(x)`` does when
    that is `x`'s dtype; for float16 and bfloat16 the two differ (one rounding against two),
    so those subtract after the cast."""
    check_signal(x, "median_filter1d", min_samples=0)
    if mode not in MEDIAN_MODES:
        raise ValueError(f"median_filter1d: unknown mode {mode!r}; expected one of "
                         f"{sorted(MEDIAN_MODES)}")
    size = _check_size(size, origin)
    if x.numel() == 0:
        check_backend_name(backend)
        return torch.zeros_like(x) if subtract else x.clone()
    if not torch.compiler.is_compiling():
        # fail early, with the reason: windows far longer than the signal never reach a kernel
        resolve_backend("median_filter", x, backend)
    dtype = kernel_dtype(x)
    fused = subtract and dtype == x.dtype
    out = _median_chain(x.to(dtype), [size], [origin], MEDIAN_MODES[mode], float(cval), fused,
                        backend).to(x.dtype)
    return x - out if subtract and not fused else out


def remove_baseline(x: Tensor, fs: float, window1: float = 0.2, window2: float = 0.6,
                    method: str = "median", backend: str = "auto",
                    mode: Optional[str] = None) -> Tensor:
    """ECG baseline-wander removal: ``x - f(f(x, window1), window2)`` along time.

    Parameters
    ----------
    x : Tensor, shape (..., n_leads, n_samples)
        ECG (any unit); floating point, CPU or CUDA.
    fs : float
        Sampling rate, Hz.
    window1, window2 : float, optional
        Window lengths in seconds, turned into odd sample counts
        ``2 * (int(window * fs) // 2) + 1`` (101 and 301 at 500 Hz).
    method : {"median", "mean"}, optional
        ``"median"``: ``scipy.ndimage.median_filter(.., mode=mode)`` twice, bit-for-bit
        (see :func:`median_filter1d`). ``"mean"``: two centred moving averages over
        reflect padding (``F.avg_pool1d(F.pad(.., "reflect"))``, the torch approximation;
        ``scipy.ndimage.uniform_filter1d(.., mode="mirror")``), computed with float64
        running sums: O(1) per sample, within 1e-5 of the ``avg_pool1d`` result.
    backend : {"auto", "cpu", "cuda", "triton", "torch"}, optional
        Kernel of the ``median`` method (``"cuda"`` and ``"triton"`` on a GPU); ``mean``
        runs on ``"cpu"`` or ``"torch"``.
    mode : {"nearest", "constant", "reflect", "mirror", "wrap"}, optional
        Extension beyond the record's ends, ``scipy.ndimage`` names (``median`` only;
        default ``"nearest"``). ``"constant"`` pads with zeros, as
        ``scipy.signal.medfilt`` does. ``mean`` takes only ``"mirror"`` (its default).

    Returns
    -------
    Tensor
        ``x`` minus its baseline; same shape and dtype.

    Raises
    ------
    TypeError
        Non-floating `x`.
    ValueError
        Non-positive `fs` or window, unknown `method` or `mode`.

    Notes
    -----
    Windows longer than the signal are fine, in O(n) memory whatever their length
    (``median``: SciPy's rule for the mode; ``mean``: periodic reflection). NaN:
    ``median`` turns every window holding a NaN into NaN; ``mean`` does the same
    (running sums fall back to direct sums on rows with non-finite values). Gradients:
    exact (one-hot at the arg-median / the adjoint of the averages).

    Examples
    --------
    >>> y = remove_baseline(torch.randn(4, 12, 5000), fs=500.0)
    >>> y = remove_baseline(torch.randn(4, 12, 5000), fs=500.0, mode="constant")  # medfilt's zeros
    """
    check_signal(x, "remove_baseline", min_samples=0)
    if method not in BASELINE_METHODS:
        raise ValueError(f"remove_baseline: unknown method {method!r}; expected one of "
                         f"{BASELINE_METHODS}")
    mode = check_baseline_mode(method, mode)
    sizes = [window_samples(window1, fs), window_samples(window2, fs)]
    if x.numel() == 0:
        check_backend_name(backend)
        return x.clone()
    if not torch.compiler.is_compiling():
        resolve_backend("median_filter" if method == "median" else "moving_average", x, backend)
    xk = x.to(kernel_dtype(x))
    if method == "median":
        out = _median_chain(xk, sizes, [0, 0], MEDIAN_MODES[mode], 0.0, True, backend)
    else:
        out = _moving_average_chain(xk, sizes, True, backend)
    return out.to(x.dtype)


def check_baseline_mode(method: str, mode: Optional[str]) -> str:
    """`mode` checked for `method`, None replaced by the method's default."""
    if method == "mean":
        if mode not in (None, "mirror"):
            raise ValueError(f"remove_baseline: method='mean' pads by reflection "
                             f"(mode='mirror'), got mode={mode!r}")
        return "mirror"
    if mode is None:
        return "nearest"
    if mode not in MEDIAN_MODES:
        raise ValueError(f"remove_baseline: unknown mode {mode!r}; expected one of "
                         f"{sorted(MEDIAN_MODES)}")
    return mode
