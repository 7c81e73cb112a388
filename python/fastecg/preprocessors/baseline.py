"""Baseline-removal module (torch_ecg's ``BaselineRemove`` keywords)."""

from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

from ..ops._dispatch import check_backend_name
from .._spec import check_fs
from ..ops.baseline import (BASELINE_METHODS, check_baseline_mode, remove_baseline,
                            window_samples)
from ..registry import PREPROCESSORS


@PREPROCESSORS.register("baseline_remove")
class BaselineRemove(nn.Module):
    """Remove baseline wander from ``(..., n_leads, n_samples)`` ECG.

    Parameters
    ----------
    fs : float
        Sampling rate, Hz.
    window1, window2 : float, optional
        Window lengths in seconds of the two filters (0.2 s and 0.6 s).
    method : {"median", "mean"}, optional
        See :func:`fastecg.ops.remove_baseline` (``median`` is SciPy's dual median,
        bit-for-bit).
    inplace : bool, optional
        Write the result into the input tensor (torch_ecg's default is True; here False,
        so that autograd works unless asked otherwise).
    backend : str, optional
        Kernel choice, see :func:`fastecg.ops.remove_baseline`.
    mode : str, optional
        Extension beyond the ends (``median``: default ``"nearest"``; ``"constant"`` is
        ``scipy.signal.medfilt``'s zeros), see :func:`fastecg.ops.remove_baseline`.
    """

    def __init__(self, fs: float, window1: float = 0.2, window2: float = 0.6,
                 method: str = "median", inplace: bool = False, backend: str = "auto",
                 mode: Optional[str] = None):
        super().__init__()
        if method not in BASELINE_METHODS:
            raise ValueError(f"BaselineRemove: unknown method {method!r}; expected one of "
                             f"{BASELINE_METHODS}")
        for w in (window1, window2):
            window_samples(w, fs)  # validates now rather than at the first batch
        check_backend_name(backend)
        self.mode = check_baseline_mode(method, mode)
        self.fs, self.window1, self.window2 = check_fs(fs, "BaselineRemove"), window1, window2
        self.method, self.inplace, self.backend = method, inplace, backend

    def forward(self, sig: Tensor) -> Tensor:
        out = remove_baseline(sig, self.fs, self.window1, self.window2, self.method, self.backend,
                              mode=self.mode)
        return sig.copy_(out) if self.inplace else out

    def extra_repr(self) -> str:
        return (f"fs={self.fs:g}, window1={self.window1}, window2={self.window2}, "
                f"method={self.method!r}, mode={self.mode!r}")
