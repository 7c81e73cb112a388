"""Classifier heads, built from the width of the features they receive.

Every head here is complete at construction: its input width is the encoder's
``out_channels`` (or ``num_features``), known before the first batch, so no lazy module
and no dummy forward pass is needed. ``num_classes = 0`` stands for "no classifier": the
last layer becomes an ``nn.Identity`` and the head returns the features it would have
classified (timm's ``reset_classifier(0)``).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..registry import did_you_mean

__all__ = ["AttentionPool", "GLOBAL_POOLS", "build_global_pool", "MLPHead", "ClassifierHead"]


class AttentionPool(nn.Module):
    """Attention pooling over time (Ilse et al. 2018): ``sum_t softmax_t(w^T x_t) x_t``."""

    def __init__(self, channels: int):
        super().__init__()
        self.score = nn.Conv1d(channels, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        weights = torch.softmax(self.score(x), dim=-1)   # (batch, 1, length)
        return (x * weights).sum(dim=-1)


GLOBAL_POOLS = ("max", "avg", "attn")


def build_global_pool(name: str, channels: int) -> nn.Module:
    """``(batch, channels, length) -> (batch, channels)``: ``"max"``, ``"avg"`` or
    ``"attn"`` (:class:`AttentionPool`); ``KeyError`` with close matches otherwise."""
    if name == "max":
        return nn.Sequential(nn.AdaptiveMaxPool1d(1), nn.Flatten(1))
    if name == "avg":
        return nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten(1))
    if name == "attn":
        return AttentionPool(channels)
    raise KeyError(f"unknown global_pool {name!r}{did_you_mean(name, GLOBAL_POOLS)} "
                   f"(known: {', '.join(GLOBAL_POOLS)})")


def _output_layer(in_features: int, num_classes: int) -> nn.Module:
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")
    return nn.Linear(in_features, num_classes) if num_classes else nn.Identity()


class MLPHead(nn.Sequential):
    """``[Linear -> ReLU -> Dropout]`` per hidden width (a lone ``Dropout`` when there is
    none), then ``Linear(num_classes)``; on the last axis, so it also classifies each
    time step of ``(batch, length, channels)``.

    Parameters
    ----------
    in_features : int
        Width of the input.
    hidden : sequence of int
        Widths of the hidden layers (may be empty).
    num_classes : int
        Outputs; 0 leaves the last layer out (an ``nn.Identity``).
    dropout : float
        After each hidden layer's ReLU, so before every linear layer but the first
        (before the only one when `hidden` is empty).

    Attributes
    ----------
    pre_logits_features : int
        Width entering the last layer.
    out_features : int
        Width of the output: ``num_classes``, or ``pre_logits_features`` when it is 0.
    """

    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int,
                 dropout: float):
        layers: list[nn.Module] = []
        width = int(in_features)
        for w in hidden:
            layers += [nn.Linear(width, int(w)), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = int(w)
        if not hidden:
            layers.append(nn.Dropout(dropout))
        layers.append(_output_layer(width, num_classes))
        super().__init__(*layers)
        self.pre_logits_features = width

    @property
    def out_features(self) -> int:
        last = self[-1]
        return last.out_features if isinstance(last, nn.Linear) else self.pre_logits_features

    def reset(self, num_classes: int) -> None:
        """A fresh last layer with ``num_classes`` outputs; the hidden layers are kept."""
        self[-1] = _output_layer(self.pre_logits_features, num_classes)


class ClassifierHead(nn.Module):
    """``global_pool`` over time, then ``Linear(in_features, num_classes)``:
    ``(batch, in_features, length) -> (batch, num_classes)``.

    ``forward(x, pre_logits=True)`` returns the pooled ``(batch, in_features)``.
    """

    def __init__(self, in_features: int, num_classes: int, pool: str = "avg"):
        super().__init__()
        self.pool = build_global_pool(pool, in_features)
        self.fc = _output_layer(in_features, num_classes)

    def forward(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.pool(x)
        return x if pre_logits else self.fc(x)
