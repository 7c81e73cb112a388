"""NumPy/SciPy zero-phase band-pass with the semantics of :func:`fastecg.ops.bandpass`
(methods ``iir`` and ``fir``); the filter designs both paths share are in
:mod:`fastecg._spec` (no torch).

Calls SciPy the fast way: one ``sosfiltfilt`` / ``filtfilt`` on the whole array along
the last axis.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .._spec import butter_order, butter_sos, check_fs, default_numtaps, fir_taps
from ._validate import check_array

__all__ = ["bandpass", "BandPass", "butter_sos", "fir_taps", "default_numtaps"]

_METHODS = ("iir", "fir")


def bandpass(sig: np.ndarray, fs: float, lowcut: Optional[float] = 0.5,
             highcut: Optional[float] = 45.0, order: int = 4, method: str = "iir",
             padtype: Optional[str] = "odd", padlen: Optional[int] = None,
             numtaps: Optional[int] = None) -> np.ndarray:
    """``scipy.signal.sosfiltfilt(butter_sos(...), sig)`` (``iir``) or
    ``filtfilt(fir_taps(...), 1, sig)`` (``fir``) along the last axis, with SciPy's
    padding. Same shape and dtype as `sig` (SciPy computes in float64, the coefficients'
    dtype, for any `sig`; the result is rounded back).

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import signal
    >>> from fastecg.numpy_path import bandpass
    >>> x = np.random.default_rng(0).standard_normal((2, 12, 1000))
    >>> sos = signal.butter(4, [0.5, 45.0], btype="bandpass", fs=500.0, output="sos")
    >>> np.array_equal(bandpass(x, 500.0), signal.sosfiltfilt(sos, x))
    True
    """
    from scipy.signal import filtfilt, sosfiltfilt

    if method not in _METHODS:
        raise ValueError(f"bandpass: unknown method {method!r}; expected one of {_METHODS}")
    sig = check_array(sig, "bandpass")
    fs = check_fs(fs, "bandpass")
    if method == "fir":
        taps = fir_taps(default_numtaps(fs) if numtaps is None else numtaps, lowcut, highcut,
                        float(fs))
        if sig.size == 0:  # (filtfilt refuses an empty batch; its length rule still holds)
            edge = (3 * len(taps) if padlen is None else padlen) if padtype is not None else 0
            if sig.shape[-1] <= edge:
                raise ValueError("The length of the input vector x must be greater than "
                                 f"padlen, which is {edge}.")
            out = sig.copy()
        else:
            out = filtfilt(taps, 1.0, sig, axis=-1, padtype=padtype, padlen=padlen)
    else:
        sos = butter_sos(order, lowcut, highcut, float(fs))
        out = sosfiltfilt(sos, sig, axis=-1, padtype=padtype, padlen=padlen)
    return out.astype(sig.dtype, copy=False)


class BandPass:
    """Callable twin of :class:`fastecg.preprocessors.BandPass` for NumPy arrays.

    Examples
    --------
    >>> import numpy as np
    >>> from fastecg.numpy_path import BandPass
    >>> y = BandPass(fs=500.0, lowcut=0.5, highcut=40.0)(np.zeros((12, 1000), np.float32))
    >>> y.shape, y.dtype
    ((12, 1000), dtype('float32'))
    """

    def __init__(self, fs: float, lowcut: Optional[float] = 0.5,
                 highcut: Optional[float] = 45.0, filter_type: str = "butter",
                 filter_order: Optional[int] = None):
        if filter_type not in ("butter", "fir"):
            raise ValueError(f"filter_type {filter_type!r} is not supported; use 'butter' or "
                             "'fir'")
        self.fs, self.lowcut, self.highcut = check_fs(fs, "BandPass"), lowcut, highcut
        self.method = "fir" if filter_type == "fir" else "iir"
        if filter_type == "fir":
            self.order = default_numtaps(self.fs, filter_order)
            fir_taps(self.order, lowcut, highcut, self.fs)  # validates now
        else:
            self.order = butter_order(filter_order, self.fs)
            butter_sos(self.order, lowcut, highcut, self.fs)

    def __call__(self, sig: np.ndarray) -> np.ndarray:
        if self.method == "fir":
            return bandpass(sig, self.fs, self.lowcut, self.highcut, method="fir",
                            numtaps=self.order)
        return bandpass(sig, self.fs, self.lowcut, self.highcut, self.order)
