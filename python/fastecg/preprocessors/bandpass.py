"""Band-pass step (torch_ecg's ``BandPass`` keywords)."""

from __future__ import annotations

from typing import Any, Optional

from torch import Tensor

from ..ops.bandpass import bandpass
from ..registry import PREPROCESSORS
from ..transforms.config import SignalInfo
from ..transforms.designs import BandPassSpec
from ..transforms.manager import Transform


@PREPROCESSORS.register("bandpass")
class BandPass(BandPassSpec, Transform):
    """Zero-phase Butterworth or FIR band-pass of ``(..., n_leads, n_samples)`` ECG.

    Parameters are those of :class:`fastecg.transforms.designs.BandPassSpec`:
    ``BandPass(fs=None, lowcut=0.5, highcut=45.0, filter_type="butter",
    filter_order=None, method="iir", backend="auto", inplace=False)``. With ``fs=None``
    the rate comes from the pipeline (or ``module(sig, fs)``).

    Notes
    -----
    The design is checked when built (with `fs`) or before a pipeline runs; ``forward``
    is :func:`fastecg.ops.bandpass`, which designs the filter once per (design, device)
    and caches it. The module holds no coefficient buffers: ``.float()``, ``.half()`` or
    ``.to(device)`` on a model containing it leave the filter exact (float64
    coefficients whatever the module's dtype). Traces with
    ``torch.compile(module, fullgraph=True)``.

    Examples
    --------
    >>> import torch
    >>> from fastecg.preprocessors import BandPass
    >>> t = torch.arange(15000) / 500.0                      # 30 s at 500 Hz
    >>> wave = torch.sin(2 * torch.pi * 10.0 * t)            # 10 Hz: in the band
    >>> drift = 0.5 * torch.sin(2 * torch.pi * 0.1 * t)      # 0.1 Hz: below it
    >>> y = BandPass(fs=500.0, lowcut=0.5, highcut=45.0)(wave + drift)   # order 5 here
    >>> bool((y - wave)[5000:10000].abs().max() < 0.001)     # drift gone, wave kept
    True
    >>> BandPass(lowcut=0.5, highcut=40.0)(torch.randn(2, 12, 5000), 500.0).shape
    torch.Size([2, 12, 5000])
    """

    def forward(self, sig: Tensor, fs: Optional[float] = None) -> Tensor:
        return self.write_back(sig, self._filter(sig, SignalInfo(fs=fs)))

    def run(self, sig: Tensor, info: SignalInfo, generator: Any = None) -> Tensor:
        return self._filter(sig, info)

    def _filter(self, sig: Tensor, info: SignalInfo) -> Tensor:
        fs = self.step_fs(info)
        if self.method == "fir":
            return bandpass(sig, fs, self.lowcut, self.highcut, method="fir",
                            numtaps=self.order_at(fs), backend=self.backend)
        return bandpass(sig, fs, self.lowcut, self.highcut, self.order_at(fs), self.method,
                        self.backend)
