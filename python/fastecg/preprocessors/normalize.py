"""Normalisation steps (torch_ecg's class names and keyword arguments)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..ops._cache import tensor_cache
from ..ops.normalize import normalize
from ..registry import PREPROCESSORS
from ..transforms.config import SignalInfo
from ..transforms.designs import EPS, NormalizeSpec
from ..transforms.manager import Transform


@PREPROCESSORS.register("normalize")
class Normalize(NormalizeSpec, Transform):
    """Module form of :func:`fastecg.ops.normalize` on ``(..., n_leads, n_samples)``.

    Parameters are those of :func:`fastecg.ops.normalize` (``method="z-score",
    mean=0.0, std=1.0, per_channel=False, backend="auto", ddof=1, eps=1e-7``); `mean`
    and `std` may also be sequences (one value per lead), as a config stores tensors.

    Examples
    --------
    >>> import torch
    >>> from fastecg.preprocessors import Normalize
    >>> z = Normalize("z-score", per_channel=True)(torch.randn(2, 12, 500) * 3 + 1)
    >>> bool(z.mean(-1).abs().max() < 1e-5), bool((z.std(-1) - 1).abs().max() < 1e-5)
    (True, True)
    """

    def forward(self, sig: Tensor) -> Tensor:
        return self.write_back(sig, self._normalize(sig))

    def run(self, sig: Tensor, info: SignalInfo, generator: Any = None) -> Tensor:
        return self._normalize(sig)

    def _normalize(self, sig: Tensor) -> Tensor:
        return normalize(sig, self.method, _stat(self.mean, sig), _stat(self.std, sig),
                         self.per_channel, self.backend, ddof=self.ddof, eps=self.eps)


def _stat(value: Any, sig: Tensor) -> Any:
    """A number as given; a sequence (or NumPy array) as a tensor on `sig`'s device (made once per device,
    not per call); one value per lead (1-D) as a column ``(n_leads, 1)``, which the op
    broadcasts over time (a 1-D tensor would otherwise run along time)."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        value = _as_tensor(_frozen(value), str(sig.device))
    if isinstance(value, Tensor) and value.dim() == 1:
        return value[:, None]
    return value


def _frozen(value: Any) -> Any:
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


@tensor_cache(maxsize=64)
def _as_tensor(value: tuple, device: str) -> Tensor:
    return torch.tensor(value, dtype=torch.float64, device=device)


@PREPROCESSORS.register("min_max_normalize")
class MinMaxNormalize(Normalize):
    """Min-max normalisation to [0, 1].

    Examples
    --------
    >>> import torch
    >>> from fastecg.preprocessors import MinMaxNormalize
    >>> MinMaxNormalize()(torch.tensor([[1.0, 2.0, 3.0, 5.0]]))
    tensor([[0.0000, 0.2500, 0.5000, 1.0000]])
    """

    def __init__(self, per_channel: bool = False, backend: str = "auto",
                 inplace: bool = False):
        super().__init__("min-max", per_channel=per_channel, backend=backend,
                         inplace=inplace)


@PREPROCESSORS.register("naive_normalize")
class NaiveNormalize(Normalize):
    """``(sig - mean) / std`` with given values.

    Examples
    --------
    >>> import torch
    >>> from fastecg.preprocessors import NaiveNormalize
    >>> NaiveNormalize(mean=1.0, std=2.0)(torch.tensor([[1.0, 3.0, 5.0]]))
    tensor([[0., 1., 2.]])
    """

    def __init__(self, mean: Any = 0.0, std: Any = 1.0, per_channel: bool = False,
                 backend: str = "auto", inplace: bool = False):
        super().__init__("naive", mean, std, per_channel, backend, inplace=inplace)


@PREPROCESSORS.register("z_score_normalize")
class ZScoreNormalize(Normalize):
    """z-score normalisation to a given mean and standard deviation.

    Examples
    --------
    >>> import torch
    >>> from fastecg.preprocessors import ZScoreNormalize
    >>> ZScoreNormalize(mean=0.5, std=2.0)(torch.tensor([[1.0, 2.0, 3.0]]))   # ddof 1
    tensor([[-1.5000,  0.5000,  2.5000]])
    """

    def __init__(self, mean: Any = 0.0, std: Any = 1.0, per_channel: bool = False,
                 backend: str = "auto", ddof: int = 1, eps: float = EPS,
                 inplace: bool = False):
        super().__init__("z-score", mean, std, per_channel, backend, ddof, eps, inplace)
