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

# Direct float32 conv1d up to this many taps; longer filters, and float64, use an FFT
# convolution, whose cost hardly depends on the length up to a few hundred taps while
# conv1d's grows with it (and float64 conv1d is far slower) (benchmarks/CPU_NOTES.md).
_DIRECT_MAX_TAPS = 32


def _fir_pass(v: Tensor, taps: Tensor) -> Tensor:
    """``lfilter(taps, 1, v, zi=lfilter_zi(taps, 1) * v[:, 0])`` on rows (n_rows, m): with
    a = 1 those initial conditions are exactly a past equal to the first sample, so the
    pass is a convolution of the signal left-padded with ``numtaps - 1`` copies of it."""
    k, m = taps.shape[0], v.shape[-1]
    padded = torch.cat([v[:, :1].expand(-1, k - 1), v], dim=-1)
    if k <= _DIRECT_MAX_TAPS and v.dtype != torch.float64:
        return torch.nn.functional.conv1d(padded[:, None], taps.flip(0).view(1, 1, k))[:, 0]
    if torch.compiler.is_compiling() or isinstance(m, torch.SymInt):
        # Traced: the length may be symbolic (under dynamo it passes for an int); the op
        # plans the transform when it runs.
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


@custom_op("fastecg::fir_fft_valid_planned")
def _fir_fft_valid_planned(padded: Tensor, taps: Tensor) -> Tensor:
    """:func:`_fft_valid` with the transform length worked out when the op runs, from
    the concrete row length: what traced calls (``torch.compile``, ``torch.export``)
    use. No expression of a symbolic length gives its fast transform length: planned
    while tracing, it pinned the graph to the example's length (guards on each factor,
    which ``torch.export`` with a dynamic dimension refuses and ``torch.compile``
    answered with a recompile). The taps are a constant of the op (the design's)."""
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
    ext = extend_rows(rows, padlen, PADTYPES[padtype])
    y = _fir_pass(ext, taps)
    y = _fir_pass(y.flip(-1), taps).flip(-1)
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
