"""The preprocessing steps without torch: their arguments, checks, filter designs and
what each does to the signal's description (rate, length, leads).

``fastecg.preprocessors`` (torch modules) and ``fastecg.numpy_path`` (NumPy/SciPy) build
their steps on these classes, as the ops and the NumPy path share ``fastecg._spec``: one
check, one design and one error message for both paths. Every check that needs the
sampling rate or the signal runs in :meth:`Step.infer`, which a pipeline calls for all
its steps before it filters anything.
"""

from __future__ import annotations

import functools
import math
import numbers
from fractions import Fraction
from typing import Any, NamedTuple, Optional, Sequence, Union

import numpy as np

from .._spec import (NORMALIZE_EPS, BoundaryMode, butter_order, butter_sos, check_bool,
                     check_ddof_eps, check_fs, check_lead_names, check_positive_int,
                     default_numtaps, fir_taps, resample_factors, resample_window_key,
                     window_samples)
from ..registry import did_you_mean
from .config import MissingInfo, SignalInfo, Step, check_backend_name

__all__ = [
    "BandPassSpec", "BaselineRemoveSpec", "NormalizeSpec", "SOSFilterSpec", "ResampleSpec",
    "CropOrPadSpec", "LeadSelectSpec", "design_sos", "sos_padlen", "resample_plan",
    "decimate_sos",
    "ResamplePlan", "SOS_DESIGNS", "RESAMPLE_METHODS", "CROP_MODES", "PAD_MODES",
    "NORMALIZE_METHODS", "BASELINE_METHODS", "BASELINE_MODES", "EPS",
]

NORMALIZE_METHODS = ("z-score", "min-max", "naive")
EPS = NORMALIZE_EPS
BASELINE_METHODS = ("median", "mean")
BASELINE_MODES = tuple(mode.name.lower() for mode in BoundaryMode)
SOS_DESIGNS = ("butter", "cheby1", "cheby2", "ellip", "bessel", "iirnotch", "iirpeak", "sos")
SOS_BTYPES = ("lowpass", "highpass", "bandpass", "bandstop")
RESAMPLE_METHODS = ("poly", "fft", "linear", "decimate")
CROP_MODES = ("center", "left", "random")
PAD_MODES = ("zero", "edge")


def _is_number(value: Any) -> bool:
    """A finite real number (NumPy's included), not a bool: what a step's numeric
    argument must be, or its config could not be saved (JSON has no inf or NaN)."""
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and \
        math.isfinite(value)


def _check_choice(value: Any, choices: Sequence[str], what: str) -> str:
    """`value` if in `choices`; `what` is ``"Owner: argument"``."""
    if value not in choices:
        owner, _, arg = what.rpartition(": ")
        raise ValueError(f"{owner}: unknown {arg} {value!r}{did_you_mean(value, choices)}; "
                         f"expected one of {', '.join(map(repr, choices))}")
    return value


def sos_padlen(sos: np.ndarray) -> int:
    """SciPy's default ``sosfiltfilt`` padding for `sos`: ``3 * (2 * n_sections + 1 -
    min(#(b2 == 0), #(a2 == 0)))``."""
    sos = np.atleast_2d(sos)
    zeros = min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    return 3 * (2 * sos.shape[0] + 1 - zeros)


def _check_length(info: SignalInfo, needed: int, what: str) -> None:
    """SciPy's filtfilt rule, checked before any work: more samples than the padding."""
    if info.n_samples is not None and info.n_samples <= needed:
        raise ValueError(f"{what} pads {needed} samples at each end and needs a longer "
                         f"signal, got {info.n_samples} samples")


# ---- band-pass, baseline, normalisation (fastecg.ops) ---------------------------------------

class BandPassSpec(Step):
    """Zero-phase Butterworth or FIR band-pass (torch_ecg's ``BandPass`` arguments).

    Parameters
    ----------
    fs : float, optional
        Sampling rate in Hz; None (default) takes the pipeline's.
    lowcut, highcut : float or None
        Band edges in Hz (``None``: high-/low-pass).
    filter_type : {"butter", "fir"}
        Butterworth (``method`` ``"iir"`` or ``"fft"``) or Hamming-window FIR
        (``scipy.signal.firwin`` applied by ``filtfilt``), as torch_ecg.
    filter_order : int, optional
        Butterworth: order of each pass, default torch_ecg's ``round(0.01 * fs)`` (5 at
        500 Hz). FIR: number of taps, default ``int(0.2 * fs)``, made odd as torch_ecg
        (through BioSPPy) does.
    method : {"iir", "fft"}
        Butterworth method, see :func:`fastecg.ops.bandpass`; ignored for FIR.
    backend : {"auto", "cuda", "triton", "cpu", "torch"}
        Kernel choice (torch path only).
    inplace : bool
        Write the result into the caller's tensor (torch path; torch_ecg's keyword,
        default False here: the caller's tensor is left alone).
    """

    def __init__(self, fs: Optional[float] = None, lowcut: Optional[float] = 0.5,
                 highcut: Optional[float] = 45.0, filter_type: str = "butter",
                 filter_order: Optional[int] = None, method: str = "iir",
                 backend: str = "auto", inplace: bool = False):
        super().__init__()
        self.inplace = check_bool(inplace, "BandPass: inplace")
        _check_choice(filter_type, ("butter", "fir"), "BandPass: filter_type")
        if method not in ("iir", "fft"):
            raise ValueError(f"BandPass: method {method!r} is not a Butterworth method; use "
                             "'iir' or 'fft' (filter_type='fir' for a FIR filter)")
        check_backend_name(backend, "BandPass")
        if filter_order is not None:
            check_positive_int("filter_order", filter_order)
        for name, edge in (("lowcut", lowcut), ("highcut", highcut)):
            # (the band itself is checked against fs/2 where the rate is known)
            if edge is not None and not _is_number(edge):
                raise ValueError(f"BandPass: {name} must be a finite number of Hz or None, got "
                                 f"{edge!r}")
        self.fs = None if fs is None else check_fs(fs, "BandPass")
        self.lowcut, self.highcut = lowcut, highcut
        # (A NumPy integer as a Python int, as Resample's siglen.)
        self.filter_order = None if filter_order is None else int(filter_order)
        self.filter_type, self.backend = filter_type, backend
        self.method = "fir" if filter_type == "fir" else method
        # The length each rate's design needs, on the instance: a pipeline's check at a
        # known rate (or the first call) fills it, and a traced call (torch.compile)
        # then finds it in a dict instead of tracing SciPy's design.
        self._needs: dict = {}
        if self.fs is not None:
            self.design(self.fs)  # fails now, not at the first batch

    def order_at(self, fs: float) -> int:
        """Butterworth order, or FIR taps (whose default depends on fs)."""
        if self.method == "fir":
            return default_numtaps(fs, self.filter_order)
        return butter_order(self.filter_order, fs)

    def design(self, fs: float) -> np.ndarray:
        """The filter at `fs`: SOS (Butterworth) or taps (FIR); ValueError for a band
        outside ``(0, fs / 2)``."""
        if self.method == "fir":
            return fir_taps(self.order_at(fs), self.lowcut, self.highcut, fs)
        return butter_sos(self.order_at(fs), self.lowcut, self.highcut, fs)

    def infer(self, info: SignalInfo) -> SignalInfo:
        fs = self.step_fs(info)
        if fs not in self._needs:
            try:
                design = self.design(fs)
            except ValueError as err:
                raise ValueError(f"BandPass at fs={fs:g} Hz: {err}") from None
            self._needs[fs] = 3 * design.shape[0] if self.method == "fir" else \
                sos_padlen(design) if self.method == "iir" else 1
        if self.method == "fir":
            _check_length(info, self._needs[fs], "BandPass (FIR)")
        elif self.method == "iir":
            _check_length(info, self._needs[fs], "BandPass")
        elif info.n_samples is not None and info.n_samples < 2:
            raise ValueError(f"BandPass: method 'fft' needs at least 2 samples, got "
                             f"{info.n_samples}")
        return info


class BaselineRemoveSpec(Step):
    """Baseline-wander removal ``x - f(f(x, window1), window2)`` (torch_ecg's
    ``BaselineRemove`` arguments), or ``x - f(x, window1)`` with ``window2=None``.

    Parameters
    ----------
    fs : float, optional
        Sampling rate in Hz; None (default) takes the pipeline's.
    window1, window2 : float or None
        Window lengths in seconds (0.2 s and 0.6 s), ``2 * (int(w * fs) // 2) + 1``
        samples. ``window2=None`` (``median`` only): one median stage, so
        ``mode="constant"`` is ``x - scipy.signal.medfilt(x, window1 samples)``.
    method : {"median", "mean"}
        See :func:`fastecg.ops.remove_baseline`.
    inplace : bool
        Write the result into the input when the module is called on its own
        (torch_ecg's default is True; here False). A pipeline never writes into its
        input: it runs the step out of place either way (the result needs its own
        memory while it is computed, so in place would save nothing there).
    backend : str
        Kernel choice (torch path only).
    mode : {"nearest", "constant", "reflect", "mirror", "wrap"}, optional
        Extension beyond the ends (median: default ``"nearest"``; mean: ``"mirror"``).
    """

    def __init__(self, fs: Optional[float] = None, window1: float = 0.2,
                 window2: Optional[float] = 0.6, method: str = "median", inplace: bool = False,
                 backend: str = "auto", mode: Optional[str] = None):
        super().__init__()
        _check_choice(method, BASELINE_METHODS, "BaselineRemove: method")
        check_backend_name(backend, "BaselineRemove")
        if window2 is None and method != "median":
            raise ValueError("BaselineRemove: window2=None (one stage) is supported for "
                             "method='median' only")
        for name, window in (("window1", window1), ("window2", window2)):
            if window is None and name == "window2":
                continue
            if not _is_number(window) or not window > 0:
                raise ValueError(f"BaselineRemove: {name} must be a positive, finite number "
                                 f"of seconds, got {window!r}")
        if method == "mean":
            if mode not in (None, "mirror"):
                raise ValueError(f"BaselineRemove: method='mean' pads by reflection "
                                 f"(mode='mirror'), got mode={mode!r}")
            mode = "mirror"
        else:
            mode = "nearest" if mode is None else _check_choice(mode, BASELINE_MODES,
                                                                 "BaselineRemove: mode")
        self.fs = None if fs is None else check_fs(fs, "BaselineRemove")
        self.window1, self.window2, self.method = window1, window2, method
        self.inplace = check_bool(inplace, "BaselineRemove: inplace")
        self.backend, self.mode = backend, mode
        if self.fs is not None:
            self.windows(self.fs)

    def windows(self, fs: float) -> list[int]:
        """Window lengths in samples at `fs` (one or two)."""
        return [window_samples(w, fs) for w in (self.window1, self.window2) if w is not None]

    def infer(self, info: SignalInfo) -> SignalInfo:
        self.windows(self.step_fs(info))
        return info


class NormalizeSpec(Step):
    """Normalisation, see :func:`fastecg.ops.normalize` (torch_ecg's ``Normalize``
    arguments, plus ``ddof`` and ``eps``). `mean` and `std` may be numbers, one value per
    lead (a 1-D sequence, or tensor on the torch path), or arrays that broadcast to
    ``x.shape[:-1] + (1,)``. ``inplace`` writes the result into the caller's tensor
    (torch path; torch_ecg's keyword, default False here)."""

    def __init__(self, method: str = "z-score", mean: Any = 0.0, std: Any = 1.0,
                 per_channel: bool = False, backend: str = "auto", ddof: int = 1,
                 eps: float = EPS, inplace: bool = False):
        super().__init__()
        self.inplace = check_bool(inplace, "normalize: inplace")
        per_channel = check_bool(per_channel, "normalize: per_channel")
        _check_choice(method, NORMALIZE_METHODS, "normalize: method")
        check_backend_name(backend, "normalize")
        check_ddof_eps(ddof, eps)
        for name, value in (("mean", mean), ("std", std)):
            try:
                values = np.asarray(_plain(value))
            except ValueError:  # ragged nesting
                values = np.asarray(None)
            if values.dtype.kind not in "iuf" or not np.isfinite(values).all():
                raise ValueError(f"normalize: {name} must be a finite number or finite numbers "
                                 f"(one per lead), got {value!r}")
        if not np.all(np.asarray(_plain(std), dtype=np.float64) > 0):
            raise ValueError(f"normalize: std must be positive, got {std!r}")
        self.method, self.mean, self.std = method, mean, std
        self.per_channel, self.backend, self.ddof, self.eps = per_channel, backend, ddof, eps

    def infer(self, info: SignalInfo) -> SignalInfo:
        for name, value in (("mean", self.mean), ("std", self.std)):
            # (a tensor's or array's shape as it is: tolist would copy a device tensor to
            # the host on every call, and does not trace)
            shape = tuple(value.shape) if hasattr(value, "shape") else np.shape(value)
            if len(shape) == 1 and info.n_leads is not None and shape[0] not in (1, info.n_leads):
                raise ValueError(f"normalize: {name} has {shape[0]} values (one per lead), but "
                                 f"the signal reaching it has {info.n_leads} leads")
        return info


def _plain(value: Any) -> Any:
    """A tensor's values without importing torch (anything with ``tolist``)."""
    return value.tolist() if hasattr(value, "tolist") else value


# ---- any SOS filter ---------------------------------------------------------------------

def _freq_tuple(freq: Any, what: str) -> Union[float, tuple]:
    freq = _plain(freq)  # a NumPy array or tensor as a list, a 0-d one as a number
    if _is_number(freq):
        return float(freq)
    if isinstance(freq, (list, tuple)) and len(freq) == 2 and all(map(_is_number, freq)):
        return (float(freq[0]), float(freq[1]))
    raise ValueError(f"{what}: freq must be a finite number of Hz or a pair [low, high], got "
                     f"{freq!r}")


@functools.lru_cache(maxsize=256)
def _designed(design: str, fs: float, freq, order, btype, q, rp, rs) -> tuple:
    from scipy import signal

    if design in ("iirnotch", "iirpeak"):
        b, a = getattr(signal, design)(freq, q, fs=fs)
        sos = signal.tf2sos(b, a)
    elif design == "bessel":
        sos = signal.bessel(order, freq, btype=btype, fs=fs, output="sos")
    else:
        ripples = {"butter": (), "cheby1": (rp,), "cheby2": (rs,), "ellip": (rp, rs)}[design]
        sos = getattr(signal, design)(order, *ripples, freq, btype=btype, fs=fs, output="sos")
    return tuple(map(tuple, np.asarray(sos, dtype=np.float64).tolist()))


def design_sos(design: str, fs: Optional[float], freq=None, order=None, btype="bandpass",
               q=None, rp=None, rs=None, sos=None) -> tuple:
    """SOS of a SciPy design at `fs`, as a tuple of 6-tuples (hashable, so fastecg.ops
    caches it per filter); cached. ``design="sos"`` returns `sos` itself, checked.
    ValueError for a frequency outside ``(0, fs / 2)``."""
    if design == "sos":
        return sos
    freqs = freq if isinstance(freq, tuple) else (freq,)
    for f in freqs:
        if not 0 < f < fs / 2:
            what = {"iirnotch": "notch frequency", "iirpeak": "peak frequency"}.get(
                design, f"{design} cut-off")
            raise ValueError(f"{what} {f:g} Hz must lie inside (0, fs/2) = (0, {fs / 2:g}) Hz")
    if isinstance(freq, tuple) and not freq[0] < freq[1]:
        raise ValueError(f"{design}: band edges must be increasing, got {list(freq)}")
    return _designed(design, fs, freq, order, btype, q, rp, rs)


class SOSFilterSpec(Step):
    """Any IIR filter as second-order sections, designed once by SciPy from a spec, run
    zero-phase (``scipy.signal.sosfiltfilt``) or causal (``sosfilt``).

    Parameters
    ----------
    design : {"butter", "cheby1", "cheby2", "ellip", "bessel", "iirnotch", "iirpeak", "sos"}
        ``scipy.signal.<design>(order, [rp], [rs], freq, btype=btype, fs=fs,
        output="sos")``; ``iirnotch``/``iirpeak`` are ``tf2sos(*<design>(freq, q,
        fs=fs))``; ``"sos"`` takes the coefficients in `sos`.
    freq : float or [float, float]
        Cut-off(s), or the notch/peak frequency, in Hz; inside ``(0, fs / 2)`` at the
        rate the step runs at (checked after any resampling before it).
    order : int
        Filter order (not for iirnotch/iirpeak/sos).
    btype : {"lowpass", "highpass", "bandpass", "bandstop"}
        Band type of the order-based designs.
    q : float
        Quality factor of iirnotch/iirpeak (``freq / bandwidth``).
    rp, rs : float
        Passband ripple / stopband attenuation in dB (cheby1, ellip / cheby2, ellip).
    sos : array_like, shape (n_sections, 6)
        Coefficients for ``design="sos"`` (``sos[:, 3] == 1``); they hold for one rate
        only, so the step then needs no fs.
    zero_phase : bool
        ``sosfiltfilt`` (default) or causal ``sosfilt`` from zero state.
    padtype, padlen :
        ``sosfiltfilt``'s edge extension (default odd, SciPy's length).
    fs : float, optional
        Sampling rate; None takes the pipeline's.
    backend : str
        Kernel choice (torch path only).

    Examples
    --------
    A 50 Hz notch is one config line: ``{"name": "sos_filter", "design": "iirnotch",
    "freq": 50, "q": 30}``.
    """

    def __init__(self, design: str = "butter", freq: Any = None, order: Optional[int] = None,
                 btype: str = "bandpass", q: Optional[float] = None,
                 rp: Optional[float] = None, rs: Optional[float] = None, sos: Any = None,
                 zero_phase: bool = True, padtype: Optional[str] = "odd",
                 padlen: Optional[int] = None, fs: Optional[float] = None,
                 backend: str = "auto"):
        super().__init__()
        what = f"SOSFilter({design!r})" if isinstance(design, str) else "SOSFilter"
        _check_choice(design, SOS_DESIGNS, "SOSFilter: design")
        check_backend_name(backend, "SOSFilter")
        if padtype not in ("odd", "even", "constant", None):
            raise ValueError(f"{what}: padtype must be 'odd', 'even', 'constant' or None, got "
                             f"{padtype!r}")
        integral = isinstance(padlen, numbers.Integral) and not isinstance(padlen, bool)
        if padlen is not None and not (integral and padlen >= 0):
            raise ValueError(f"{what}: padlen must be a non-negative int or None, got {padlen!r}")
        self._freq = None
        if design == "sos":
            self._sos = _checked_sos(sos)
            for name, value in (("freq", freq), ("order", order), ("q", q), ("rp", rp),
                                ("rs", rs), ("fs", fs)):
                if value is not None:
                    raise ValueError(f"{what}: {name} does not apply to given coefficients "
                                     "(they hold for one sampling rate)")
        else:
            if sos is not None:
                raise ValueError(f"{what}: sos is only for design='sos'")
            self._freq = _freq_tuple(freq, what)
            for name, value in (("q", q), ("rp", rp), ("rs", rs)):
                # (also where the design ignores it: its config must still save)
                if value is not None and not _is_number(value):
                    raise ValueError(f"{what}: {name} must be a finite number or None, got "
                                     f"{value!r}")
            if design in ("iirnotch", "iirpeak"):
                if not _is_number(q) or not q > 0:
                    raise ValueError(f"{what}: q must be a positive number, got {q!r}")
                if isinstance(self._freq, tuple):
                    raise ValueError(f"{what}: freq is one frequency, got {freq!r}")
            else:
                check_positive_int("order", order)
                _check_choice(btype, SOS_BTYPES, f"{what}: btype")
                pair = btype in ("bandpass", "bandstop")
                if pair != isinstance(self._freq, tuple):
                    raise ValueError(f"{what}: btype {btype!r} takes "
                                     f"{'[low, high]' if pair else 'one frequency'}, got freq="
                                     f"{freq!r}")
                for name, value in (("rp", rp), ("rs", rs)):
                    needed = (name == "rp" and design in ("cheby1", "ellip")) or \
                             (name == "rs" and design in ("cheby2", "ellip"))
                    if needed and (not _is_number(value) or not value > 0):
                        raise ValueError(f"{what}: {name} must be a positive number of dB, got "
                                         f"{value!r}")
        if isinstance(order, numbers.Integral):  # (a NumPy integer as BandPass's)
            order = int(order)
        padlen = None if padlen is None else int(padlen)
        zero_phase = check_bool(zero_phase, f"{what}: zero_phase")
        self.design, self.freq, self.order, self.btype = design, freq, order, btype
        self.q, self.rp, self.rs, self.sos = q, rp, rs, sos
        self.zero_phase, self.padtype, self.padlen, self.backend = (zero_phase, padtype,
                                                                    padlen, backend)
        self.fs = None if fs is None else check_fs(fs, what)
        # Designs by rate, on the instance: a traced forward (torch.compile) finds its SOS
        # in a dict instead of tracing into SciPy (designed here when fs is given, else
        # by the first call or the pipeline's check at that rate).
        self._by_fs: dict = {}
        if self.fs is not None:
            self.sos_at(self.fs)

    def sos_at(self, fs: Optional[float]) -> tuple:
        """The SOS at `fs` (tuple of 6-tuples, designed once per rate)."""
        if self.design == "sos":
            return self._sos
        if fs in self._by_fs:
            return self._by_fs[fs]
        try:
            sos = design_sos(self.design, fs, self._freq, self.order, self.btype, self.q,
                             self.rp, self.rs)
        except ValueError as err:
            raise ValueError(f"SOSFilter({self.design!r}) at fs={fs:g} Hz: {err}") from None
        self._by_fs[fs] = sos
        return sos

    def infer(self, info: SignalInfo) -> SignalInfo:
        fs = None if self.design == "sos" else self.step_fs(info)
        sos = self.sos_at(fs)
        if self.zero_phase and self.padtype is not None:
            if self.padlen is None and ("pad", fs) not in self._by_fs:  # (as sos_at's)
                self._by_fs["pad", fs] = sos_padlen(np.asarray(sos))
            pad = self._by_fs["pad", fs] if self.padlen is None else self.padlen
            _check_length(info, pad, f"SOSFilter({self.design!r})")
        return info


def _checked_sos(sos: Any) -> tuple:
    try:
        arr = np.atleast_2d(np.asarray(_plain(sos), dtype=np.float64))
    except (TypeError, ValueError):
        raise ValueError(f"SOSFilter: sos must be numbers of shape (n_sections, 6), got "
                         f"{sos!r}") from None
    if arr.ndim != 2 or arr.shape[1] != 6 or arr.shape[0] == 0:
        raise ValueError(f"SOSFilter: sos must have shape (n_sections, 6), got {arr.shape}")
    if not (arr[:, 3] == 1).all():
        raise ValueError("SOSFilter: sos[:, 3] should be all ones")
    if not np.isfinite(arr).all():
        raise ValueError("SOSFilter: sos has non-finite coefficients")
    return tuple(map(tuple, arr.tolist()))


# ---- resampling --------------------------------------------------------------------------

class ResamplePlan(NamedTuple):
    """One resampling: the reduced ratio ``up / down``, the output length (None if the
    input length is unknown) and rate (None if the input rate is unknown)."""

    up: int
    down: int
    n_out: Optional[int]
    fs_out: Optional[float]


def resample_plan(method: str, n: Optional[int], fs_in: Optional[float],
                  dst_fs: Optional[float], siglen: Optional[int]) -> ResamplePlan:
    """Output length and rate of one resampling (SciPy's lengths: ``resample_poly``
    ``ceil(n * up / down)``, ``decimate`` ``ceil(n / q)``; ``fft`` and ``linear``
    ``int(n * dst_fs / fs)``, as ST-MEM, HuBERT-ECG and fairseq-signals compute it).
    ``poly`` and ``decimate`` need the rates' ratio in small integers
    (:func:`fastecg._spec.resample_factors`, fastecg.ops.resample's rule; decimate an
    integer factor); ValueError otherwise."""
    if siglen is not None:
        if n is None:
            return ResamplePlan(0, 0, siglen, None)
        ratio = Fraction(siglen, n)
        fs_out = None if fs_in is None else fs_in * siglen / n
        return ResamplePlan(ratio.numerator, ratio.denominator, siglen, fs_out)
    if method in ("poly", "decimate"):
        try:
            up, down = resample_factors(None, None, fs_in, dst_fs)
        except ValueError as err:
            raise ValueError(f"Resample(method={method!r}): {err}") from None
        if method == "decimate" and up != 1:
            raise ValueError(f"Resample(method='decimate'): {fs_in:g} Hz -> {dst_fs:g} Hz is "
                             "not an integer decimation factor")
    else:  # exact: a float's binary fraction, so int(n * dst_fs / fs) is never off by one
        ratio = Fraction(dst_fs) / Fraction(fs_in)
        up, down = ratio.numerator, ratio.denominator
    if n is None:
        n_out = None
    elif method == "decimate":
        n_out = -(-n // down)
    elif method == "poly":
        n_out = -(-n * up // down)
    else:
        n_out = n * up // down
    return ResamplePlan(up, down, n_out, float(dst_fs))


@functools.lru_cache(maxsize=32)
def decimate_sos(q: int) -> tuple:
    """``scipy.signal.decimate``'s default filter for factor `q`: Chebyshev I, order 8,
    0.05 dB ripple, cut-off 0.8 / q of Nyquist, as SOS (float64)."""
    from scipy.signal import cheby1

    sos = cheby1(8, 0.05, 0.8 / q, output="sos")
    return tuple(map(tuple, np.asarray(sos, dtype=np.float64).tolist()))


class ResampleSpec(Step):
    """Change the sampling rate (torch_ecg's ``Resample`` arguments, plus `method`).

    Parameters
    ----------
    fs : float, optional
        Input rate in Hz; None (default) takes the pipeline's.
    dst_fs : float, optional
        Output rate in Hz (the pipeline's fs from here on).
    siglen : int, optional
        Output length in samples instead of `dst_fs`.
    method : {"poly", "fft", "linear", "decimate"}
        ``"poly"``: ``scipy.signal.resample_poly`` (Kaiser-windowed polyphase FIR,
        :func:`fastecg.ops.resample`). ``"fft"``: ``scipy.signal.resample`` (Fourier
        method: periodic, ideal low-pass; ST-MEM, HuBERT-ECG). ``"linear"``: linear
        interpolation with the first and last samples aligned (torch_ecg's
        ``F.interpolate(align_corners=True)``, fairseq-signals' ``interp1d``; aliases).
        ``"decimate"``: ``scipy.signal.decimate(x, q)`` for an integer factor q
        (Chebyshev I order 8, zero phase, then every q-th sample; HuBERT-ECG).
    window : str, tuple, float or array_like
        Window of ``"poly"``'s filter (``("kaiser", 5.0)``, SciPy's default; a bare
        number is a Kaiser beta), or the filter's taps themselves (``resample_poly``'s
        ``window=taps``): a non-empty 1-D list, tuple, NumPy array or tensor of finite
        numbers, kept as a float64 copy and saved in the config as a list of floats (a
        tuple whose first entry is a string is a named window). Checked whatever the
        method, as every config saves it.
    backend : str
        Kernel choice of ``"poly"`` and ``"decimate"`` (torch path only).
    inplace : bool
        torch_ecg's keyword, accepted for its configs: a resampled signal has another
        length, so it is always a new tensor (as in torch_ecg).

    A rate equal to the input's (or `siglen` equal to its length) returns the input
    unchanged, whatever the method (``decimate`` by 1 included: no filter).
    """

    def __init__(self, fs: Optional[float] = None, dst_fs: Optional[float] = None,
                 siglen: Optional[int] = None, method: str = "poly",
                 window: Any = ("kaiser", 5.0), backend: str = "auto",
                 inplace: bool = False):
        super().__init__()
        self.inplace = check_bool(inplace, "Resample: inplace")
        _check_choice(method, RESAMPLE_METHODS, "Resample: method")
        check_backend_name(backend, "Resample")
        if (dst_fs is None) == (siglen is None):
            raise ValueError("Resample: give exactly one of dst_fs (Hz) and siglen (samples)")
        if siglen is not None:
            check_positive_int("siglen", siglen)
            if method == "decimate":
                raise ValueError("Resample: method='decimate' takes dst_fs, not siglen")
        self.fs = None if fs is None else check_fs(fs, "Resample")
        self.dst_fs = None if dst_fs is None else check_fs(dst_fs, "Resample: dst_fs")
        # siglen as a Python int: scipy.signal.resample computes a float32 signal in
        # float64 for a NumPy integer length, which a config (JSON) would not reproduce.
        self.siglen = None if siglen is None else int(siglen)
        self.method, self.backend = method, backend
        # Checked whatever the method: only "poly" uses it, but every config saves it.
        self.window = _resample_window(window)
        if isinstance(self.window, np.ndarray):
            # The config saves the checked float64 taps, not the caller's object: a list
            # changed after the step is built, or integer taps, would save other values.
            self._init_arguments["window"] = self.window.tolist()
        if self.fs is not None and self.dst_fs is not None:
            resample_plan(method, 1, self.fs, self.dst_fs, None)

    def plan(self, info: SignalInfo) -> ResamplePlan:
        if self.dst_fs is not None or (self.fs is not None and info.fs is not None):
            fs_in = self.step_fs(info)  # needed, or both given (they must agree)
        else:
            fs_in = self.fs if self.fs is not None else info.fs
        if info.n_samples == 0:
            raise ValueError("Resample: cannot resample an empty signal")
        return resample_plan(self.method, info.n_samples, fs_in, self.dst_fs, self.siglen)

    def infer(self, info: SignalInfo) -> SignalInfo:
        plan = self.plan(info)
        return info._replace(fs=plan.fs_out, n_samples=plan.n_out)


def _resample_window(window: Any) -> Union[str, float, tuple, np.ndarray]:
    """`window` checked when the step is built, not when the op first runs: a named
    window SciPy knows (``"hann"``, ``("kaiser", 5.0)``, a Kaiser beta; a config stores
    the tuple as a list) as given, or the filter's taps as a new 1-D float64 array, which
    both ``scipy.signal.resample_poly`` and :func:`fastecg.ops.resample` take as taps
    (they read a tuple as a named window)."""
    if isinstance(window, (list, tuple)) and window and isinstance(window[0], str):
        window = tuple(window)
    elif not isinstance(window, (str, numbers.Number)):  # (a number: a Kaiser beta)
        return _resample_taps(window)
    from scipy.signal import get_window

    name, params = resample_window_key(window)
    try:
        get_window((name, *params) if params else name, 3)
    except ValueError as err:
        raise ValueError(f"Resample: window {window!r}: {err}") from None
    return window


def _resample_taps(window: Any) -> np.ndarray:
    """Taps given as a list, tuple, array or tensor, as a new float64 array; ValueError
    naming `window` unless non-empty, 1-D and finite."""
    if not isinstance(window, (list, tuple, np.ndarray)) and not hasattr(window, "tolist"):
        raise ValueError("Resample: window must be a name, a (name, *finite numbers) tuple, "
                         "a finite Kaiser beta, or the filter's taps as a 1-D list, tuple, "
                         f"array or tensor, got {window!r}")
    # tolist(): a tensor on any device, requiring grad or not (the taps are constants).
    values = window.tolist() if hasattr(window, "tolist") else window
    try:
        taps = np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"Resample: window taps must be real numbers, got {window!r} "
                         f"({err})") from None
    if taps.ndim != 1 or taps.size == 0:
        raise ValueError(f"Resample: window taps must be a non-empty 1-D array, got shape "
                         f"{taps.shape}")
    if not np.isfinite(taps).all():
        raise ValueError("Resample: window taps must be finite (a config cannot save inf "
                         "or NaN, and they would make every output NaN)")
    return taps


# ---- length and leads ------------------------------------------------------------------------

class CropOrPadSpec(Step):
    """Crop or pad to a fixed length along time.

    Parameters
    ----------
    length : int, optional
        Output length in samples.
    duration_s : float, optional
        Output length in seconds instead (``round(duration_s * fs)`` samples at the
        pipeline's rate).
    mode : {"center", "left", "random"}
        Which part a crop keeps, and where padding puts the signal: the middle (extra
        sample on the right), the start, or a random offset per record (all leads of a
        record together).
    pad : {"zero", "edge"} or None
        Padding of a shorter signal: zeros, or the edge values repeated; None forbids
        padding (a shorter signal is a ValueError).
    fs : float, optional
        Rate for `duration_s`; None takes the pipeline's.
    """

    floating = False  # moves samples only: any dtype

    def __init__(self, length: Optional[int] = None, duration_s: Optional[float] = None,
                 mode: str = "center", pad: Optional[str] = "zero",
                 fs: Optional[float] = None):
        super().__init__()
        if (length is None) == (duration_s is None):
            raise ValueError("CropOrPad: give exactly one of length (samples) and duration_s")
        if length is not None:
            check_positive_int("length", length)
        elif not _is_number(duration_s) or not 0 < duration_s < math.inf:
            raise ValueError(f"CropOrPad: duration_s must be a positive number of seconds, got "
                             f"{duration_s!r}")
        _check_choice(mode, CROP_MODES, "CropOrPad: mode")
        if pad is not None:
            _check_choice(pad, PAD_MODES, "CropOrPad: pad")
        self.length = None if length is None else int(length)  # (as Resample's siglen)
        self.duration_s, self.mode, self.pad = duration_s, mode, pad
        self.fs = None if fs is None else check_fs(fs, "CropOrPad")

    def target(self, info: SignalInfo) -> int:
        if self.length is not None:
            return self.length
        n = round(self.duration_s * self.step_fs(info))
        if n < 1:
            raise ValueError(f"CropOrPad: duration_s={self.duration_s} s is less than a sample")
        return n

    def infer(self, info: SignalInfo) -> SignalInfo:
        length = self.target(info)
        if info.n_samples is not None and info.n_samples < length and self.pad is None:
            raise ValueError(f"CropOrPad: the signal has {info.n_samples} samples, fewer than "
                             f"length={length}, and padding is disabled (pad=None)")
        return info._replace(n_samples=length)

    def offsets(self, n: int, length: int) -> int:
        """Start of the kept part in the input (crop, ``n > length``) or of the signal in
        the output (pad, ``n < length``), for modes other than ``random``."""
        return 0 if self.mode == "left" else abs(n - length) // 2


class LeadSelectSpec(Step):
    """Keep the named leads, in the given order.

    Parameters
    ----------
    leads : sequence of str
        Leads to keep, in output order (``["I", "II", "V1"]``). Names match
        case-insensitively (``"AVR"`` finds ``"aVR"``).
    input_leads : sequence of str, optional
        The input's leads in order; None (default) takes the pipeline's ``lead_names``.

    A lead missing from the record is a ValueError naming it.
    """

    floating = False  # moves samples only: any dtype

    def __init__(self, leads: Sequence[str], input_leads: Optional[Sequence[str]] = None):
        super().__init__()
        self.leads = check_lead_names(leads, "LeadSelect: leads")
        self.input_leads = None if input_leads is None else \
            check_lead_names(input_leads, "LeadSelect: input_leads")
        if self.input_leads is not None:
            self.indices(self.input_leads)

    def indices(self, available: Sequence[str]) -> list[int]:
        available = list(available)
        folded = [name.lower() for name in available]
        out = []
        for lead in self.leads:
            if available.count(lead) > 1:  # which of them is meant cannot be told
                raise ValueError(f"LeadSelect: lead {lead!r} is in the record's leads "
                                 f"{available} more than once")
            if lead in available:
                out.append(available.index(lead))
            elif folded.count(lead.lower()) == 1:
                out.append(folded.index(lead.lower()))
            else:
                raise ValueError(f"LeadSelect: lead {lead!r} is not in the record's leads "
                                 f"{list(available)}{did_you_mean(lead, available)}")
        return out

    def available(self, info: SignalInfo) -> tuple:
        if self.input_leads is not None and info.lead_names is not None and \
                tuple(info.lead_names) != self.input_leads:
            raise ValueError(f"LeadSelect was built for input leads {list(self.input_leads)}, "
                             f"but the record's leads are {list(info.lead_names)}")
        names = self.input_leads if self.input_leads is not None else info.lead_names
        if names is None:
            raise MissingInfo("LeadSelect needs the record's lead names: pass lead_names to the "
                             "pipeline (PreprocManager(..., lead_names=[...]) or "
                             "pm(sig, fs, lead_names=[...])) or input_leads=[...] to the step")
        if info.n_leads is not None and info.n_leads != len(names):
            raise ValueError(f"LeadSelect: the record has {info.n_leads} leads but "
                             f"{len(names)} lead names {list(names)}")
        return tuple(names)

    def infer(self, info: SignalInfo) -> SignalInfo:
        self.indices(self.available(info))
        return info._replace(n_leads=len(self.leads), lead_names=self.leads)
