"""The ``fir`` band-pass method: ``scipy.signal.filtfilt(firwin(...), 1, x)`` from plain
torch ops (autograd, compile, any device)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .._rows import PADTYPES, extend_rows
from .._spec import check_fir, default_numtaps
from ._design import extension_length, fir_design
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
    # Circular convolution of length >= m + k - 1 wraps only into the first k - 1 outputs.
    n_fft = fast_fft_len(m + k - 1)
    y = torch.fft.irfft(torch.fft.rfft(padded, n=n_fft) * torch.fft.rfft(taps, n=n_fft),
                        n=n_fft)
    return y[:, k - 1:k - 1 + m]


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
