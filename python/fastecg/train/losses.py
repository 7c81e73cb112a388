"""Losses in the LOSSES registry: torch's common ones plus the multi-label losses used
in the PhysioNet/CinC ECG challenges (focal, asymmetric, weighted BCE).

All multi-label losses take logits ``(batch, n_classes)`` and 0/1 (or soft) targets
of the same shape, and reduce with ``reduction="mean" | "sum" | "none"``.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import LOSSES

LOSSES.register("bce_with_logits")(nn.BCEWithLogitsLoss)
LOSSES.register("cross_entropy")(nn.CrossEntropyLoss)
LOSSES.register("mse")(nn.MSELoss)

_REDUCTIONS = ("mean", "sum", "none")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    return loss.sum() if reduction == "sum" else loss


def _check_reduction(reduction: str) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return reduction


@LOSSES.register("focal")
class FocalLoss(nn.Module):
    r"""Binary focal loss (Lin et al., 2017) on logits:
    :math:`-\alpha_t (1 - p_t)^\gamma \log p_t`; ``gamma=0, alpha=None`` is plain BCE."""

    def __init__(self, gamma: float = 2.0, alpha: Optional[float] = None,
                 reduction: str = "mean"):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        if alpha is not None and not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.gamma, self.alpha, self.reduction = gamma, alpha, _check_reduction(reduction)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        p = torch.sigmoid(logits)
        p_t = p * target + (1 - p) * (1 - target)
        loss = (1 - p_t).pow(self.gamma) * bce
        if self.alpha is not None:
            loss = (self.alpha * target + (1 - self.alpha) * (1 - target)) * loss
        return _reduce(loss, self.reduction)


@LOSSES.register("asymmetric")
class AsymmetricLoss(nn.Module):
    r"""Asymmetric loss for multi-label classification (Ridnik et al., ICCV 2021):
    positives weighted by :math:`(1-p)^{\gamma_+}`, negatives by :math:`p_m^{\gamma_-}`
    with the shifted probability :math:`p_m = \max(p - m, 0)` (``clip``)."""

    def __init__(self, gamma_neg: float = 4.0, gamma_pos: float = 1.0, clip: float = 0.05,
                 eps: float = 1e-8, reduction: str = "mean"):
        super().__init__()
        if gamma_neg < 0 or gamma_pos < 0 or not 0 <= clip < 1:
            raise ValueError(f"need gamma_neg, gamma_pos >= 0 and 0 <= clip < 1, got "
                             f"{gamma_neg}, {gamma_pos}, {clip}")
        self.gamma_neg, self.gamma_pos, self.clip, self.eps = gamma_neg, gamma_pos, clip, eps
        self.reduction = _check_reduction(reduction)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        p = torch.sigmoid(logits)
        p_neg = (p - self.clip).clamp(min=0) if self.clip > 0 else p
        loss_pos = target * (1 - p).pow(self.gamma_pos) * torch.log(p.clamp(min=self.eps))
        loss_neg = (1 - target) * p_neg.pow(self.gamma_neg) * torch.log(
            (1 - p_neg).clamp(min=self.eps))
        return _reduce(-(loss_pos + loss_neg), self.reduction)


@LOSSES.register("weighted_bce")
class WeightedBCELoss(nn.Module):
    """BCE on logits with per-class weights (scales each class's loss) and/or per-class
    positive weights (scales the positive term, for rare diagnoses)."""

    def __init__(self, class_weight: Union[Sequence[float], Tensor, None] = None,
                 pos_weight: Union[Sequence[float], Tensor, None] = None,
                 reduction: str = "mean"):
        super().__init__()
        self.reduction = _check_reduction(reduction)
        for name, value in (("class_weight", class_weight), ("pos_weight", pos_weight)):
            tensor = None if value is None else torch.as_tensor(value, dtype=torch.float32)
            if tensor is not None and (tensor < 0).any():
                raise ValueError(f"{name} must be non-negative")
            self.register_buffer(name, tensor)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        pos_weight = None if self.pos_weight is None else self.pos_weight.to(logits.dtype)
        loss = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight,
                                                  reduction="none")
        if self.class_weight is not None:
            loss = loss * self.class_weight.to(logits.dtype)
        return _reduce(loss, self.reduction)
