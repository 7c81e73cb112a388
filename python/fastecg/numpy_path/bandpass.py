"""NumPy/SciPy zero-phase band-pass with the semantics of :func:`fastecg.ops.bandpass`
(methods ``iir`` and ``fir``), and the filter designs both paths share (no torch).

Calls SciPy the fast way: one ``sosfiltfilt`` / ``filtfilt`` on the whole array along
the last axis.
"""

from __future__ import annotations

import functools
from typing import Optional

import numpy as np

__all__ = ["bandpass", "BandPass", "butter_sos", "fir_taps", "default_numtaps"]

_METHODS = ("iir", "fir")


def _check_band(lowcut: Optional[float], highcut: Optional[float], fs: float) -> None:
    if not fs > 0:
        raise ValueError(f"fs must be positive, got {fs}")
    nyq = fs / 2
    for name, edge in (("lowcut", lowcut), ("highcut", highcut)):
        if edge is not None and not 0 < edge < nyq:
            raise ValueError(f"{name}={edge} Hz must lie inside (0, fs/2) = (0, {nyq:g}) Hz")
    if lowcut is None and highcut is None:
        raise ValueError("at least one of lowcut and highcut must be given")
    if lowcut is not None and highcut is not None and lowcut >= highcut:
        raise ValueError(f"lowcut={lowcut} Hz must be below highcut={highcut} Hz")


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _checked_then_cached(check):
    """Caches a design per arguments, and runs `check` on every call (a cache hit for
    ``order=4.0``, equal to 4, must not skip the check that rejects it)."""
    def wrap(design):
        cached = functools.lru_cache(maxsize=128)(design)

        @functools.wraps(design)
        def checked(*args):
            check(*args)
            return cached(*args)
        return checked
    return wrap


def _check_butter(order, lowcut, highcut, fs) -> None:
    _check_positive_int("order", order)
    _check_band(lowcut, highcut, fs)


@_checked_then_cached(_check_butter)
def butter_sos(order: int, lowcut: Optional[float], highcut: Optional[float],
               fs: float) -> np.ndarray:
    """Butterworth SOS from SciPy, cached per (order, band, fs); validates the arguments."""
    from scipy.signal import butter

    if lowcut is not None and highcut is not None:
        return butter(order, [lowcut, highcut], btype="bandpass", fs=fs, output="sos")
    if lowcut is not None:
        return butter(order, lowcut, btype="highpass", fs=fs, output="sos")
    return butter(order, highcut, btype="lowpass", fs=fs, output="sos")


def _check_fir(numtaps: int, lowcut: Optional[float], highcut: Optional[float],
               fs: float) -> None:
    _check_positive_int("numtaps", numtaps)
    _check_band(lowcut, highcut, fs)
    if highcut is None and numtaps % 2 == 0:
        raise ValueError(f"numtaps={numtaps}: a high-pass FIR filter needs an odd number of "
                         "taps (an even-length linear-phase filter is zero at Nyquist)")


@_checked_then_cached(_check_fir)
def fir_taps(numtaps: int, lowcut: Optional[float], highcut: Optional[float],
             fs: float) -> np.ndarray:
    """``scipy.signal.firwin`` taps (Hamming window), cached per (numtaps, band, fs):
    band-pass ``firwin(numtaps, [lowcut, highcut], pass_zero=False, fs=fs)``, high-pass
    (``highcut=None``, odd `numtaps`) ``pass_zero=False``, low-pass ``pass_zero=True``."""
    from scipy.signal import firwin

    if lowcut is not None and highcut is not None:
        return firwin(numtaps, [lowcut, highcut], pass_zero=False, fs=fs)
    if lowcut is not None:
        return firwin(numtaps, lowcut, pass_zero=False, fs=fs)
    return firwin(numtaps, highcut, pass_zero=True, fs=fs)


def default_numtaps(fs: float, filter_order: Optional[int] = None) -> int:
    """torch_ecg's FIR length (through BioSPPy): `filter_order` taps, default
    ``int(0.2 * fs)``, made odd (101 at 500 Hz; ``filter_order=100`` gives 101)."""
    if filter_order is not None:
        _check_positive_int("filter_order", filter_order)
    n = int(0.2 * fs) if filter_order is None else filter_order
    return n + 1 - n % 2  # odd


def butter_order(filter_order: Optional[int]) -> int:
    """The modules' Butterworth order: `filter_order`, default 4 (0 is an error, not
    the default)."""
    if filter_order is None:
        return 4
    _check_positive_int("filter_order", filter_order)
    return filter_order


def bandpass(sig: np.ndarray, fs: float, lowcut: Optional[float] = 0.5,
             highcut: Optional[float] = 45.0, order: int = 4, method: str = "iir",
             padtype: Optional[str] = "odd", padlen: Optional[int] = None,
             numtaps: Optional[int] = None) -> np.ndarray:
    """``scipy.signal.sosfiltfilt(butter_sos(...), sig)`` (``iir``) or
    ``filtfilt(fir_taps(...), 1, sig)`` (``fir``) along the last axis, with SciPy's
    padding. Same shape as `sig`; float64 unless `sig` is float32 (rounded back)."""
    from scipy.signal import filtfilt, sosfiltfilt

    if method not in _METHODS:
        raise ValueError(f"bandpass: unknown method {method!r}; expected one of {_METHODS}")
    sig = np.asarray(sig)
    if not np.issubdtype(sig.dtype, np.floating):
        raise TypeError(f"bandpass: expected a floating-point array, got {sig.dtype}")
    if method == "fir":
        taps = fir_taps(default_numtaps(fs) if numtaps is None else numtaps, lowcut, highcut,
                        float(fs))
        out = filtfilt(taps, 1.0, sig, axis=-1, padtype=padtype, padlen=padlen)
    else:
        sos = butter_sos(order, lowcut, highcut, float(fs))
        out = sosfiltfilt(sos, sig, axis=-1, padtype=padtype, padlen=padlen)
    return out.astype(sig.dtype, copy=False)


class BandPass:
    """Callable twin of :class:`fastecg.preprocessors.BandPass` for NumPy arrays."""

    def __init__(self, fs: float, lowcut: Optional[float] = 0.5,
                 highcut: Optional[float] = 45.0, filter_type: str = "butter",
                 filter_order: Optional[int] = None):
        if filter_type not in ("butter", "fir"):
            raise ValueError(f"filter_type {filter_type!r} is not supported; use 'butter' or "
                             "'fir'")
        self.fs, self.lowcut, self.highcut = float(fs), lowcut, highcut
        self.method = "fir" if filter_type == "fir" else "iir"
        if filter_type == "fir":
            self.order = default_numtaps(self.fs, filter_order)
            fir_taps(self.order, lowcut, highcut, self.fs)  # validates now
        else:
            self.order = butter_order(filter_order)
            butter_sos(self.order, lowcut, highcut, self.fs)

    def __call__(self, sig: np.ndarray) -> np.ndarray:
        if self.method == "fir":
            return bandpass(sig, self.fs, self.lowcut, self.highcut, method="fir",
                            numtaps=self.order)
        return bandpass(sig, self.fs, self.lowcut, self.highcut, self.order)
