"""Zero-phase band-pass (and low-/high-pass) filtering of ECG: Butterworth (IIR or its
FFT response) and windowed-sinc FIR."""

from __future__ import annotations

import functools
import math
from typing import Optional

import torch
from torch import Tensor

from .._spec import (butter_sos, check_band, check_fir, check_fs, check_positive_int,
                     default_numtaps, fir_taps)
from ._validate import check_signal, kernel_dtype
from ._dispatch import check_backend_name, compiled_op, kernel_for, register_kernel
from .sosfilt import (PADTYPES, _extend, _sos_on_device, _zi_on_device, extension_length,
                      filtfilt_design)

__all__ = ["bandpass", "butter_sos", "fir_taps"]

BANDPASS_METHODS = ("iir", "fft", "fir")

# Direct float32 conv1d up to this many taps; longer filters, and float64, use an FFT
# convolution (CPU, (64, 12, 5000): conv1d 134 ms at 11 taps, 296 ms at 101; the FFT
# ~120-230 ms at any length up to a few hundred taps; float64 conv1d is 5-10x slower).
_DIRECT_MAX_TAPS = 32


# Filter designs come from SciPy, which torch.compile cannot trace. They are custom ops:
# in eager mode a call is a cache lookup per (design, device); under torch.compile the
# graph holds the op, so the band edges and fs may be symbolic (a compiled function
# called with another fs, or dynamic=True, does not need them as constants).
@torch.library.custom_op("fastecg::butter_design", mutates_args=())
def _butter_design(order: int, lowcut: Optional[float], highcut: Optional[float], fs: float,
                   device: str) -> tuple[Tensor, Tensor]:
    """(sos, sosfilt_zi(sos)) of ``butter_sos(order, lowcut, highcut, fs)``, float64 on
    `device`; copies of the cached tensors (an op's outputs must not alias)."""
    key = _butter_key(order, lowcut, highcut, fs)
    return _sos_on_device(key, device).clone(), _zi_on_device(key, device).clone()


@_butter_design.register_fake
def _(order, lowcut, highcut, fs, device):
    n_sections = butter_sections(order, lowcut, highcut)
    return (torch.empty(n_sections, 6, dtype=torch.float64, device=device),
            torch.empty(n_sections, 2, dtype=torch.float64, device=device))


def butter_sections(order: int, lowcut: Optional[float], highcut: Optional[float]) -> int:
    """Sections of SciPy's Butterworth design: a band-pass has 2 * order poles (order
    sections), a low- or high-pass order poles (an odd one alone in a section)."""
    return order if lowcut is not None and highcut is not None else (order + 1) // 2


def butter_padlen(order: int, lowcut: Optional[float], highcut: Optional[float]) -> int:
    """:func:`default_padlen` of the Butterworth design without designing it: only an
    odd-order low- or high-pass has a first-order section (b2 == a2 == 0)."""
    single_edge = lowcut is None or highcut is None
    return 3 * (2 * butter_sections(order, lowcut, highcut) + 1 - int(single_edge and order % 2))


@functools.lru_cache(maxsize=128)
def _butter_key(order, lowcut, highcut, fs) -> tuple:
    return tuple(map(tuple, butter_sos(order, lowcut, highcut, fs).tolist()))


@torch.library.custom_op("fastecg::fir_design", mutates_args=())
def _fir_design(numtaps: int, lowcut: Optional[float], highcut: Optional[float], fs: float,
                device: str, dtype: torch.dtype) -> Tensor:
    """``fir_taps(numtaps, lowcut, highcut, fs)`` in `dtype` on `device` (a copy of the
    cached tensor)."""
    return _fir_on_device(numtaps, lowcut, highcut, fs, device, dtype).clone()


@_fir_design.register_fake
def _(numtaps, lowcut, highcut, fs, device, dtype):
    return torch.empty(numtaps, dtype=dtype, device=device)


@functools.lru_cache(maxsize=128)
def _fir_on_device(numtaps, lowcut, highcut, fs, device, dtype) -> Tensor:
    return torch.tensor(fir_taps(numtaps, lowcut, highcut, fs), dtype=dtype, device=device)


def _zero_phase_gain_interleaved(sos: Tensor, n_fft: int, dtype: torch.dtype) -> Tensor:
    """|H|^2 at the rFFT bins, each bin's value twice, for the real and imaginary parts
    of the spectrum viewed as real numbers: a real product of contiguous rows vectorises
    (CPU, 768 x 2561 bins: 0.27 ms; times a complex gain 0.4-1.0 ms; a real gain
    broadcast over the last axis of view_as_real 4-6 ms)."""
    return _zero_phase_gain(sos, n_fft).repeat_interleave(2).to(dtype)


@functools.lru_cache(maxsize=128)
def _gain_on_device(sos_key: tuple, n_fft: int, device: str, dtype: torch.dtype) -> Tensor:
    # ~40 small ops per call otherwise (~0.5-1 ms on CPU, as much as a pass over a batch).
    sos = torch.tensor(sos_key, dtype=torch.float64, device=device)
    return _zero_phase_gain_interleaved(sos, n_fft, dtype)


def _zero_phase_gain(sos: Tensor, n_fft: int) -> Tensor:
    """|H|^2 of a float64 SOS filter at the rFFT bins of length `n_fft`, each section's
    numerator and denominator evaluated as complex numbers, ``p0 + p1 e^-iw + p2 e^-2iw``
    with ``cos w - 1 = -2 sin^2(w / 2)`` so that no sum of squares cancels: a pole close
    to z = 1 (a 0.005 Hz low cut-off) or to z = -1 (a cut-off near Nyquist) makes the
    denominator ~1e-17 at DC or Nyquist, which the expanded form
    ``p0^2 + p1^2 + p2^2 + 2 (p0 p1 + p1 p2) cos w + 2 p0 p2 cos 2w`` loses entirely (0/0).
    Real arithmetic, traceable, any length."""
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64, device=sos.device)
    w = k * (2 * math.pi / n_fft)
    sin1, sin2 = torch.sin(w), torch.sin(2 * w)
    # cos w - 1 and cos 2w - 1 without cancellation near w = 0; near w = pi the sections
    # are evaluated about z = -1 instead (cos w + 1 = 2 cos^2(w / 2)).
    near_dc = w <= math.pi / 2
    c1m = -2 * torch.sin(w / 2) ** 2           # cos w - 1
    c1p = 2 * torch.cos(w / 2) ** 2            # cos w + 1
    c2m = -2 * sin1 ** 2                        # cos 2w - 1

    def power(p0, p1, p2):
        p0, p1, p2 = p0[:, None], p1[:, None], p2[:, None]
        # about z = 1: (p0 + p1 + p2) + p1 (cos w - 1) + p2 (cos 2w - 1)
        re_dc = (p0 + p1 + p2) + p1 * c1m + p2 * c2m
        # about z = -1: (p0 - p1 + p2) + p1 (cos w + 1) + p2 (cos 2w - 1)
        re_ny = (p0 - p1 + p2) + p1 * c1p + p2 * c2m
        re = torch.where(near_dc, re_dc, re_ny)
        im = p1 * sin1 + p2 * sin2
        return re * re + im * im

    num = power(sos[:, 0], sos[:, 1], sos[:, 2])
    den = power(sos[:, 3], sos[:, 4], sos[:, 5])
    return (num / den).prod(0)


def _tail_index(n: int, pad: int, right: int, device: torch.device) -> Tensor:
    """Columns that follow each row, circularly, in its reflect-padded signal rotated
    left by ``pad`` (a rotation commutes with a circular convolution, and keeps the
    rows' copies aligned): its end reflected (`right` samples), then its start
    reflected (`pad`); any zeros between are left to the caller."""
    if torch.compiler.is_compiling():  # traced: the lengths may be symbolic
        return _build_tail_index(n, pad, right, device)
    return _cached_tail_index(n, pad, right, str(device))


def _build_tail_index(n, pad, right, device) -> Tensor:
    end = torch.arange(n - 2, n - 2 - right, -1, device=device)
    return torch.cat([end, torch.arange(pad, 0, -1, device=device)])


# Eager calls reuse the index (read only): three small ops less per call (on a GPU,
# three launches of a call that otherwise queues six).
_cached_tail_index = functools.lru_cache(maxsize=64)(_build_tail_index)


def _circulant(v: Tensor, gain: Tensor, n_fft: int) -> Tensor:
    """Circular convolution of rows with the zero-phase response `gain` (rFFT bins, each
    repeated for the real and imaginary parts); the rFFT zero-pads `v` to `n_fft`."""
    spectrum = torch.fft.rfft(v, n=n_fft)
    torch.view_as_real(spectrum).view(spectrum.shape[0], -1).mul_(gain)
    return torch.fft.irfft(spectrum, n=n_fft)


def _filter_rows(rows: Tensor, gain: Tensor, pad: int, right: int, n_fft: int) -> Tensor:
    # One gather and one concatenation build the padded rows: each op is a pass over
    # the batch and, on a busy machine, a wait for every thread (2 threads, 768 rows,
    # other load on the cores: 2.4 ms here, 7.5 ms for three slice copies and two flips).
    n = rows.shape[-1]
    tails = rows.index_select(1, _tail_index(n, pad, right, rows.device))
    parts = [rows, tails[:, :right]]
    if n_fft - n - pad > right:  # short rows: zeros between the reflections
        parts.append(rows.new_zeros(1, n_fft - n - pad - right).expand(rows.shape[0], -1))
    padded = torch.cat(parts + [tails[:, right:]], dim=-1)
    return _circulant(padded, gain, n_fft)[:, :n]


def _adjoint_rows(rows: Tensor, gain: Tensor, pad: int, right: int, n_fft: int) -> Tensor:
    """Transpose of :func:`_filter_rows`: C is symmetric, the padding's transpose adds
    the tail columns back onto the columns they copied."""
    n = rows.shape[-1]
    w = _circulant(rows, gain, n_fft)
    tails = torch.cat([w[:, n:n + right], w[:, n_fft - pad:]], dim=-1)
    return w[:, :n].index_add_(1, _tail_index(n, pad, right, rows.device), tails)


@register_kernel("zero_phase_fft", "torch")
def zero_phase_fft_reference(rows: Tensor, gain: Tensor, pad: int, right: int, n_fft: int,
                             adjoint: bool) -> Tensor:
    """crop(C pad(rows)) or its transpose with batch-wide torch FFTs (any device)."""
    fn = _adjoint_rows if adjoint else _filter_rows
    return fn(rows, gain, pad, right, n_fft).contiguous()


# The same filter with our own FFT, vectorised across rows (csrc/cpu/zero_phase_fft.cpp).
register_kernel("zero_phase_fft", "cpu", compiled_op("_zero_phase_fft_kernel"))


@torch.library.custom_op("fastecg::zero_phase_fft", mutates_args=())
def _zero_phase_fft(rows: Tensor, gain: Tensor, pad: int, right: int, n_fft: int,
                    adjoint: bool, backend: str) -> Tensor:
    """y = crop(C pad(rows)): reflect pad, circular convolution with |H|^2, crop; or its
    transpose (adjoint). C is symmetric (a real, even response), so the adjoint is
    pad^T C crop^T: the same transforms on the zero-extended rows, then the extension's
    columns added back onto the samples they copied."""
    return kernel_for("zero_phase_fft", rows, backend)(rows, gain, pad, right, n_fft, adjoint)


@_zero_phase_fft.register_fake
def _(rows, gain, pad, right, n_fft, adjoint, backend):
    return rows.new_empty(rows.shape)


def _zero_phase_fft_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[1])
    ctx.args = inputs[2:]


def _zero_phase_fft_backward(ctx, grad):
    (gain,) = ctx.saved_tensors
    pad, right, n_fft, adjoint, backend = ctx.args
    out = _zero_phase_fft(grad.contiguous(), gain, pad, right, n_fft, not adjoint, backend)
    return out, None, None, None, None, None, None


_zero_phase_fft.register_autograd(_zero_phase_fft_backward, setup_context=_zero_phase_fft_setup)


def _fft_filter(x: Tensor, sos: Tensor, key: Optional[tuple], min_pad: int,
                backend: str) -> Tensor:
    """|H(f)|^2 of the Butterworth filter `sos` (design `key`, None under torch.compile)
    applied by rFFT, reflect-
    padded by at least ``min_pad`` a side, as far as the transform length allows (a
    fast length, not the shortest: 5120 runs 20% faster than 5184 for ECG batches)."""
    n = x.shape[-1]
    if x.numel() == 0:  # no rows: nothing to transform (MKL rejects an empty batch)
        return x.clone()
    work = x if x.dtype == torch.float64 else x.float()
    n_fft = _fast_fft_len(n + 2 * min_pad)
    pad = min(n - 1, (n_fft - n) // 2)
    right = min(n - 1, n_fft - n - pad)  # beyond that: zeros, as far from the signal
    if torch.compiler.is_compiling():  # traced: the length may be symbolic
        gain = _zero_phase_gain_interleaved(sos, n_fft, work.dtype)
    else:
        gain = _gain_on_device(key, n_fft, str(x.device), work.dtype)
    y = _zero_phase_fft(work.reshape(-1, n).contiguous(), gain, pad, right, n_fft, False,
                        backend)
    return y.view(x.shape).to(x.dtype)


def _fast_fft_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n with a >= 3. torch's CPU FFT (MKL) is fast on these;
    odd sizes such as 5625 ran ~4x slower than 5760 (measured, 768 rows)."""
    if torch.compiler.is_compiling():  # traced: the length may be symbolic
        return _search_fast_fft_len(n)
    return _cached_fast_fft_len(n)


@functools.lru_cache(maxsize=256)
def _cached_fast_fft_len(n: int) -> int:
    return _search_fast_fft_len(n)


def _search_fast_fft_len(n) -> int:
    size = (n + 7) // 8 * 8  # (no `%` on a length: inductor cannot size tensors by Mod)
    while True:
        rest = size
        for p in (2, 3, 5):
            while rest % p == 0:
                rest //= p
        if rest == 1:
            return size
        size += 8


def _fir_pass(v: Tensor, taps: Tensor) -> Tensor:
    """``lfilter(taps, 1, v, zi=lfilter_zi(taps, 1) * v[:, 0])`` on rows (n_rows, m): with
    a = 1 those initial conditions are exactly a past equal to the first sample, so the
    pass is a convolution of the signal left-padded with ``numtaps - 1`` copies of it."""
    k, m = taps.shape[0], v.shape[-1]
    padded = torch.cat([v[:, :1].expand(-1, k - 1), v], dim=-1)
    if k <= _DIRECT_MAX_TAPS and v.dtype != torch.float64:
        return torch.nn.functional.conv1d(padded[:, None], taps.flip(0).view(1, 1, k))[:, 0]
    # Circular convolution of length >= m + k - 1 wraps only into the first k - 1 outputs.
    n_fft = _fast_fft_len(m + k - 1)
    y = torch.fft.irfft(torch.fft.rfft(padded, n=n_fft) * torch.fft.rfft(taps, n=n_fft),
                        n=n_fft)
    return y[:, k - 1:k - 1 + m]


def fir_filtfilt(x: Tensor, taps: Tensor, padlen: int, padtype: Optional[str] = "odd") -> Tensor:
    """``scipy.signal.filtfilt(taps, 1, x, padtype=padtype, padlen=padlen)`` along the
    last axis, in `taps`' dtype, from plain torch ops (autograd, compile, any device)."""
    n = x.shape[-1]
    rows = x.reshape(-1, n)
    ext = _extend(rows, padlen, PADTYPES[padtype])
    y = _fir_pass(ext, taps)
    y = _fir_pass(y.flip(-1), taps).flip(-1)
    return y[:, padlen:padlen + n].reshape(x.shape)


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
        synthetic ECG, up to 1.3e-5 on 30 s CinC records). **It is a different filter
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
        its own mixed-radix FFT vectorised across rows, two rows per complex transform;
        ``"torch"``: torch's FFTs, also what ``"auto"`` picks on a GPU; the two agree to
        rounding, ~1e-7 of the peak in float32). ``fir`` is plain torch ops: for it the
        name is checked, not used.
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
    ``conv1d`` up to 32 taps in float32, an FFT convolution otherwise. Measured error vs
    SciPy's float64 ``filtfilt``, relative to the peak: up to 6e-7 in float32, 2e-15 in
    float64 (random-walk signals, 11-201 taps, fs 100-1000 Hz).

    The filter is designed with SciPy once per (design, device) and cached. Under
    ``torch.compile(fullgraph=True)`` every method traces without breaks: the design is
    a custom op of the graph (SciPy runs, cached, when the graph runs), so `fs` and the
    band edges may change from call to call, or be symbolic under ``dynamic=True``, and
    the signal's length may change too.

    Examples
    --------
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
        return _bandpass_fir(x, fs, lowcut, highcut, numtaps, padtype, padlen)
    check_positive_int("order", order)
    check_band(lowcut, highcut, fs)
    if torch.compiler.is_compiling():
        key, (sos, zi) = None, _butter_design(order, lowcut, highcut, fs, str(x.device))
    else:  # the op's cached tensors themselves (no copies: they are inputs from here on)
        key = _butter_key(order, lowcut, highcut, fs)
        sos, zi = _sos_on_device(key, str(x.device)), _zi_on_device(key, str(x.device))
    if method == "fft":
        n = x.shape[-1]
        if n < 2:
            raise ValueError(f"bandpass: fft method needs at least 2 samples, got {n}")
        # The reflection's length hardly matters (it is not the IIR's edge handling
        # either way): on synthetic ECG, 8 to 1000 samples give the same error against
        # the IIR at every distance from the edges. At least 1/32 period of the lowest
        # edge; _fft_filter widens it to the next fast transform length.
        extension_length(x, padtype, padlen, 0)  # checked although unused
        min_pad = min(n - 1, math.ceil(fs / (32 * (lowcut or highcut))))
        return _fft_filter(x, sos, key, min_pad, backend)
    return filtfilt_design(x, sos, zi, butter_padlen(order, lowcut, highcut), padtype, padlen,
                           backend)


def _bandpass_fir(x: Tensor, fs: float, lowcut: Optional[float], highcut: Optional[float],
                  numtaps: Optional[int], padtype: Optional[str],
                  padlen: Optional[int]) -> Tensor:
    numtaps = default_numtaps(fs) if numtaps is None else numtaps
    check_fir(numtaps, lowcut, highcut, fs)
    edge = extension_length(x, padtype, padlen, 3 * numtaps)  # SciPy: 3 * max(len(a), len(b))
    if x.numel() == 0:  # no rows: nothing to filter (MKL's FFT rejects an empty batch)
        return x.clone()
    work = kernel_dtype(x)
    if torch.compiler.is_compiling():
        taps = _fir_design(numtaps, lowcut, highcut, fs, str(x.device), work)
    else:
        taps = _fir_on_device(numtaps, lowcut, highcut, fs, str(x.device), work)
    return fir_filtfilt(x.to(work), taps, edge, padtype).to(x.dtype)
