"""Normalisation modules (torch_ecg's class names and keyword arguments)."""

from __future__ import annotations

from typing import Union

from torch import Tensor, nn

from ..ops.normalize import EPS, check_normalize_args, normalize
from ..registry import PREPROCESSORS


@PREPROCESSORS.register("normalize")
class Normalize(nn.Module):
    """Module form of :func:`fastecg.ops.normalize` on ``(..., n_leads, n_samples)``.

    Parameters are those of :func:`fastecg.ops.normalize`.
    """

    def __init__(self, method: str = "z-score", mean: Union[float, Tensor] = 0.0,
                 std: Union[float, Tensor] = 1.0, per_channel: bool = False,
                 backend: str = "auto", ddof: int = 1, eps: float = EPS):
        super().__init__()
        check_normalize_args(method, mean, std, backend, ddof, eps)  # now, not at first call
        self.method, self.mean, self.std = method, mean, std
        self.per_channel, self.backend, self.ddof, self.eps = per_channel, backend, ddof, eps

    def forward(self, sig: Tensor) -> Tensor:
        return normalize(sig, self.method, self.mean, self.std, self.per_channel, self.backend,
                         ddof=self.ddof, eps=self.eps)

    def extra_repr(self) -> str:
        return f"method={self.method!r}, per_channel={self.per_channel}"


@PREPROCESSORS.register("min_max_normalize")
class MinMaxNormalize(Normalize):
    """Min-max normalisation to [0, 1]."""

    def __init__(self, per_channel: bool = False, backend: str = "auto"):
        super().__init__("min-max", per_channel=per_channel, backend=backend)


@PREPROCESSORS.register("naive_normalize")
class NaiveNormalize(Normalize):
    """``(sig - mean) / std`` with given values."""

    def __init__(self, mean: Union[float, Tensor] = 0.0, std: Union[float, Tensor] = 1.0,
                 per_channel: bool = False, backend: str = "auto"):
        super().__init__("naive", mean, std, per_channel, backend)


@PREPROCESSORS.register("z_score_normalize")
class ZScoreNormalize(Normalize):
    """z-score normalisation to a given mean and standard deviation."""

    def __init__(self, mean: Union[float, Tensor] = 0.0, std: Union[float, Tensor] = 1.0,
                 per_channel: bool = False, backend: str = "auto", ddof: int = 1,
                 eps: float = EPS):
        super().__init__("z-score", mean, std, per_channel, backend, ddof, eps)
