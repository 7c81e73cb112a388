"""The ``fir`` band-pass method: ``scipy.signal.filtfilt(firwin(...), 1, x)`` from plain
torch ops (autograd, compile, any device)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .._rows import PADTYPES, extend_rows
from .._spec import check_fir, default_numtaps
from ._design import extension_length, fir_design
from ._dispatch import custom_op
from ._validate import kernel_dtype
from .zero_phase_fft import fast_fft_len

__all__ = ["fir_filtfilt", "fir_bandpass"]

# Direct float32 conv1d up to this many taps on rows up to _BLOCKED_MIN_LEN (padded);
# longer filters, and float64, use an FFT convolution, whose cost hardly depends on the
# length up to a few hundred taps while conv1d's grows with it (and float64 conv1d is far
# slower) (benchmarks/CPU_NOTES.md). On longer rows overlap-save beat conv1d at 9-31 taps
# too: 1.1-5.4x from 2**17 samples (1 and 12 rows, 2 threads; benchmarks/README.md).
_DIRECT_MAX_TAPS = 32

# Rows longer than this (padded) are convolved by overlap-save, in transforms of
# _BLOCK_TAPS * numtaps samples widened to a fast length: one transform of the whole row
# held its spectra, the taps' spectrum at the row's length and the transform's buffers
# (a 2**24-sample float32 row grew the process by ~9x the row, 3x in blocks) and ran
# 3-10x slower on long rows; short transforms tie from 2**13 samples on and win from
# 2**14 (101 taps, 1 and 12 rows, 2 threads). Shorter rows, an ECG's 5000 samples among
# them, keep one transform a row.
_BLOCKED_MIN_LEN = 2**14
_BLOCK_TAPS = 8
# Elements (rows x blocks x transform length) transformed at once: bounds the work memory
# (2**18: a few MB of float32 blocks and spectra) whatever the record's length.
_BLOCK_CHUNK_ELEMENTS = 2**18


def _fir_pass(v: Tensor, taps: Tensor) -> Tensor:
    """``lfilter(taps, 1, v, zi=lfilter_zi(taps, 1) * v[:, 0])`` on rows (n_rows, m): with
    a = 1 those initial conditions are exactly a past equal to the first sample, so the
    pass is a convolution of the signal left-padded with ``numtaps - 1`` copies of it."""
    k, m = taps.shape[0], v.shape[-1]
    padded = torch.cat([v[:, :1].expand(-1, k - 1), v], dim=-1)
    # Traced: the length may be symbolic (under dynamo it passes for an int), and a
    # choice by length would guard on it; conv1d stays for short filters at any length.
    traced = torch.compiler.is_compiling() or isinstance(m, torch.SymInt)
    long = not traced and padded.shape[-1] > _BLOCKED_MIN_LEN
    if k <= _DIRECT_MAX_TAPS and v.dtype != torch.float64 and not long:
        return torch.nn.functional.conv1d(padded[:, None], taps.flip(0).view(1, 1, k))[:, 0]
    if traced or long:
        # Traced: the op plans the transform when it runs. Long rows: the op's backward
        # is the same blocked convolution, so autograd records no graph of the blocks.
        return _fir_fft_valid_planned(padded, taps)
    return _fft_valid(padded, taps)


def _fft_valid(padded: Tensor, taps: Tensor) -> Tensor:
    """The outputs of ``convolve(padded, taps)`` that see no zero beyond the rows' ends
    (``mode="valid"``), (n_rows, len - numtaps + 1), by FFT."""
    k, n = taps.shape[0], padded.shape[-1]
    # Circular convolution of length >= n wraps only into the first k - 1 outputs.
    n_fft = fast_fft_len(n)
    y = torch.fft.irfft(torch.fft.rfft(padded, n=n_fft) * torch.fft.rfft(taps, n=n_fft),
                        n=n_fft)
    return y[:, k - 1:n]


def _fft_valid_blocked(padded: Tensor, taps: Tensor) -> Tensor:
    """:func:`_fft_valid` by overlap-save: each transform of ``size`` samples yields the
    ``size - numtaps + 1`` outputs its circular convolution does not wrap into, and
    :data:`_BLOCK_CHUNK_ELEMENTS` bounds the blocks transformed at once. Not differentiable
    itself: it writes into its output (the op's backward covers it)."""
    k, (rows, n) = taps.shape[0], padded.shape
    size = fast_fft_len(_BLOCK_TAPS * k)
    step = size - k + 1
    m = n - k + 1
    spectrum = torch.fft.rfft(taps, n=size)
    out = padded.new_empty(rows, m)
    n_blocks = -(-m // step)
    per_chunk = max(1, _BLOCK_CHUNK_ELEMENTS // (rows * size))
    for first in range(0, n_blocks, per_chunk):
        last = min(first + per_chunk, n_blocks)
        start, stop = first * step, min(last * step, m)
        seg = padded[:, start:last * step + k - 1]
        # The last block reads past the row's end: zeros, reaching only outputs beyond m.
        seg = torch.nn.functional.pad(seg, (0, (last - first) * step + k - 1 - seg.shape[-1]))
        y = torch.fft.irfft(torch.fft.rfft(seg.unfold(-1, size, step)) * spectrum, n=size)
        out[:, start:stop] = y[..., k - 1:].reshape(rows, -1)[:, :stop - start]
    return out


@custom_op("fastecg::fir_fft_valid_planned")
def _fir_fft_valid_planned(padded: Tensor, taps: Tensor) -> Tensor:
    """:func:`_fft_valid` with the transform length worked out when the op runs, from
    the concrete row length: what traced calls (``torch.compile``, ``torch.export``)
    use. No expression of a symbolic length gives its fast transform length: planned
    while tracing, it pinned the graph to the example's length (guards on each factor,
    which ``torch.export`` with a dynamic dimension refuses and ``torch.compile``
    answered with a recompile). The taps are a constant of the op (the design's). Rows
    longer than :data:`_BLOCKED_MIN_LEN` are convolved in blocks
    (:func:`_fft_valid_blocked`), traced or not."""
    if padded.shape[-1] > _BLOCKED_MIN_LEN:
        return _fft_valid_blocked(padded, taps)
    return _fft_valid(padded, taps).contiguous()


@_fir_fft_valid_planned.register_fake
def _(padded, taps):
    return padded.new_empty(padded.shape[0], padded.shape[1] - taps.shape[0] + 1)


def _fir_fft_valid_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[1])


def _fir_fft_valid_backward(ctx, grad):
    # The transpose of the valid convolution: the full convolution with the taps
    # reversed, i.e. the valid one of the cotangent zero-extended by k - 1 a side.
    if ctx.needs_input_grad[1]:
        raise RuntimeError('bandpass(method="fir"): gradients with respect to the taps are '
                           "not supported (the taps are the filter design's constants)")
    (taps,) = ctx.saved_tensors
    k = taps.shape[0]
    extended = torch.nn.functional.pad(grad, (k - 1, k - 1))
    return _fir_fft_valid_planned(extended, taps.flip(0)), None


_fir_fft_valid_planned.register_autograd(_fir_fft_valid_backward,
                                         setup_context=_fir_fft_valid_setup)


def fir_filtfilt(x: Tensor, taps: Tensor, padlen: int, padtype: Optional[str] = "odd") -> Tensor:
    """``scipy.signal.filtfilt(taps, 1, x, padtype=padtype, padlen=padlen)`` along the
    last axis, in `taps`' dtype, from plain torch ops (autograd, compile, any device)."""
    n = x.shape[-1]
    rows = x.reshape(-1, n)
    # No name holds a pass's input past its use: a long record keeps ~4 copies live.
    y = _fir_pass(extend_rows(rows, padlen, PADTYPES[padtype]), taps)
    y = y.flip(-1)
    y = _fir_pass(y, taps).flip(-1)
    return y[:, padlen:padlen + n].reshape(x.shape)


def fir_bandpass(x: Tensor, fs: float, lowcut: Optional[float], highcut: Optional[float],
                  numtaps: Optional[int], padtype: Optional[str],
                  padlen: Optional[int]) -> Tensor:
    numtaps = default_numtaps(fs) if numtaps is None else numtaps
    check_fir(numtaps, lowcut, highcut, fs)
    edge = extension_length(x, padtype, padlen, 3 * numtaps)  # SciPy: 3 * max(len(a), len(b))
    if x.numel() == 0:  # no rows: nothing to filter (MKL's FFT rejects an empty batch)
        return x.clone()
    work = kernel_dtype(x)
    taps = fir_design(numtaps, lowcut, highcut, fs, str(x.device), work)
    return fir_filtfilt(x.to(work), taps, edge, padtype).to(x.dtype)
