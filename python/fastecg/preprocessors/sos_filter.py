"""Any SOS filter as a step: a notch, a Chebyshev or elliptic band, or given coefficients."""

from __future__ import annotations

from typing import Any, Optional

from torch import Tensor

from ..ops.sosfilt import sosfilt, sosfiltfilt
from ..registry import PREPROCESSORS
from ..transforms.config import SignalInfo
from ..transforms.designs import SOSFilterSpec
from ..transforms.manager import Transform


@PREPROCESSORS.register("sos_filter")
class SOSFilter(SOSFilterSpec, Transform):
    """Any IIR filter as second-order sections on ``(..., n_samples)``: designed once by
    SciPy from a spec, run by :func:`fastecg.ops.sosfiltfilt` (zero phase, default) or
    :func:`fastecg.ops.sosfilt` (causal, from zero state).

    Parameters are those of :class:`fastecg.transforms.designs.SOSFilterSpec`
    (``design``, ``freq``, ``order``, ``btype``, ``q``, ``rp``, ``rs``, ``sos``,
    ``zero_phase``, ``padtype``, ``padlen``, ``fs``, ``backend``).

    Examples
    --------
    >>> import torch
    >>> from fastecg.preprocessors import SOSFilter
    >>> notch = SOSFilter("iirnotch", freq=50.0, q=30.0, fs=500.0)
    >>> band = SOSFilter("cheby1", freq=[0.5, 40.0], order=4, rp=0.5, fs=500.0)
    >>> t = torch.arange(5000) / 500.0                      # 10 s at 500 Hz
    >>> mains = torch.sin(2 * torch.pi * 50.0 * t)          # 50 Hz hum, amplitude 1
    >>> notch(mains)[1000:4000].abs().max() < 0.01          # gone, away from the edges
    tensor(True)
    >>> band(torch.randn(2, 12, 5000)).shape
    torch.Size([2, 12, 5000])
    """

    def forward(self, sig: Tensor, fs: Optional[float] = None) -> Tensor:
        sos = self.sos_at(None if self.design == "sos" else self.step_fs(SignalInfo(fs=fs)))
        if self.zero_phase:
            return sosfiltfilt(sos, sig, padtype=self.padtype, padlen=self.padlen,
                               backend=self.backend)
        return sosfilt(sos, sig, backend=self.backend)

    def run(self, sig: Tensor, info: SignalInfo, generator: Any = None) -> Tensor:
        return self(sig, info.fs)
