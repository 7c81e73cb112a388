"""Input checks of the NumPy path, with the torch path's rules (``fastecg.ops._validate``):
one message for one mistake."""

from __future__ import annotations

from typing import Any

import numpy as np


def check_array(sig: Any, what: str, min_dim: int = 1, floating: bool = True) -> np.ndarray:
    """`sig` as an array (no copy), or a TypeError / ValueError naming `what`.

    Parameters
    ----------
    sig : array_like
        The signal.
    what : str
        The function or step named in the messages.
    min_dim : int, optional
        Fewest dimensions accepted (1: ``(..., n_samples)``).
    floating : bool, optional
        Require a floating-point dtype. Integer samples (WFDB's int16 digital units)
        are refused rather than filtered or resampled into a truncated integer result:
        the output keeps the input's dtype.

    Returns
    -------
    ndarray
        ``np.asarray(sig)``.
    """
    sig = np.asarray(sig)
    if floating and not np.issubdtype(sig.dtype, np.floating):
        raise TypeError(f"{what}: expected a floating-point array (float16, float32, float64), "
                        f"got {sig.dtype}; convert with sig.astype(np.float32)")
    if sig.ndim < min_dim:
        raise ValueError(f"{what}: expected an array of shape (..., n_samples), got a 0-d "
                         f"array" if sig.ndim == 0 else
                         f"{what}: expected an array with at least {min_dim} dimensions, got "
                         f"shape {sig.shape}")
    return sig
