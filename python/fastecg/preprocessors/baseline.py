"""Baseline-removal step (torch_ecg's ``BaselineRemove`` keywords)."""

from __future__ import annotations

from typing import Any, Optional

from torch import Tensor

from ..ops.baseline import _median_filter1d, remove_baseline
from ..registry import PREPROCESSORS
from ..transforms.config import SignalInfo
from ..transforms.designs import BaselineRemoveSpec
from ..transforms.manager import Transform


@PREPROCESSORS.register("baseline_remove")
class BaselineRemove(BaselineRemoveSpec, Transform):
    """Remove baseline wander from ``(..., n_leads, n_samples)`` ECG.

    Parameters are those of :class:`fastecg.transforms.designs.BaselineRemoveSpec`:
    ``BaselineRemove(fs=None, window1=0.2, window2=0.6, method="median", inplace=False,
    backend="auto", mode=None)``. Two windows: :func:`fastecg.ops.remove_baseline`
    (``median`` is SciPy's dual median, bit for bit). ``window2=None``: one running
    median (:func:`fastecg.ops.median_filter1d`) subtracted; with ``mode="constant"``
    that is ``x - scipy.signal.medfilt(x, w)``, bit for bit.

    Examples
    --------
    >>> import torch
    >>> import fastecg
    >>> from fastecg.preprocessors import BaselineRemove
    >>> x = torch.randn(2, 12, 5000)
    >>> torch.equal(BaselineRemove(fs=500.0)(x), fastecg.ops.remove_baseline(x, 500.0))
    True
    >>> BaselineRemove(fs=500.0)(torch.full((1, 5000), 3.0)).abs().max()   # a flat offset
    tensor(0.)
    """

    def forward(self, sig: Tensor, fs: Optional[float] = None) -> Tensor:
        return self.write_back(sig, self._remove(sig, self.step_fs(SignalInfo(fs=fs))))

    def run(self, sig: Tensor, info: SignalInfo, generator: Any = None) -> Tensor:
        return self._remove(sig, info.fs if self.fs is None else self.fs)

    def _remove(self, sig: Tensor, fs: float) -> Tensor:
        if self.window2 is not None:
            return remove_baseline(sig, fs, self.window1, self.window2, self.method,
                                   self.backend, mode=self.mode)
        (width,) = self.windows(fs)
        # The kernel writes x - median directly: one new tensor and one pass for the step.
        return _median_filter1d(sig, width, self.mode, 0.0, 0, self.backend, True)
