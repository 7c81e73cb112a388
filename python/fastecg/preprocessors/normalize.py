"""Normalisation steps (torch_ecg's class names and keyword arguments)."""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor

from ..ops.normalize import normalize
from ..registry import PREPROCESSORS
from ..transforms.designs import EPS, NormalizeSpec
from ..transforms.manager import Transform


@PREPROCESSORS.register("normalize")
class Normalize(NormalizeSpec, Transform):
    """Module form of :func:`fastecg.ops.normalize` on ``(..., n_leads, n_samples)``.

    Parameters are those of :func:`fastecg.ops.normalize` (``method="z-score",
    mean=0.0, std=1.0, per_channel=False, backend="auto", ddof=1, eps=1e-7``); `mean`
    and `std` may also be sequences (one value per lead), as a config stores tensors.
    """

    def forward(self, sig: Tensor) -> Tensor:
        return normalize(sig, self.method, _stat(self.mean, sig), _stat(self.std, sig),
                         self.per_channel, self.backend, ddof=self.ddof, eps=self.eps)


def _stat(value: Any, sig: Tensor) -> Any:
    """A number or tensor as given; a sequence as a tensor on `sig`'s device (made once
    per device, not per call)."""
    if isinstance(value, (list, tuple)):
        return _as_tensor(_frozen(value), str(sig.device))
    return value


def _frozen(value: Any) -> Any:
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


@functools.lru_cache(maxsize=64)
def _as_tensor(value: tuple, device: str) -> Tensor:
    return torch.tensor(value, dtype=torch.float64, device=device)


@PREPROCESSORS.register("min_max_normalize")
class MinMaxNormalize(Normalize):
    """Min-max normalisation to [0, 1]."""

    def __init__(self, per_channel: bool = False, backend: str = "auto"):
        super().__init__("min-max", per_channel=per_channel, backend=backend)


@PREPROCESSORS.register("naive_normalize")
class NaiveNormalize(Normalize):
    """``(sig - mean) / std`` with given values."""

    def __init__(self, mean: Any = 0.0, std: Any = 1.0, per_channel: bool = False,
                 backend: str = "auto"):
        super().__init__("naive", mean, std, per_channel, backend)


@PREPROCESSORS.register("z_score_normalize")
class ZScoreNormalize(Normalize):
    """z-score normalisation to a given mean and standard deviation."""

    def __init__(self, mean: Any = 0.0, std: Any = 1.0, per_channel: bool = False,
                 backend: str = "auto", ddof: int = 1, eps: float = EPS):
        super().__init__("z-score", mean, std, per_channel, backend, ddof, eps)
