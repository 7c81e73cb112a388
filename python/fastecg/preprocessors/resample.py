"""Resampling step: polyphase (``resample_poly``), Fourier (``resample``), linear
interpolation or ``decimate``, each as SciPy (or the authors' code) computes it."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from ..ops._cache import length_split_cache
from ..ops._validate import check_signal
from ..ops.sosfilt import sosfiltfilt
from ..registry import PREPROCESSORS
from ..transforms.config import SignalInfo
from ..transforms.designs import ResamplePlan, ResampleSpec, decimate_sos
from ..transforms.manager import Transform


def _poly_op():
    """fastecg.ops.resample, imported when first needed."""
    try:
        from ..ops.resample import resample
    except ImportError as err:
        raise ImportError("Resample(method='poly') runs fastecg.ops.resample, which this "
                          f"install does not have ({err}); use method='fft' or 'linear'") from err
    return resample


@PREPROCESSORS.register("resample")
class Resample(ResampleSpec, Transform):
    """Change the sampling rate of ``(..., n_samples)``; a pipeline's fs follows it.

    Parameters are those of :class:`fastecg.transforms.designs.ResampleSpec`:
    ``Resample(fs=None, dst_fs=None, siglen=None, method="poly", window=("kaiser",
    5.0), backend="auto", inplace=False)`` (``inplace``: torch_ecg's keyword, accepted;
    the result is always a new tensor).

    Methods and their references (same lengths, same edges):
    ``"poly"``: :func:`fastecg.ops.resample` = ``scipy.signal.resample_poly``;
    ``"fft"``: ``scipy.signal.resample`` (rFFT, the spectrum cut or zero-extended,
    irFFT; float32 in float32, as SciPy); ``"linear"``:
    ``torch.nn.functional.interpolate(mode="linear", align_corners=True)``;
    ``"decimate"``: ``scipy.signal.decimate(x, q)`` (Chebyshev I order 8 by
    :func:`fastecg.ops.sosfiltfilt`, then every q-th sample; SciPy rounds the
    coefficients to float32 for float32 input, fastecg keeps them in float64).
    All are differentiable.

    Examples
    --------
    >>> import torch
    >>> from fastecg.preprocessors import Resample
    >>> Resample(fs=500.0, dst_fs=250.0)(torch.randn(2, 12, 5000)).shape
    torch.Size([2, 12, 2500])
    >>> Resample(dst_fs=360.0)(torch.randn(1, 12, 5000), 500.0).shape   # fs given per call
    torch.Size([1, 12, 3600])
    """

    def forward(self, sig: Tensor, fs: Optional[float] = None) -> Tensor:
        check_signal(sig, "Resample")
        return self._resample(sig, self.plan(SignalInfo(fs=fs, n_samples=sig.shape[-1])))

    def run(self, sig: Tensor, info: SignalInfo, generator: Any = None) -> Tensor:
        # Every method, as the NumPy path: "fft" and "linear" would otherwise round an
        # integer signal's resampled values back to integers.
        check_signal(sig, "Resample")
        return self._resample(sig, self.plan(info))

    def infer(self, info: SignalInfo) -> SignalInfo:
        out = super().infer(info)
        if self.method == "poly" and out.n_samples != info.n_samples:
            _poly_op()  # missing kernels fail before any work
        return out

    def _resample(self, sig: Tensor, plan: ResamplePlan) -> Tensor:
        n = sig.shape[-1]
        if plan.n_out == n and plan.up == plan.down:
            return sig
        if self.method == "poly":
            return _poly_op()(sig, plan.up, plan.down, window=self.window, backend=self.backend)
        if self.method == "fft":
            return fft_resample(sig, plan.n_out)
        if self.method == "linear":
            return linear_resample(sig, plan.n_out)
        filtered = sosfiltfilt(decimate_sos(plan.down), sig, backend=self.backend)
        return filtered[..., ::plan.down].contiguous()


def fft_resample(sig: Tensor, num: int) -> Tensor:
    """``scipy.signal.resample(sig, num, axis=-1)`` for real input: keep (or zero-extend
    to) the first ``min(num, n) // 2 + 1`` rFFT bins, halve or double an unpaired
    Nyquist bin as SciPy does, scale by ``num / n``."""
    n = sig.shape[-1]
    if sig.numel() == 0:  # (the FFT refuses an empty batch)
        return sig.new_empty(*sig.shape[:-1], num)
    work = sig if sig.dtype in (torch.float32, torch.float64) else sig.float()
    m = min(num, n)
    spectrum = torch.fft.rfft(work)[..., :m // 2 + 1]
    spectrum.mul_(num / n)  # the transform's own buffer: no second spectrum
    if m % 2 == 0 and num != n:
        spectrum[..., m // 2].mul_(2.0 if num < n else 0.5)
    return torch.fft.irfft(spectrum, n=num).to(sig.dtype)


def linear_resample(sig: Tensor, num: int) -> Tensor:
    """Linear interpolation onto `num` samples with the first and last samples aligned
    (fairseq-signals' ``interp1d`` grid; torch_ecg's ``F.interpolate(align_corners=True)``).
    Positions and weights are computed in float64: ``F.interpolate`` computes them in
    the signal's dtype, 3e-5 of the peak off in float32 on 10 s records."""
    n = sig.shape[-1]
    if sig.numel() == 0:  # (the FFT refuses an empty batch)
        return sig.new_empty(*sig.shape[:-1], num)
    work = sig if sig.dtype in (torch.float32, torch.float64) else sig.float()
    left, weight = _linear_grid(n, num, str(sig.device), work.dtype)
    out = work.index_select(-1, left)
    if n > 1:
        out = out.lerp_(work.index_select(-1, left + 1), weight)
    return out.to(sig.dtype)


@length_split_cache(length_arg=1, maxsize=64)
def _linear_grid(n: int, num: int, device: str, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Left neighbour and weight of each output sample (read only, cached)."""
    pos = torch.arange(num, dtype=torch.float64) * ((n - 1) / max(num - 1, 1))
    left = pos.floor().clamp(0, max(n - 2, 0))
    weight = (pos - left).to(device=device, dtype=dtype)
    return left.to(device=device, dtype=torch.int64), weight
