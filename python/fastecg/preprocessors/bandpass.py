"""Band-pass module (torch_ecg's ``BandPass`` keywords)."""

from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

from .._spec import butter_order, check_fs
from ..ops._dispatch import check_backend_name
from ..ops.bandpass import bandpass, butter_sos, default_numtaps, fir_taps
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
        Butterworth method, see :func:`fastecg.ops.bandpass`; checked but ignored for FIR.
    backend : {"auto", "cuda", "triton", "cpu", "torch"}
        Kernel of the ``iir`` or ``fft`` method (``fft`` has ``cpu`` and ``torch``
        kernels); checked when built.

    Notes
    -----
    The design is checked here, so bad arguments fail at construction; ``forward`` is
    :func:`fastecg.ops.bandpass`, which designs the filter once per (design, device) and
    caches it. The module holds no coefficient buffers: ``.float()``, ``.half()`` or
    ``.to(device)`` on a model containing it leave the filter exact (float64
    coefficients whatever the module's dtype). Traces with
    ``torch.compile(module, fullgraph=True)``.
    """

    def __init__(self, fs: float, lowcut: Optional[float] = 0.5,
                 highcut: Optional[float] = 45.0, filter_type: str = "butter",
                 filter_order: Optional[int] = None, method: str = "iir", backend: str = "auto"):
        super().__init__()
        if filter_type not in ("butter", "fir"):
            raise ValueError(f"filter_type {filter_type!r} is not supported; use 'butter' or "
                             "'fir'")
        if method not in ("iir", "fft"):
            raise ValueError(f"method {method!r} is not a Butterworth method; use 'iir' or "
                             "'fft' (filter_type='fir' for a FIR filter)")
        check_backend_name(backend)
        self.fs, self.lowcut, self.highcut = check_fs(fs, "BandPass"), lowcut, highcut
        self.filter_type, self.method, self.backend = filter_type, method, backend
        if filter_type == "fir":
            self.order = default_numtaps(self.fs, filter_order)
            fir_taps(self.order, lowcut, highcut, self.fs)  # validates now, not at first call
            self.method = "fir"
            return
        self.order = butter_order(filter_order)
        butter_sos(self.order, lowcut, highcut, self.fs)

    def forward(self, sig: Tensor) -> Tensor:
        if self.method == "fir":
            return bandpass(sig, self.fs, self.lowcut, self.highcut, method="fir",
                            numtaps=self.order)
        return bandpass(sig, self.fs, self.lowcut, self.highcut, self.order, self.method,
                        self.backend)

    def extra_repr(self) -> str:
        return (f"fs={self.fs:g}, lowcut={self.lowcut}, highcut={self.highcut}, "
                f"filter_type={self.filter_type}, order={self.order}")
