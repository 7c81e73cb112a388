"""The ``fft`` band-pass method: a Butterworth filter's zero-phase response |H|^2 applied
by FFT to reflect-padded rows, as one custom op (``fastecg::zero_phase_fft``; traced calls
use ``fastecg::zero_phase_fft_planned``, which plans the transform when it runs) whose
kernels are the C++ kernel (its own FFT, csrc/cpu/zero_phase_fft.cpp) and torch's FFTs."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from ._cache import cached_unless_compiling, length_split_cache
from ._design import _butter_key
from ._dispatch import compiled_op, custom_op, kernel_for, register_kernel

__all__ = ["fft_filter", "fast_fft_len"]


def _zero_phase_gain_interleaved(sos: Tensor, n_fft: int, dtype: torch.dtype) -> Tensor:
    """|H|^2 at the rFFT bins, each bin's value twice, for the real and imaginary parts
    of the spectrum viewed as real numbers: a real product of contiguous rows vectorises
    (CPU, 768 x 2561 bins: 0.27 ms; times a complex gain 0.4-1.0 ms; a real gain
    broadcast over the last axis of view_as_real 4-6 ms)."""
    return _zero_phase_gain(sos, n_fft).to(dtype).repeat_interleave(2)


@length_split_cache(length_arg=1)
def _gain_on_device(sos_key: tuple, n_fft: int, device: str, dtype: torch.dtype) -> Tensor:
    # ~40 small ops per call otherwise: on the CPU as much as a pass over a batch.
    sos = torch.tensor(sos_key, dtype=torch.float64, device=device)
    return _zero_phase_gain_interleaved(sos, n_fft, dtype)


# Bins per block of the response: its float64 intermediates are (sections, bins) each,
# ~25 of them, which for a whole Holter record at once (2**23 bins) took 2.6 GB and 11 s.
_GAIN_BLOCK_BINS = 1 << 16


def _zero_phase_gain(sos: Tensor, n_fft: int) -> Tensor:
    """|H|^2 of a float64 SOS filter at the rFFT bins of length `n_fft`, each section's
    numerator and denominator evaluated as complex numbers, ``p0 + p1 e^-iw + p2 e^-2iw``
    with ``cos w - 1 = -2 sin^2(w / 2)`` so that no sum of squares cancels: a pole close
    to z = 1 (a 0.005 Hz low cut-off) or to z = -1 (a cut-off near Nyquist) makes the
    denominator ~1e-17 at DC or Nyquist, which the expanded form
    ``p0^2 + p1^2 + p2^2 + 2 (p0 p1 + p1 p2) cos w + 2 p0 p2 cos 2w`` loses entirely (0/0).
    Real arithmetic, traceable, any length; computed in blocks of bins, so the work
    memory stays bounded (the result is the only O(n_fft) tensor)."""
    n_bins = n_fft // 2 + 1
    if n_bins <= _GAIN_BLOCK_BINS:
        return _gain_at_bins(sos, 0, n_bins, n_fft)
    out = torch.empty(n_bins, dtype=torch.float64, device=sos.device)
    for start in range(0, n_bins, _GAIN_BLOCK_BINS):
        stop = min(start + _GAIN_BLOCK_BINS, n_bins)
        out[start:stop] = _gain_at_bins(sos, start, stop, n_fft)
    return out


def _gain_at_bins(sos: Tensor, start: int, stop: int, n_fft: int) -> Tensor:
    """:func:`_zero_phase_gain` at bins ``start .. stop - 1``."""
    k = torch.arange(start, stop, dtype=torch.float64, device=sos.device)
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


# Eager calls reuse the index (read only): three small ops less per call (on a GPU,
# three launches of a call that otherwise queues six). Its length grows with the row's
# (int64, ~1.4% of a float32 row's bytes on average), and Holter records come in many
# lengths: only a few long ones stay cached.
@length_split_cache(length_arg=0, maxsize=64)
def _tail_index(n: int, pad: int, right: int, device: torch.device) -> Tensor:
    """Columns that follow each row, circularly, in its reflect-padded signal rotated
    left by ``pad`` (a rotation commutes with a circular convolution, and keeps the
    rows' copies aligned): its end reflected (`right` samples), then its start
    reflected (`pad`); any zeros between are left to the caller."""
    end = torch.arange(n - 2, n - 2 - right, -1, device=device)
    return torch.cat([end, torch.arange(pad, 0, -1, device=device)])


def _circulant(v: Tensor, gain: Tensor, n_fft: int) -> Tensor:
    """Circular convolution of rows with the zero-phase response `gain` (rFFT bins, each
    repeated for the real and imaginary parts); the rFFT zero-pads `v` to `n_fft`."""
    spectrum = torch.fft.rfft(v, n=n_fft)
    torch.view_as_real(spectrum).view(spectrum.shape[0], -1).mul_(gain)
    return torch.fft.irfft(spectrum, n=n_fft)


def _filter_rows(rows: Tensor, gain: Tensor, pad: int, right: int, n_fft: int) -> Tensor:
    # One gather and one concatenation build the padded rows: each op is a pass over
    # the batch and, on a busy machine, a wait for every thread (three slice copies and
    # two flips took about three times as long; benchmarks/CPU_NOTES.md).
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


# The cpu kernel transforms a block of 2 * lanes rows at once (16 float32 rows with
# AVX2, 8 float64) on one thread, its buffers sized for the block: a few long rows (a
# Holter record of 1-8 leads) leave lanes empty and a thread idle, ran 1.5-4.8x slower
# than torch's FFT (1-4 float32 rows of 2**15 to 2**19 samples, 2 threads), still
# 1.0-2.0x at 5-8 float32 rows and 1.1-1.5x at 3-4 float64 rows (paired; 9-16 float32
# and 5-8 float64 rows: 0.3-1.4x, most below 1; benchmarks/README.md), and took 16 rows'
# worth of memory (1.1 GB for one 2**24-sample row). "auto" gives those to torch's FFT.
_FEW_ROWS = {torch.float32: 8, torch.float64: 4}
_LONG_FFT = 1 << 15


def _fft_backend(rows: Tensor, n_fft: int, backend: str) -> str:
    if (backend == "auto" and rows.device.type == "cpu" and n_fft >= _LONG_FFT
            and rows.shape[0] <= _FEW_ROWS.get(rows.dtype, 0)):
        return "torch"
    return backend


@custom_op("fastecg::zero_phase_fft")
def _zero_phase_fft(rows: Tensor, gain: Tensor, pad: int, right: int, n_fft: int,
                    adjoint: bool, backend: str) -> Tensor:
    """y = crop(C pad(rows)): reflect pad, circular convolution with |H|^2, crop; or its
    transpose (adjoint). C is symmetric (a real, even response), so the adjoint is
    pad^T C crop^T: the same transforms on the zero-extended rows, then the extension's
    columns added back onto the samples they copied."""
    return kernel_for("zero_phase_fft", rows, _fft_backend(rows, n_fft, backend))(
        rows, gain, pad, right, n_fft, adjoint)


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


def _plan(n: int, min_pad: int) -> tuple[int, int, int]:
    """``(n_fft, pad, right)`` for rows of `n` samples reflect-padded by at least
    ``min(min_pad, n - 1)`` a side: a fast transform length (not the shortest: 5120 runs
    20% faster than 5184 for ECG batches), and the reflections it leaves room for."""
    n_fft = fast_fft_len(n + 2 * min(min_pad, n - 1))
    pad = min(n - 1, (n_fft - n) // 2)
    right = min(n - 1, n_fft - n - pad)  # beyond that: zeros, as far from the signal
    return n_fft, pad, right


@custom_op("fastecg::zero_phase_fft_planned")
def _zero_phase_fft_planned(rows: Tensor, order: int, lowcut: Optional[float],
                            highcut: Optional[float], fs: float, min_pad: int, adjoint: bool,
                            backend: str) -> Tensor:
    """:func:`_zero_phase_fft` of the Butterworth design ``(order, lowcut, highcut, fs)``
    with the transform length, the padding and the response worked out when the op runs,
    from the concrete row length: what traced calls (``torch.compile``, ``torch.export``)
    use. No expression of a symbolic length gives its fast transform length: planned
    while tracing, it pinned the graph to the example's length (guards on each factor
    tried, which ``torch.export`` with a dynamic dimension refuses and ``torch.compile``
    answered with a recompile). The design's scalars, not its SOS tensor, come in, so
    the response is the eager path's cached one (computing it is ~40 small ops, as much
    as the filtering on the CPU)."""
    n_fft, pad, right = _plan(rows.shape[-1], min_pad)
    gain = _gain_on_device(_butter_key(order, lowcut, highcut, fs), n_fft, str(rows.device),
                           rows.dtype)
    return kernel_for("zero_phase_fft", rows, _fft_backend(rows, n_fft, backend))(
        rows, gain, pad, right, n_fft, adjoint)


@_zero_phase_fft_planned.register_fake
def _(rows, order, lowcut, highcut, fs, min_pad, adjoint, backend):
    return rows.new_empty(rows.shape)


def _planned_setup(ctx, inputs, output):
    ctx.args = inputs[1:]


def _planned_backward(ctx, grad):
    order, lowcut, highcut, fs, min_pad, adjoint, backend = ctx.args
    return (_zero_phase_fft_planned(grad.contiguous(), order, lowcut, highcut, fs, min_pad,
                                    not adjoint, backend),) + (None,) * 7


_zero_phase_fft_planned.register_autograd(_planned_backward, setup_context=_planned_setup)


def fft_filter(x: Tensor, design: tuple, min_pad: int, backend: str) -> Tensor:
    """|H(f)|^2 of the Butterworth filter ``design = (order, lowcut, highcut, fs)``
    applied by rFFT, reflect-padded by at least ``min(min_pad, n - 1)`` a side, as far as
    the transform length allows (:func:`_plan`)."""
    n = x.shape[-1]
    if x.numel() == 0:  # no rows: nothing to transform (MKL rejects an empty batch)
        return x.clone()
    work = x if x.dtype == torch.float64 else x.float()
    rows = work.reshape(-1, n).contiguous()
    if torch.compiler.is_compiling() or isinstance(n, torch.SymInt):
        # Traced: the length may be symbolic (under dynamo it passes for an int), and so
        # may fs and the band; the op plans the transform when it runs.
        y = _zero_phase_fft_planned(rows, *design, min_pad, False, backend)
    else:
        n_fft, pad, right = _plan(n, min_pad)
        gain = _gain_on_device(_butter_key(*design), n_fft, str(x.device), work.dtype)
        y = _zero_phase_fft(rows, gain, pad, right, n_fft, False, backend)
    return y.view(x.shape).to(x.dtype)


@cached_unless_compiling(maxsize=256)
def fast_fft_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n with a >= 3. torch's CPU FFT (MKL) is fast on these;
    odd sizes such as 5625 ran ~4x slower than 5760 (measured, 768 rows)."""
    size = (n + 7) // 8 * 8  # (no `%` on a length: inductor cannot size tensors by Mod)
    while True:
        rest = size
        for p in (2, 3, 5):
            while rest % p == 0:
                rest //= p
        if rest == 1:
            return size
        size += 8
