"""Record normalisation (z-score, min-max, naive): the smallest complete fastecg op.

It shows the pattern every op follows: a public function that validates, a
``torch.library`` custom op with a fake kernel and an exact backward, and kernels
registered per backend (C++ ``cpu``, ``cuda``, ``triton``, ``torch`` reference),
picked by :mod:`fastecg.ops._dispatch`.
"""

from __future__ import annotations

import numbers
from typing import Any, Union

import numpy as np
import torch
from torch import Tensor

from .._spec import NORMALIZE_EPS, NormalizeMethod, check_ddof_eps
from ._dispatch import (check_backend_name, compiled_op, custom_op, kernel_for, register_kernel,
                        resolve_backend)
from ._validate import check_signal, kernel_dtype

__all__ = ["normalize", "NORMALIZE_METHODS"]

EPS = NORMALIZE_EPS
NORMALIZE_METHODS = {"z-score": NormalizeMethod.Z_SCORE, "min-max": NormalizeMethod.MIN_MAX,
                     "naive": NormalizeMethod.NAIVE}
Z_SCORE, MIN_MAX, NAIVE = NormalizeMethod


# ---- kernels ---------------------------------------------------------------------------
# Every kernel takes rows (n_rows, n) and normalises each row on its own.

@register_kernel("normalize", "torch")
def normalize_reference(rows: Tensor, method: int, mean: float, std: float, eps: float = EPS,
                        ddof: int = 1) -> Tensor:
    """Pure-PyTorch reference kernel (any device)."""
    if method == NAIVE:
        return (rows - mean) / std
    if method == MIN_MAX:
        lo, hi = rows.amin(-1, keepdim=True), rows.amax(-1, keepdim=True)
        out = (rows - lo) / (hi - lo + eps)
        return out.masked_fill(~rows.isfinite().all(-1, keepdim=True), float("nan"))
    # The mean refined by the mean of what is left (one more pass): a float32 mean is off
    # by rounding, which a flat row (a disconnected lead at a DC offset) would turn into
    # (c - mean) / eps, hundreds, where the compiled kernels (double sums) give 0. For a
    # flat row the leftover is exact, so the row centres to exactly 0.
    left = rows - rows.mean(-1, keepdim=True)
    centred = left - left.mean(-1, keepdim=True)
    sigma = centred.std(-1, keepdim=True, correction=ddof)
    return centred / (sigma + eps) * std + mean


register_kernel("normalize", "cpu", compiled_op("_normalize_kernel"))
register_kernel("normalize", "cuda", compiled_op("_normalize_kernel"))
register_kernel("normalize", "triton", "fastecg.triton_kernels.normalize:normalize_forward")


# ---- custom op -------------------------------------------------------------------------

def _rows(x: Tensor, per_channel: bool) -> Tensor:
    n = x.shape[-1] if per_channel else x.shape[-1] * x.shape[-2]
    return x.reshape(-1, n)


@custom_op("fastecg::normalize")
def _normalize(x: Tensor, method: int, mean: float, std: float, per_channel: bool,
               backend: str, eps: float = EPS, ddof: int = 1) -> Tensor:
    rows = _rows(x, per_channel)
    return kernel_for("normalize", x, backend)(rows, method, mean, std, eps, ddof).view(x.shape)


@_normalize.register_fake
def _(x, method, mean, std, per_channel, backend, eps=EPS, ddof=1):
    return x.new_empty(x.shape)


def _setup_context(ctx, inputs, output):
    x, method, mean, std, per_channel, _, eps, ddof = inputs
    ctx.save_for_backward(x)
    ctx.args = (method, mean, std, per_channel, eps, ddof)


def _backward(ctx, grad):
    (x,) = ctx.saved_tensors
    method, mean, std, per_channel, eps, ddof = ctx.args
    dx = normalize_backward(grad, x, method, mean, std, per_channel, eps, ddof)
    return dx, None, None, None, None, None, None, None


_normalize.register_autograd(_backward, setup_context=_setup_context)


def normalize_backward(grad: Tensor, x: Tensor, method: int, mean: float, std: float,
                       per_channel: bool, eps: float = EPS, ddof: int = 1) -> Tensor:
    """Exact vector-Jacobian product of the normalisation (plain torch ops, so it is
    itself differentiable and traceable)."""
    if method == NAIVE:
        return grad / std
    g, r = _rows(grad, per_channel), _rows(x, per_channel)
    if method == MIN_MAX:
        lo, hi = r.amin(-1, keepdim=True), r.amax(-1, keepdim=True)
        span = hi - lo + eps
        u = r - lo
        d_hi = -(g * u).sum(-1, keepdim=True) / span**2
        d_lo = -g.sum(-1, keepdim=True) / span - d_hi
        # Ties at the extremes share the gradient equally, as torch.amin/amax do.
        at_lo, at_hi = (r == lo).to(r.dtype), (r == hi).to(r.dtype)
        dx = (g / span + d_lo * at_lo / at_lo.sum(-1, keepdim=True)
              + d_hi * at_hi / at_hi.sum(-1, keepdim=True))
        return dx.view(x.shape)
    n = r.shape[-1]
    u = r - r.mean(-1, keepdim=True)
    u = u - u.mean(-1, keepdim=True)  # the forward's refined mean (a flat row: exactly 0)
    sigma = u.square().sum(-1, keepdim=True).div(n - ddof).sqrt()
    denom = sigma + eps
    gs = g * std
    d_sigma = -(gs * u).sum(-1, keepdim=True) / denom**2
    # dsigma/dx = u / ((n - ddof) sigma); a constant record (sigma = 0) has u = 0: take 0.
    coef = torch.where(sigma > 0, d_sigma / ((n - ddof) * sigma), torch.zeros_like(sigma))
    dx = torch.addcmul((gs - gs.mean(-1, keepdim=True)) / denom, u, coef)
    return dx.view(x.shape)


# ---- public function ---------------------------------------------------------------------

def normalize(x: Tensor, method: str = "z-score", mean: Union[float, Tensor] = 0.0,
              std: Union[float, Tensor] = 1.0, per_channel: bool = False,
              backend: str = "auto", ddof: int = 1, eps: float = EPS) -> Tensor:
    r"""Normalise ECG records to a fixed mean and spread (torch_ecg's ``normalize``).

    .. math::

        \text{z-score:}\ \frac{x - \bar x}{s_x + \epsilon}\,\sigma + \mu \qquad
        \text{min-max:}\ \frac{x - \min x}{\max x - \min x + \epsilon} \qquad
        \text{naive:}\ \frac{x - \mu}{\sigma}

    with :math:`s_x` the standard deviation with `ddof` delta degrees of freedom (default
    1: the unbiased ``torch.std``, torch_ecg's torch path; ``ddof=0`` gives
    ``scipy.stats.zscore``) and :math:`\epsilon` = `eps` (default :math:`10^{-7}`,
    torch_ecg's; ``eps=0`` with ``ddof=0`` is ``scipy.stats.zscore``, except on a
    constant record: it is centred to exactly 0 and gives NaN (0 / 0), where SciPy's
    rounding residue can come out as +-1).

    Parameters
    ----------
    x : Tensor, shape (..., n_leads, n_samples)
        ECG (any unit); float16, bfloat16, float32 or float64, CPU or CUDA. Any
        strides. With ``per_channel=True`` a 1-D ``(n_samples,)`` signal is accepted.
    method : {"z-score", "min-max", "naive"}, optional
        See above. ``"min-max"`` ignores `mean` and `std`.
    mean, std : float, Tensor or array-like, optional
        Target mean and standard deviation (``z-score``), or the values to subtract
        and divide by (``naive``). Tensors (NumPy arrays and sequences are taken as
        tensors) must broadcast to ``x.shape[:-1] + (1,)``, e.g. shape ``(n_leads, 1)``
        for per-lead values; `std` must be positive.
    per_channel : bool, optional
        Default False: one set of statistics per record (over ``n_leads * n_samples``),
        torch_ecg's default. True: statistics per lead (over ``n_samples``).
    backend : {"auto", "cpu", "cuda", "triton", "torch"}, optional
        Kernel to run; ``"auto"`` picks the fastest one available for ``x``'s device.
    ddof : int, optional
        Delta degrees of freedom of the z-score's standard deviation (divisor
        ``N - ddof``); 1 by default, 0 for ``scipy.stats.zscore`` / ``numpy.std``.
    eps : float, optional
        Added to the spread (z-score's standard deviation, min-max's range) so that a
        constant record stays finite; ``>= 0``.

    Returns
    -------
    Tensor
        Same shape, dtype and device as `x` (contiguous). Half types are computed in
        float32 and rounded back.

    Raises
    ------
    TypeError
        If `x` is not a floating-point tensor.
    ValueError
        If `method` is unknown, `std` is not positive, `mean` or `std` does not
        broadcast to ``x.shape[:-1] + (1,)``, `x` has too few dimensions, or a z-score
        statistic has no more than `ddof` samples, `ddof` is negative or `eps` is
        negative.
    RuntimeError
        If a forced `backend` is unavailable or cannot run on `x`'s device.

    Notes
    -----
    Statistics accumulate in float64 in the compiled kernels. A record (or lead, with
    `per_channel`) containing NaN or Inf has no defined statistics: with ``z-score``
    and ``min-max`` its whole output is NaN; other records are unaffected. ``naive``
    is elementwise, so NaN stays where it is. The gradient is exact (``gradcheck``),
    with the derivative of :math:`s_x` taken as 0 on a constant record and ties at the
    min/max sharing the gradient equally, as ``torch.amin`` does.

    Examples
    --------
    >>> y = normalize(torch.randn(4, 12, 5000), method="z-score", mean=0.0, std=1.0)
    >>> y.shape
    torch.Size([4, 12, 5000])
    """
    mean, std = _as_stat(mean), _as_stat(std)
    check_normalize_args(method, mean, std, backend, ddof, eps)
    code = NORMALIZE_METHODS[method]
    check_signal(x, "normalize", min_dim=1 if per_channel else 2,
                 min_samples=ddof + 1 if (code == Z_SCORE and per_channel) else 1)
    target = (*x.shape[:-1], 1)
    for name, value in (("mean", mean), ("std", std)):
        if isinstance(value, Tensor) and _broadcast(value.shape, target) != target:
            raise ValueError(f"normalize: {name} of shape {tuple(value.shape)} does not "
                             f"broadcast to x.shape[:-1] + (1,) = {target} (per-lead values: "
                             f"shape (n_leads, 1))")
    # No records, or records of no leads: empty in, empty out (a clone keeps the graph).
    if x.numel() == 0:
        return x.clone(memory_format=torch.contiguous_format)
    if code == Z_SCORE and not per_channel and x.shape[-1] * x.shape[-2] <= ddof:
        raise ValueError(f"normalize: z-score with ddof={ddof} needs at least {ddof + 1} "
                         f"values per record, got shape {tuple(x.shape)}")
    tensor_stats = isinstance(mean, Tensor) or isinstance(std, Tensor)
    if not torch.compiler.is_compiling():
        resolve_backend("normalize", x, backend)  # fail early, with the reason
    out = _normalize(x.to(kernel_dtype(x)), code,
                     0.0 if tensor_stats else float(mean),
                     1.0 if tensor_stats else float(std), per_channel, backend, float(eps),
                     int(ddof))
    if tensor_stats and code != MIN_MAX:
        out = _apply_tensor_stats(out, x, code, mean, std)
    return out.to(x.dtype)


def check_normalize_args(method: str, mean, std, backend: str, ddof: int = 1,
                         eps: float = EPS) -> None:
    """What can be checked without a signal (the modules check it when built)."""
    check_ddof_eps(ddof, eps)
    if method not in NORMALIZE_METHODS:
        raise ValueError(f"normalize: unknown method {method!r}; expected one of "
                         f"{sorted(NORMALIZE_METHODS)}")
    if not isinstance(mean, Tensor) and not isinstance(std, Tensor) and not std > 0:
        raise ValueError(f"normalize: std must be positive, got {std}")
    check_backend_name(backend)


def _as_stat(value: Any) -> Any:
    """A number or tensor as given; a NumPy array or a sequence as a float64 tensor (a
    0-d one as a float)."""
    if isinstance(value, (Tensor, numbers.Real)):
        return value
    array = np.asarray(value, dtype=np.float64)
    return float(array) if array.ndim == 0 else torch.from_numpy(array)


def _broadcast(a: tuple, b: tuple):
    try:
        return tuple(torch.broadcast_shapes(a, b))
    except RuntimeError:
        return None


def _apply_tensor_stats(unit: Tensor, x: Tensor, code: int, mean, std) -> Tensor:
    std_t = torch.as_tensor(std, dtype=unit.dtype, device=unit.device)
    mean_t = torch.as_tensor(mean, dtype=unit.dtype, device=unit.device)
    if not torch.compiler.is_compiling() and not bool((std_t > 0).all()):
        raise ValueError("normalize: every std must be positive")
    # `unit` is the z-score with target (0, 1), or x itself divided by 1 for naive.
    return unit * std_t + mean_t if code == Z_SCORE else (unit - mean_t) / std_t
