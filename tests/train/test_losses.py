"""Challenge losses against hand-written formulas and their documented special cases."""

import math

import pytest
import torch
import torch.nn.functional as F

from fastecg.registry import LOSSES

LOGITS = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 0.0, 1.5]], dtype=torch.float64)
TARGET = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)


def test_focal_hand_computed():
    loss = LOSSES.build("focal", gamma=2.0, alpha=0.25, reduction="none")(LOGITS, TARGET)
    p = 1 / (1 + math.exp(-2.0))  # first element: positive, p_t = p
    assert loss[0, 0].item() == pytest.approx(0.25 * (1 - p) ** 2 * -math.log(p))
    q = 1 / (1 + math.exp(3.0))  # element [1, 0]: negative, p_t = 1 - q
    assert loss[1, 0].item() == pytest.approx(0.75 * q ** 2 * -math.log(1 - q))


def test_focal_gamma_zero_is_bce():
    ours = LOSSES.build({"name": "focal", "gamma": 0.0})(LOGITS, TARGET)
    torch.testing.assert_close(ours, F.binary_cross_entropy_with_logits(LOGITS, TARGET))


def test_asymmetric_hand_computed_and_bce_limit():
    asl = LOSSES.build("asymmetric", gamma_neg=4.0, gamma_pos=1.0, clip=0.05, reduction="none")
    loss = asl(LOGITS, TARGET)
    p = torch.sigmoid(LOGITS[1, 2]).item()  # a negative: shifted probability p - 0.05
    pm = p - 0.05
    assert loss[1, 2].item() == pytest.approx(-(pm ** 4) * math.log(1 - pm))
    plain = LOSSES.build("asymmetric", gamma_neg=0.0, gamma_pos=0.0, clip=0.0)(LOGITS, TARGET)
    torch.testing.assert_close(plain, F.binary_cross_entropy_with_logits(LOGITS, TARGET))


def test_weighted_bce():
    w, pw = [1.0, 2.0, 0.5], [3.0, 1.0, 1.0]
    ours = LOSSES.build("weighted_bce", class_weight=w, pos_weight=pw, reduction="sum")
    ref = F.binary_cross_entropy_with_logits(
        LOGITS, TARGET, pos_weight=torch.tensor(pw, dtype=torch.float64), reduction="none")
    torch.testing.assert_close(ours(LOGITS, TARGET), (ref * torch.tensor(w)).sum())


def test_bad_loss_arguments():
    with pytest.raises(ValueError, match="gamma"):
        LOSSES.build("focal", gamma=-1.0)
    with pytest.raises(ValueError, match="reduction"):
        LOSSES.build("focal", reduction="avg")
    with pytest.raises(ValueError, match="non-negative"):
        LOSSES.build("weighted_bce", class_weight=[-1.0])
