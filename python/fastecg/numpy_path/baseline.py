"""NumPy/SciPy baseline removal with the semantics of :func:`fastecg.ops.remove_baseline`.

Calls SciPy the fast way: ``scipy.ndimage.median_filter`` on one 1-D row at a time
(SciPy >= 1.15 takes its O(log w) 1-D path there; the N-D call on the whole array
takes the generic rank filter, about 100x slower), and ``uniform_filter1d`` for the
moving averages.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from scipy import ndimage

from .._spec import window_samples
from ._validate import check_array

__all__ = ["remove_baseline", "BaselineRemove", "median_filter1d", "window_samples"]

_METHODS = ("median", "mean")
_MODES = ("nearest", "constant", "reflect", "mirror", "wrap")


def remove_baseline(sig: np.ndarray, fs: float, window1: float = 0.2, window2: float = 0.6,
                    method: str = "median", mode: Optional[str] = None) -> np.ndarray:
    """``sig - f(f(sig, window1), window2)`` along the last axis (``f``: running median
    with `mode` (default ``"nearest"``; ``"constant"`` pads zeros as
    ``scipy.signal.medfilt``), or centred moving average with ``mode="mirror"``, which
    is torch's reflect padding). Same shape and dtype as `sig`.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import ndimage
    >>> from fastecg.numpy_path import remove_baseline
    >>> x = np.random.default_rng(0).standard_normal((2, 1000))
    >>> med = lambda v, w: ndimage.median_filter(v, size=(1, w), mode="nearest")
    >>> np.array_equal(remove_baseline(x, 500.0), x - med(med(x, 101), 301))
    True
    """
    if method not in _METHODS:
        raise ValueError(f"remove_baseline: unknown method {method!r}; expected one of {_METHODS}")
    sig = check_array(sig, "remove_baseline")
    if method == "mean" and mode not in (None, "mirror"):
        raise ValueError(f"remove_baseline: method='mean' pads by reflection (mode='mirror'), "
                         f"got mode={mode!r}")
    if method == "median" and mode not in (None,) + _MODES:
        raise ValueError(f"remove_baseline: unknown mode {mode!r}; expected one of {_MODES}")
    mode = mode or ("nearest" if method == "median" else "mirror")
    w1, w2 = window_samples(window1, fs), window_samples(window2, fs)
    rows = sig.reshape(-1, sig.shape[-1]) if sig.size else sig.reshape(0, max(sig.shape[-1:], default=0))
    if method == "mean":
        if rows.dtype.itemsize < 4:  # (ndimage has no float16 filters)
            rows = rows.astype(np.float32)  # as the torch path: half computed in float32
        # Less a level of the row's own (its first sample where finite), as the torch
        # path: the float32 baseline's rounding then scales with the signal, not with a
        # DC offset, and the level cancels in rows - base.
        first = rows[:, :1]
        rows = rows - np.where(np.isfinite(first), first, 0).astype(rows.dtype)
    base = np.empty_like(rows)
    for r, row in enumerate(rows):
        if method == "median":
            base[r] = median_filter1d(median_filter1d(row, w1, mode), w2, mode)
        else:
            base[r] = _moving_average(_moving_average(row, w1), w2)
    with np.errstate(invalid="ignore"):  # Inf - Inf is the NaN the torch path gives too
        return (rows - base).reshape(sig.shape).astype(sig.dtype, copy=False)


# np.pad's names of ndimage's modes (np.pad extends by whole periods, as the modes mean)
_PAD_MODES = {"nearest": "edge", "constant": "constant", "reflect": "symmetric",
              "mirror": "reflect", "wrap": "wrap"}


def median_filter1d(row: np.ndarray, w: int, mode: str = "nearest") -> np.ndarray:
    """``scipy.ndimage.median_filter(row, w, mode=mode)`` of one 1-D row, with the
    semantics of :func:`fastecg.ops.median_filter1d` where SciPy's differ.

    Parameters
    ----------
    row : ndarray, shape (n_samples,)
        One lead.
    w : int
        Window length in samples (odd).
    mode : {"nearest", "constant", "reflect", "mirror", "wrap"}, optional
        Extension beyond the ends (``"constant"`` pads zeros).

    Returns
    -------
    ndarray
        Same shape and dtype as `row`.

    Notes
    -----
    A window longer than the row filters the row extended by ``np.pad`` (SciPy 1.17
    extends a short row wrongly past one period: ``"reflect"`` reads values from
    outside the row, ``"mirror"`` gives a wrong median). A window that holds a NaN
    yields NaN, as the torch path (SciPy's result is unspecified there: a NaN changes
    only the sample it is at).

    Examples
    --------
    >>> import numpy as np
    >>> from fastecg.numpy_path.baseline import median_filter1d
    >>> median_filter1d(np.array([1.0, 5.0, 2.0, 9.0, 3.0]), 3)
    array([1., 2., 5., 3., 3.])
    >>> median_filter1d(np.array([5.0, 1.0]), 17, mode="reflect")   # 5 1 1 5 5 1 1 ...
    array([5., 1.])
    >>> median_filter1d(np.array([1.0, np.nan, 2.0, 9.0, 3.0]), 3)
    array([nan, nan, nan,  3.,  3.])
    """
    n, half = row.shape[-1], w // 2
    if w > n:  # the window passes the row's ends: extend it here
        row = np.pad(row, half, mode=_PAD_MODES[mode])
    nan = np.isnan(row)
    if nan.any():
        out = ndimage.median_filter(np.where(nan, 0, row), w, mode=mode)
        out[ndimage.maximum_filter1d(nan.astype(np.uint8), w, mode=mode) > 0] = np.nan
    else:
        out = ndimage.median_filter(row, w, mode=mode)
    return out[half:half + n] if w > n else out


def _moving_average(row: np.ndarray, w: int) -> np.ndarray:
    """``uniform_filter1d(row, w, mode="mirror")``, where a NaN or an Inf changes only the
    windows that hold it (the running sum would carry it to the row's end): those take
    the sum of their non-finite values (NaN for a NaN or for both infinities), as the
    torch path's sums over each window give."""
    bad = ~np.isfinite(row)
    if not bad.any():
        return ndimage.uniform_filter1d(row, w, mode="mirror")
    out = ndimage.uniform_filter1d(np.where(bad, 0.0, row).astype(row.dtype), w, mode="mirror")

    def held(mask):  # windows that hold a sample of `mask` (sums of ones are exact)
        return ndimage.uniform_filter1d(mask.astype(np.float64), w, mode="mirror") > 0

    pos, neg, nan = held(row == np.inf), held(row == -np.inf), held(np.isnan(row))
    out[pos] = np.inf
    out[neg] = -np.inf
    out[nan | (pos & neg)] = np.nan
    return out


class BaselineRemove:
    """Callable twin of :class:`fastecg.preprocessors.BaselineRemove` for NumPy arrays.

    Examples
    --------
    >>> import numpy as np
    >>> from fastecg.numpy_path import BaselineRemove
    >>> float(BaselineRemove(fs=500.0)(np.full((12, 1000), 3.0)).max())   # a flat offset
    0.0
    """

    def __init__(self, fs: float, window1: float = 0.2, window2: float = 0.6,
                 method: str = "median", mode: Optional[str] = None):
        if method not in _METHODS:  # checked when built, as the torch module does
            raise ValueError(f"BaselineRemove: unknown method {method!r}; expected one of "
                             f"{_METHODS}")
        for w in (window1, window2):
            window_samples(w, fs)
        remove_baseline(np.zeros((1, 1)), fs, window1, window2, method, mode)  # checks mode
        self.fs, self.window1, self.window2, self.method = fs, window1, window2, method
        self.mode = mode

    def __call__(self, sig: np.ndarray) -> np.ndarray:
        return remove_baseline(sig, self.fs, self.window1, self.window2, self.method, self.mode)
