"""Zero-phase band-pass (and low-/high-pass) filtering of ECG: Butterworth (IIR or its
FFT response) and windowed-sinc FIR. The methods live in sosfilt.py (``iir``),
zero_phase_fft.py (``fft``) and fir.py (``fir``); the designs in _design.py."""

from __future__ import annotations

import math
from typing import Optional

from torch import Tensor

from .._spec import (butter_sos, check_band, check_fs, check_positive_int, default_numtaps,
                     fir_taps)
from ._design import butter_design, butter_padlen, extension_length
from ._dispatch import check_backend_name
from ._validate import check_signal
from .fir import fir_bandpass
from .sosfilt import filtfilt_design
from .zero_phase_fft import fft_filter

__all__ = ["bandpass", "butter_sos", "fir_taps", "default_numtaps"]

BANDPASS_METHODS = ("iir", "fft", "fir")


def bandpass(x: Tensor, fs: float, lowcut: Optional[float] = 0.5,
             highcut: Optional[float] = 45.0, order: int = 4, method: str = "iir",
             backend: str = "auto", padtype: Optional[str] = "odd",
             padlen: Optional[int] = None, numtaps: Optional[int] = None) -> Tensor:
    """Zero-phase band-pass filter along the last axis (Butterworth or FIR).

    Parameters
    ----------
    x : Tensor, shape (..., n_samples)
        ECG, usually in mV; float32 or float64 (half types computed in float32),
        CPU or CUDA, any strides.
    fs : float
        Sampling rate in Hz.
    lowcut, highcut : float or None, optional
        Band edges in Hz, ``0 < lowcut < highcut < fs / 2``. ``lowcut=None`` gives a
        low-pass, ``highcut=None`` a high-pass.
    order : int, optional
        Butterworth order of each pass (methods ``iir`` and ``fft``); forward-backward
        doubles it. Ignored by ``fir``.
    method : {"iir", "fft", "fir"}, optional
        ``"iir"``: ``scipy.signal.sosfiltfilt(butter(order, [lowcut, highcut],
        btype="bandpass", fs=fs, output="sos"), x, padtype=padtype, padlen=padlen)``.
        ``"fft"``: the same filter's zero-phase response :math:`|H(f)|^2` applied by
        rFFT after reflect padding (at least ``fs / (32 * lowcut)`` samples a side, at
        most ``n - 1``, widened to a fast transform length: 60 for 5000 samples at 500 Hz);
        equal to ``"iir"`` in the interior (beyond ``5 / lowcut`` seconds from the edges,
        where the IIR's edge transients have decayed: measured 2e-6 of the peak on
        synthetic ECG, up to 1.3e-5 on 30 s CinC records). Its float32 transforms
        round relative to the row's largest value, DC offset included, which the
        filter then removes: at an offset 100 times the ECG's peak the interior error
        grows to ~2e-5 of the peak, at 1e4 times to ~2e-3 (``"iir"`` stays ~4e-8);
        remove such an offset first, or filter in float64. **It is a different filter
        from** ``sosfiltfilt`` **near the record's ends**: reflect padding instead of
        SciPy's odd extension and initial conditions. A 10 s record at 0.5 Hz has no such
        interior, and the two differ by up to ~100% of a lead's peak there (measured).
        Use it where the edges do not matter (long records, Holter, augmentation inside
        training) or to be compared with an FFT mask; use ``"iir"`` to reproduce SciPy.
        ``"fir"``: ``scipy.signal.filtfilt(firwin(numtaps, [lowcut, highcut],
        pass_zero=False, fs=fs), 1, x, padtype=padtype, padlen=padlen)`` (high-pass:
        ``firwin(numtaps, lowcut, pass_zero=False)``; low-pass: ``pass_zero=True``).
    backend : {"auto", "cuda", "triton", "cpu", "torch"}, optional
        Kernel of the ``iir`` method, or of the ``fft`` method (``"cpu"``: the C++ kernel,
        its own mixed-radix FFT vectorised across rows, two rows per complex transform,
        so a row's rounding depends on the row it shares one with: alone or in a batch
        it differs by up to ~4e-7 of the peak in float32 (~1e-15 in float64), and a
        NaN or Inf in its partner never reaches it; ``"torch"``: torch's FFTs, also
        what ``"auto"`` picks on a GPU; the two agree to rounding, ~1e-7 of the peak in
        float32). ``fir`` is plain torch ops: for it the name is checked, not used
        (no error for a backend that could not run).
    padtype, padlen : optional
        Edge handling of the ``iir`` and ``fir`` methods, as in SciPy (default: odd;
        27 samples for a 4th-order Butterworth band-pass, ``3 * numtaps`` for FIR).
        Checked but not used by ``fft``.
    numtaps : int, optional
        FIR length (``fir`` only); default torch_ecg's ``int(0.2 * fs)`` made odd
        (101 at 500 Hz). A high-pass needs an odd number.

    Returns
    -------
    Tensor
        Same shape, dtype and device as `x`; differentiable in `x`.

    Raises
    ------
    ValueError
        If a band edge lies outside ``(0, fs / 2)``, ``lowcut >= highcut``, `order` or
        `numtaps` is not a positive integer, a high-pass FIR has even `numtaps`, the
        method is unknown, or the signal is not longer than the padding (SciPy's rule).
    TypeError
        If `x` is not floating point.

    Notes
    -----
    ``iir``: float32 input keeps its filter state in float64, so the result is within
    1e-5 of the float64 SciPy result relative to the signal's peak (measured ~4e-8).
    ``fir``: the two passes are convolutions (SciPy's ``lfilter_zi`` initial conditions
    with a = 1 are a past equal to the first sample), accumulated in `x`'s dtype: direct
    ``conv1d`` up to 32 taps in float32 on rows up to 2**14 padded samples (traced: at
    any length), an FFT convolution otherwise: one transform a row up to 2**14 padded
    samples, longer rows by overlap-save in transforms of about ``8 * numtaps`` samples
    (the transforms' memory bounded whatever the length). Measured
    error vs SciPy's float64 ``filtfilt``, relative to the peak: up to 6e-7 in float32,
    2e-15 in float64 (random-walk signals, 11-2001 taps, fs 100-1000 Hz, up to 2e5
    samples). A NaN or Inf stays in its own row, but the FFT convolution spreads it over
    the whole row (over the blocks it reaches, a few times ``numtaps`` samples, on long
    rows), where SciPy's ``filtfilt`` (and the direct ``conv1d``) spread it over the
    taps' reach only.

    The filter is designed with SciPy once per (design, device) and cached. Under
    ``torch.compile(fullgraph=True)`` every method traces without breaks: the design is
    a custom op of the graph (SciPy runs, cached, when the graph runs), so `fs` and the
    band edges may change from call to call, or be symbolic under ``dynamic=True``, and
    the signal's length may change too.

    Examples
    --------
    >>> import torch
    >>> bandpass(torch.randn(8, 12, 5000), fs=500.0).shape
    torch.Size([8, 12, 5000])
    >>> bandpass(torch.randn(8, 12, 5000), fs=500.0, method="fir", numtaps=101).shape
    torch.Size([8, 12, 5000])
    """
    check_signal(x, "bandpass")
    if method not in BANDPASS_METHODS:
        raise ValueError(f"bandpass: unknown method {method!r}; expected one of "
                         f"{BANDPASS_METHODS}")
    fs = check_fs(fs, "bandpass")
    if method == "fir":
        check_backend_name(backend)  # checked although unused: a typo should not pass silently
        return fir_bandpass(x, fs, lowcut, highcut, numtaps, padtype, padlen)
    check_positive_int("order", order)
    check_band(lowcut, highcut, fs)
    if method == "fft":
        n = x.shape[-1]
        if n < 2:
            raise ValueError(f"bandpass: fft method needs at least 2 samples, got {n}")
        # The reflection's length hardly matters (it is not the IIR's edge handling
        # either way): on synthetic ECG, 8 to 1000 samples give the same error against
        # the IIR at every distance from the edges. At least 1/32 period of the lowest
        # edge (at most n - 1); fft_filter widens it to the next fast transform length.
        extension_length(x, padtype, padlen, 0)  # checked although unused
        return fft_filter(x, (order, lowcut, highcut, fs),
                          math.ceil(fs / (32 * (lowcut or highcut))), backend)
    sos, zi = butter_design(order, lowcut, highcut, fs, str(x.device))
    return filtfilt_design(x, sos, zi, butter_padlen(order, lowcut, highcut), padtype, padlen,
                           backend)
