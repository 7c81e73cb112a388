"""Band-pass module (torch_ecg's ``BandPass`` keywords)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ..ops._validate import check_signal, kernel_dtype
from ..ops.bandpass import bandpass, butter_sos
from ..ops.sosfilt import PADTYPES, _sosfiltfilt, check_longer_than_padding, default_padlen
from ..registry import PREPROCESSORS


@PREPROCESSORS.register("bandpass")
class BandPass(nn.Module):
    """Zero-phase Butterworth band-pass of ``(..., n_leads, n_samples)`` ECG.

    Parameters
    ----------
    fs : float
        Sampling rate, Hz.
    lowcut, highcut : float or None
        Band edges, Hz (``None``: high-/low-pass).
    filter_type : {"butter"}
        Only Butterworth for now (``"fir"`` is not implemented yet and raises).
    filter_order : int, optional
        Butterworth order of each pass (default 4).
    method : {"iir", "fft"}
        See :func:`fastecg.ops.bandpass`.

    Notes
    -----
    The coefficients are designed once here and kept as buffers, so ``forward`` is a
    single custom op: ``torch.compile(module, fullgraph=True)`` traces it without
    breaks (the functional form designs its filter with SciPy at call time, which
    Dynamo cannot trace).
    """

    def __init__(self, fs: float, lowcut: Optional[float] = 0.5,
                 highcut: Optional[float] = 45.0, filter_type: str = "butter",
                 filter_order: Optional[int] = None, method: str = "iir", backend: str = "auto"):
        super().__init__()
        if filter_type != "butter":
            raise ValueError(f"filter_type {filter_type!r} is not supported yet; use 'butter'")
        self.fs, self.lowcut, self.highcut = float(fs), lowcut, highcut
        self.order, self.method, self.backend = filter_order or 4, method, backend
        sos = butter_sos(self.order, lowcut, highcut, self.fs)
        from scipy.signal import sosfilt_zi

        self.register_buffer("sos", torch.tensor(sos, dtype=torch.float64), persistent=False)
        self.register_buffer("zi", torch.tensor(sosfilt_zi(sos), dtype=torch.float64),
                             persistent=False)
        self.padlen = default_padlen(sos)

    def forward(self, sig: Tensor) -> Tensor:
        if self.method != "iir":
            return bandpass(sig, self.fs, self.lowcut, self.highcut, self.order, self.method)
        check_signal(sig, "BandPass")
        check_longer_than_padding(sig, self.padlen)
        out = _sosfiltfilt(sig.to(kernel_dtype(sig)), self.sos, self.zi, self.padlen,
                           PADTYPES["odd"], self.backend)
        return out.to(sig.dtype)

    def extra_repr(self) -> str:
        return f"fs={self.fs:g}, lowcut={self.lowcut}, highcut={self.highcut}, order={self.order}"
