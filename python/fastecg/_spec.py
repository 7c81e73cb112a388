"""What the ops and the NumPy path share, without torch: filter designs, argument checks,
window limits. Both sides import it; it imports neither."""

from __future__ import annotations

import functools
import math
import numbers
from typing import Optional

import numpy as np

__all__ = ["check_fs", "check_band", "check_positive_int", "check_fir", "butter_sos",
           "fir_taps", "default_numtaps", "butter_order", "window_samples", "MAX_WINDOW"]


def check_fs(fs, what: str) -> float:
    """`fs` as a float: a real number (not a string or a bool), finite and positive.
    Every entry point, torch or NumPy, function or module, takes the same rule."""
    if isinstance(fs, bool) or not isinstance(fs, numbers.Real):
        raise ValueError(f"{what}: fs must be a number of Hz, got {fs!r} "
                         f"({type(fs).__name__})")
    if not (math.isfinite(fs) and fs > 0):
        raise ValueError(f"{what}: fs must be a finite positive number of Hz, got {fs!r}")
    return float(fs)


def check_band(lowcut: Optional[float], highcut: Optional[float], fs: float) -> None:
    fs = check_fs(fs, "filter design")
    nyq = fs / 2
    for name, edge in (("lowcut", lowcut), ("highcut", highcut)):
        if edge is not None and (isinstance(edge, bool) or not isinstance(edge, numbers.Real)):
            raise ValueError(f"{name} must be a number of Hz or None, got {edge!r}")
        if edge is not None and not 0 < edge < nyq:
            raise ValueError(f"{name}={edge} Hz must lie inside (0, fs/2) = (0, {nyq:g}) Hz")
    if lowcut is None and highcut is None:
        raise ValueError("at least one of lowcut and highcut must be given")
    if lowcut is not None and highcut is not None and lowcut >= highcut:
        raise ValueError(f"lowcut={lowcut} Hz must be below highcut={highcut} Hz")


def check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
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
    check_positive_int("order", order)
    check_band(lowcut, highcut, fs)


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


def check_fir(numtaps: int, lowcut: Optional[float], highcut: Optional[float],
               fs: float) -> None:
    check_positive_int("numtaps", numtaps)
    check_band(lowcut, highcut, fs)
    if highcut is None and numtaps % 2 == 0:
        raise ValueError(f"numtaps={numtaps}: a high-pass FIR filter needs an odd number of "
                         "taps (an even-length linear-phase filter is zero at Nyquist)")


@_checked_then_cached(check_fir)
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
        check_positive_int("filter_order", filter_order)
    n = int(0.2 * fs) if filter_order is None else filter_order
    return n + 1 - n % 2  # odd


def butter_order(filter_order: Optional[int]) -> int:
    """The modules' Butterworth order: `filter_order`, default 4 (0 is an error, not
    the default)."""
    if filter_order is None:
        return 4
    check_positive_int("filter_order", filter_order)
    return filter_order


MAX_WINDOW = 2**30 - 1  # the kernels' window limit (positions fit 32-bit ranks)


def window_samples(window_s: float, fs: float) -> int:
    """Odd window length in samples for ``window_s`` seconds at ``fs`` Hz:
    ``2 * (int(window_s * fs) // 2) + 1`` (torch_ecg's rule)."""
    if isinstance(window_s, bool) or not isinstance(window_s, numbers.Real) or not window_s > 0:
        raise ValueError(f"window must be positive (seconds), got {window_s}")
    fs = check_fs(fs, "window")
    samples = window_s * fs
    if not samples < MAX_WINDOW:  # also inf and NaN
        raise ValueError(f"window of {window_s} s at {fs} Hz is {samples:g} samples; at most "
                         f"{MAX_WINDOW - 1} are supported")
    return 2 * (int(samples) // 2) + 1
