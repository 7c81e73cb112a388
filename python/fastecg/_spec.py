"""What the ops and the NumPy path share, without torch: filter designs, argument checks,
window limits. Both sides import it; it imports neither."""

from __future__ import annotations

import enum
import functools
import math
import numbers
from typing import Optional

import numpy as np

__all__ = ["NormalizeMethod", "PadType", "BoundaryMode", "MaskMode", "NORMALIZE_EPS",
           "check_fs", "check_band", "check_positive_int", "check_fir", "butter_sos",
           "fir_taps", "default_numtaps", "butter_order", "window_samples", "MAX_WINDOW",
           "LeadNamesTypeError", "check_lead_names", "check_int", "check_bool"]


# The integer codes the kernels take, one definition each; csrc/common/codes.h mirrors
# them (tests/test_codes.py checks that the two agree).
class NormalizeMethod(enum.IntEnum):
    Z_SCORE = 0
    MIN_MAX = 1
    NAIVE = 2


class PadType(enum.IntEnum):
    NONE = 0
    ODD = 1
    EVEN = 2
    CONSTANT = 3


class BoundaryMode(enum.IntEnum):
    REFLECT = 0
    MIRROR = 1
    NEAREST = 2
    CONSTANT = 3
    WRAP = 4


class MaskMode(enum.IntEnum):
    """patch_mask's token layout: ``temporal`` (all leads of a time patch), ``lead_temporal``
    (one lead's patch, masked per lead), ``lead`` (one lead's patch, whole leads masked)."""
    TEMPORAL = 0
    LEAD_TEMPORAL = 1
    LEAD = 2


# normalize's default eps, added to the spread as torch_ecg does so that a constant
# record stays finite.
NORMALIZE_EPS = 1e-7


def check_ddof_eps(ddof, eps) -> None:
    """normalize's `ddof` (a non-negative int) and `eps` (a finite number >= 0), checked
    alike on the torch and NumPy paths (ValueError)."""
    if isinstance(ddof, bool) or not isinstance(ddof, numbers.Integral) or ddof < 0:
        raise ValueError(f"normalize: ddof must be a non-negative int, got {ddof!r}")
    # (comparisons, not math.isfinite: under torch.compile(dynamic=True) eps may be a
    # symbolic float)
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0 <= eps < math.inf:
        raise ValueError(f"normalize: eps must be a finite number >= 0, got {eps!r}")


def check_fs(fs, what: str) -> float:
    """`fs` as a float: a real number (not a string or a bool), finite and positive.
    Every entry point, torch or NumPy, function or module, takes the same rule."""
    if isinstance(fs, bool) or not isinstance(fs, numbers.Real):
        raise ValueError(f"{what}: fs must be a number of Hz, got {fs!r} "
                         f"({type(fs).__name__})")
    if not 0 < fs < math.inf:  # comparisons, not math.isfinite: fs may be symbolic under compile
        raise ValueError(f"{what}: fs must be positive and finite (Hz), got {fs!r}")
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


def check_int(value, what: str, low: int, high: Optional[int] = None) -> int:
    """`value` (any integer, NumPy's included, not a bool) as an int in [low, high], else
    ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low or (
            high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{what} must be an integer {bounds}, got {value!r}")
    return int(value)


def check_bool(value, what: str) -> bool:
    """`value` (a bool or a NumPy bool) as a bool, else ValueError naming it.

    A flag given as ``"no"``, ``0`` or ``nan`` is a mistake, not a truth value:
    ``bool("no")`` is True.

    Examples
    --------
    >>> check_bool(np.True_, "BandPass: inplace")
    True
    >>> check_bool("no", "BandPass: inplace")
    Traceback (most recent call last):
    ...
    ValueError: BandPass: inplace must be True or False, got 'no' (str)
    """
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{what} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


def check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


class LeadNamesTypeError(TypeError, ValueError):
    """Lead names that are not a sequence of str (a bare string, a set, a number, an item
    that is not a str).

    A ``TypeError``, as the kind of mistake it is, and a ``ValueError``, as the entry
    points raised for it before: ``except TypeError`` and ``except ValueError`` both
    catch it.
    """


def check_lead_names(names, what: str, *, distinct: bool = True) -> tuple:
    """`names` (lead names in order) as a tuple of str, checked alike at every entry
    point that takes them.

    Parameters
    ----------
    names : sequence of str
        A list, tuple, NumPy array of str, pandas Index or other ordered iterable.
    what : str
        The argument as errors name it (``"mae_1d: lead_names"``).
    distinct : bool
        The names give a lead order (a model's input, the leads to select): at least
        one, none empty, none twice. False where they describe a record as it was
        read, whose names are the file's.

    Returns
    -------
    tuple of str

    Raises
    ------
    LeadNamesTypeError
        A bare string or bytes (``list("IIV1")`` would be four leads ``I, I, V, 1``),
        a set (no order), something not iterable, or an item that is not a str.
    ValueError
        With `distinct`: no names, an empty name, or a name given twice.

    Examples
    --------
    >>> check_lead_names(["I", "II", "V1"], "lead_names")
    ('I', 'II', 'V1')
    >>> check_lead_names("IIV1", "lead_names")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fastecg._spec.LeadNamesTypeError: lead_names must be ... not the string 'IIV1'
    """
    kind = "distinct lead names" if distinct else "lead names"
    if isinstance(names, (str, bytes, bytearray)):
        raise LeadNamesTypeError(f"{what} must be a sequence of {kind} such as ['I', 'II'], "
                                 f"not the string {names!r}")
    if isinstance(names, (set, frozenset)):
        raise LeadNamesTypeError(f"{what} must be a sequence of {kind} in order, not a set "
                                 f"(which has none): {names!r}")
    try:
        out = tuple(names)
    except TypeError:  # not iterable (a number, None inside a config, a 0-d array)
        raise LeadNamesTypeError(f"{what} must be a sequence of {kind} such as ['I', 'II'], "
                                 f"got {type(names).__name__} {names!r}") from None
    bad = [n for n in out if not isinstance(n, str)]
    if bad:
        raise LeadNamesTypeError(f"{what} must be a sequence of {kind}, but holds "
                                 f"{bad[0]!r} ({type(bad[0]).__name__}): {list(out)!r}")
    out = tuple(str(n) for n in out)  # NumPy's str_ items as plain str, for configs
    if distinct:
        if not out or not all(out):
            raise ValueError(f"{what} must be a non-empty sequence of distinct lead names "
                             f"(none empty), got {list(out)!r}")
        twice = sorted({n for n in out if out.count(n) > 1}, key=out.index)
        if twice:
            raise ValueError(f"{what} names a lead twice ({', '.join(twice)}): it must be a "
                             f"sequence of distinct lead names, got {list(out)!r}")
    return out


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
    """Butterworth SOS from SciPy, cached per (order, band, fs); validates the arguments.

    Examples
    --------
    >>> from fastecg._spec import butter_sos
    >>> butter_sos(4, 0.5, 45.0, 500.0).shape        # 4 sections of (b0, b1, b2, a0, a1, a2)
    (4, 6)
    >>> butter_sos(4, 0.5, None, 500.0).shape        # high-pass
    (2, 6)
    """
    from scipy.signal import butter

    if lowcut is not None and highcut is not None:
        return butter(order, [lowcut, highcut], btype="bandpass", fs=fs, output="sos")
    if lowcut is not None:
        return butter(order, lowcut, btype="highpass", fs=fs, output="sos")
    return butter(order, highcut, btype="lowpass", fs=fs, output="sos")


def check_fir(numtaps: int, lowcut: Optional[float], highcut: Optional[float],
               fs: float) -> None:
    check_positive_int("numtaps", numtaps)
    if numtaps < 2:
        raise ValueError(f"numtaps={numtaps}: a FIR filter here needs at least 2 taps "
                         "(SciPy's filtfilt, the reference, takes no 1-tap filter)")
    check_band(lowcut, highcut, fs)
    if highcut is None and numtaps % 2 == 0:
        raise ValueError(f"numtaps={numtaps}: a high-pass FIR filter needs an odd number of "
                         "taps (an even-length linear-phase filter is zero at Nyquist)")


@_checked_then_cached(check_fir)
def fir_taps(numtaps: int, lowcut: Optional[float], highcut: Optional[float],
             fs: float) -> np.ndarray:
    """``scipy.signal.firwin`` taps (Hamming window), cached per (numtaps, band, fs):
    band-pass ``firwin(numtaps, [lowcut, highcut], pass_zero=False, fs=fs)``, high-pass
    (``highcut=None``, odd `numtaps`) ``pass_zero=False``, low-pass ``pass_zero=True``.

    Examples
    --------
    >>> from fastecg._spec import fir_taps
    >>> taps = fir_taps(101, 0.5, 45.0, 500.0)
    >>> taps.shape, round(float(abs(taps - taps[::-1]).max()), 12)   # linear phase: symmetric
    ((101,), 0.0)
    """
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


def butter_order(filter_order: Optional[int], fs: float) -> int:
    """The modules' Butterworth order: `filter_order`, default torch_ecg's
    ``round(0.01 * fs)`` (5 at 500 Hz; at least 1). 0 is an error, not the default."""
    if filter_order is None:
        return max(1, round(0.01 * fs))
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


# ---- resample: scipy.signal.resample_poly's factors and filter design -------------------

MAX_RESAMPLE_FACTOR = 1000  # largest up or down that fs_in/fs_out may reduce to


def resample_factors(up, down, fs_in=None, fs_out=None) -> tuple[int, int]:
    """(up, down) reduced by their gcd, from the integer factors or from two sampling rates.

    Rates: up/down is fs_out/fs_in in lowest terms, which must be a ratio of integers of
    at most MAX_RESAMPLE_FACTOR each (500 -> 360 Hz is 18/25; 1000/3 -> 360 Hz is 27/25,
    the float 1000/3 agreeing to 1e-9). Anything else (500 -> 359.9 Hz is 3599/5000)
    raises ValueError: the filter's length grows with max(up, down), so such ratios are
    better stated as factors, knowingly."""
    by_rate = fs_in is not None or fs_out is not None
    if by_rate and (up is not None or down is not None):
        raise ValueError("resample: give either up and down, or fs_in and fs_out, not both "
                         f"(got up={up!r}, down={down!r}, fs_in={fs_in!r}, fs_out={fs_out!r})")
    if by_rate:
        if fs_in is None or fs_out is None:
            raise ValueError(f"resample: fs_in and fs_out go together, got fs_in={fs_in!r}, "
                             f"fs_out={fs_out!r}")
        from fractions import Fraction

        rate_in, rate_out = check_fs(fs_in, "resample fs_in"), check_fs(fs_out, "resample fs_out")
        exact = Fraction(rate_out) / Fraction(rate_in)
        ratio = exact.limit_denominator(MAX_RESAMPLE_FACTOR)
        if ratio.numerator > MAX_RESAMPLE_FACTOR or abs(ratio - exact) > 1e-9 * exact:
            raise ValueError(
                f"resample: fs_out/fs_in = {rate_out:g}/{rate_in:g} is not a ratio of integers "
                f"up/down of at most {MAX_RESAMPLE_FACTOR} each; pass up and down instead")
        return ratio.numerator, ratio.denominator
    if up is None or down is None:
        raise ValueError(f"resample: give up and down (or fs_in and fs_out), got up={up!r}, "
                         f"down={down!r}")
    check_positive_int("up", up)
    check_positive_int("down", down)
    g = math.gcd(int(up), int(down))
    return int(up) // g, int(down) // g


def resample_window_key(window) -> tuple:
    """A window spec as ``scipy.signal.get_window`` takes it, made hashable: ``(name,
    params)``. A bare number is the Kaiser window's beta (get_window's rule)."""
    def finite(p) -> bool:  # (an infinite or NaN parameter designs NaN taps)
        return isinstance(p, numbers.Real) and not isinstance(p, bool) and math.isfinite(p)

    if isinstance(window, str):
        return window, ()
    if finite(window):
        return "kaiser", (float(window),)
    if isinstance(window, tuple) and window and isinstance(window[0], str) and all(
            map(finite, window[1:])):
        return window[0], tuple(float(p) for p in window[1:])
    raise ValueError(f"resample: window must be a name, a (name, *finite numbers) tuple, a "
                     f"finite Kaiser beta, or the filter's taps as an array, got {window!r}")


def resample_half_len(up: int, down: int) -> int:
    """resample_poly's default filter half-length: 10 * max(up, down) of the reduced
    factors (2 * half_len + 1 taps)."""
    return 10 * max(up, down)


@functools.lru_cache(maxsize=128)
def _resample_design(up: int, down: int, key: tuple) -> np.ndarray:
    from scipy.signal import firwin

    name, params = key
    try:
        h = firwin(2 * resample_half_len(up, down) + 1, 1.0 / max(up, down),
                   window=(name, *params) if params else name)
    except (ValueError, TypeError) as err:
        raise ValueError(f"resample: window {key!r} is not one SciPy can design: {err}") from None
    h.setflags(write=False)
    return h


def resample_taps(up: int, down: int, key: tuple) -> np.ndarray:
    """resample_poly's low-pass design for reduced (up, down) and a window key: ``firwin(2 *
    half_len + 1, 1 / max(up, down), window=window)`` in float64, before its gain of `up`
    (SciPy casts to the signal's dtype first, then multiplies). Cached, read-only."""
    check_positive_int("up", up)
    check_positive_int("down", down)
    return _resample_design(int(up), int(down), key)


def resample_length(n: int, up: int, down: int) -> int:
    """Output samples of resample_poly: ceil(n * up / down) for reduced up/down."""
    return -(-n * up // down)
