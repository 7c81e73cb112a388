"""NumPy normalisation with the semantics of :func:`fastecg.ops.normalize`."""

from __future__ import annotations

import numpy as np

from .._spec import NORMALIZE_EPS as EPS, check_ddof_eps
from ._validate import check_array

_METHODS = ("z-score", "min-max", "naive")


def normalize(sig: np.ndarray, method: str = "z-score", mean: float = 0.0, std: float = 1.0,
              per_channel: bool = False, ddof: int = 1, eps: float = EPS) -> np.ndarray:
    """Normalise ``sig`` of shape (..., n_leads, n_samples); see fastecg.ops.normalize.

    Statistics are computed in float64 (std with ``ddof`` delta degrees of freedom, 1 by
    default; ``ddof=0, eps=0`` is ``scipy.stats.zscore``); the result has ``sig``'s
    dtype. Records with NaN/Inf become NaN (z-score, min-max). A constant record (lead,
    with `per_channel`) gives `mean` (z-score) or 0 (min-max) while ``eps > 0``, and
    NaN (0 / 0) with ``eps=0``: it is centred to exactly 0, so no rounding residue is
    blown up to +-1 (``scipy.stats.zscore`` gives that on a constant 0.1). The
    arguments and the shape are checked as the torch path checks them (ValueError): `mean` and `std`
    must broadcast to ``sig.shape[:-1] + (1,)`` (per-lead values as a column), and a
    z-score needs more than `ddof` values per statistic; an empty array gives an
    empty result.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import stats
    >>> from fastecg.numpy_path import normalize
    >>> x = np.random.default_rng(0).standard_normal((2, 12, 500)) * 3 + 1
    >>> np.allclose(normalize(x, per_channel=True, ddof=0, eps=0), stats.zscore(x, axis=-1))
    True
    >>> normalize(np.array([[1.0, 2.0, 3.0, 5.0]]), "min-max").round(6)   # eps in the span
    array([[0.  , 0.25, 0.5 , 1.  ]])
    """
    if method not in _METHODS:
        raise ValueError(f"normalize: unknown method {method!r}; expected one of {_METHODS}")
    check_ddof_eps(ddof, eps)
    sig = check_array(sig, "normalize", min_dim=0)  # (its shape rule is checked below)
    if not np.all(np.asarray(std) > 0):
        raise ValueError(f"normalize: std must be positive, got {std}")
    if sig.ndim < (1 if per_channel else 2):
        raise ValueError(f"normalize: expected an array of shape (..., n_leads, n_samples), got "
                         f"shape {sig.shape} (per_channel=True takes (..., n_samples))")
    # The torch path's checks: enough samples for the statistics, and per-lead values
    # as a column (a 1-D array would otherwise broadcast along time).
    least = ddof + 1 if method == "z-score" and per_channel else 1
    if sig.shape[-1] < least:
        raise ValueError(f"normalize: needs at least {least} sample(s) along the last axis, "
                         f"got shape {sig.shape}")
    target = sig.shape[:-1] + (1,)
    for name, value in (("mean", mean), ("std", std)):
        shape = np.shape(value)
        if len(shape) > len(target) or any(s not in (1, t) for s, t in zip(shape[::-1],
                                                                           target[::-1])):
            raise ValueError(f"normalize: {name} of shape {shape} does not broadcast to "
                             f"x.shape[:-1] + (1,) = {target} (per-lead values: shape "
                             "(n_leads, 1))")
    if sig.size == 0:  # no records, or records of no leads: empty in, empty out
        return sig.copy()
    if method == "z-score" and not per_channel and sig.shape[-1] * sig.shape[-2] <= ddof:
        raise ValueError(f"normalize: z-score with ddof={ddof} needs at least {ddof + 1} "
                         f"values per record, got shape {sig.shape}")
    if method == "naive":
        return ((sig - np.asarray(mean)) / np.asarray(std)).astype(sig.dtype, copy=False)
    axes = -1 if per_channel else (-2, -1)
    x = sig.astype(np.float64)
    with np.errstate(invalid="ignore"):
        if method == "min-max":
            lo = x.min(axis=axes, keepdims=True)
            span = x.max(axis=axes, keepdims=True) - lo + eps
            span = np.where(np.isfinite(x).all(axis=axes, keepdims=True), span, np.nan)
            out = (x - lo) / span
        else:
            # Centred twice (the mean of what is left refines the first mean), as the
            # torch path: one mean is rounded to a DC offset's ulp, which a small signal
            # on a large offset (a flat lead) would see.
            left = x - x.mean(axis=axes, keepdims=True)
            left -= left.mean(axis=axes, keepdims=True)
            sigma = left.std(axis=axes, ddof=ddof, keepdims=True)
            out = left / (sigma + eps) * np.asarray(std) + np.asarray(mean)
    return out.astype(sig.dtype, copy=False)
