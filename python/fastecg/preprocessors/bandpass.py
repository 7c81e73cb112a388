"""Band-pass module (torch_ecg's ``BandPass`` keywords)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ..ops._validate import check_signal, kernel_dtype
from ..ops.bandpass import bandpass, butter_sos, default_numtaps, fir_taps
from ..ops.sosfilt import PADTYPES, _sosfiltfilt, check_longer_than_padding, default_padlen
from ..registry import PREPROCESSORS


@PREPROCESSORS.register("bandpass")
class BandPass(nn.Module):
    """Zero-phase Butterworth or FIR band-pass of ``(..., n_leads, n_samples)`` ECG.

    Parameters
    ----------
    fs : float
        Sampling rate, Hz.
    lowcut, highcut : float or None
        Band edges, Hz (``None``: high-/low-pass).
    filter_type : {"butter", "fir"}
        Butterworth (``method`` ``"iir"`` or ``"fft"``) or Hamming-window FIR
        (``scipy.signal.firwin`` applied by ``filtfilt``), as torch_ecg.
    filter_order : int, optional
        Butterworth: order of each pass (default 4). FIR: number of taps, default
        ``int(0.2 * fs)``; made odd, as torch_ecg (through BioSPPy) does, so
        ``filter_order=100`` gives 101 taps.
    method : {"iir", "fft"}
        Butterworth method, see :func:`fastecg.ops.bandpass`; ignored for FIR.

    Notes
    -----
    Butterworth coefficients are designed once here and kept as buffers, so ``forward``
    (``iir``) is a single custom op; FIR goes through the functional form, plain torch
    convolutions. Both trace with ``torch.compile(module, fullgraph=True)``.
    """

    def __init__(self, fs: float, lowcut: Optional[float] = 0.5,
                 highcut: Optional[float] = 45.0, filter_type: str = "butter",
                 filter_order: Optional[int] = None, method: str = "iir", backend: str = "auto"):
        super().__init__()
        if filter_type not in ("butter", "fir"):
            raise ValueError(f"filter_type {filter_type!r} is not supported; use 'butter' or "
                             "'fir'")
        self.fs, self.lowcut, self.highcut = float(fs), lowcut, highcut
        self.filter_type, self.method, self.backend = filter_type, method, backend
        if filter_type == "fir":
            self.order = default_numtaps(self.fs, filter_order)
            fir_taps(self.order, lowcut, highcut, self.fs)  # validates now, not at first call
            self.method = "fir"
            return
        self.order = filter_order or 4
        sos = butter_sos(self.order, lowcut, highcut, self.fs)
        from scipy.signal import sosfilt_zi

        self.register_buffer("sos", torch.tensor(sos, dtype=torch.float64), persistent=False)
        self.register_buffer("zi", torch.tensor(sosfilt_zi(sos), dtype=torch.float64),
                             persistent=False)
        self.padlen = default_padlen(sos)

    def forward(self, sig: Tensor) -> Tensor:
        if self.method == "fir":
            return bandpass(sig, self.fs, self.lowcut, self.highcut, method="fir",
                            numtaps=self.order)
        if self.method != "iir":
            return bandpass(sig, self.fs, self.lowcut, self.highcut, self.order, self.method)
        check_signal(sig, "BandPass")
        check_longer_than_padding(sig, self.padlen)
        out = _sosfiltfilt(sig.to(kernel_dtype(sig)), self.sos, self.zi, self.padlen,
                           PADTYPES["odd"], self.backend)
        return out.to(sig.dtype)

    def extra_repr(self) -> str:
        return (f"fs={self.fs:g}, lowcut={self.lowcut}, highcut={self.highcut}, "
                f"filter_type={self.filter_type}, order={self.order}")
