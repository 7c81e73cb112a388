"""Random-initialisation scale of every registered backbone, in eval mode.

A randomly initialised encoder is the evaluation harness's baseline
(:func:`fastecg.ssl.evaluate`), run in eval mode, where batch norm with its initial
running statistics is the identity: whatever scale the weights give then reaches the
features. Features of ~1e-12 times the input underflow float16 under AMP and leave
SiLU, hard-swish and the SE gates in their linear range (a nearly linear encoder);
~1e4 times overflows float16 at the signal's peaks. Each backbone's feature RMS must
lie within ``BAND`` of the input's (float32), and its initialisation must be a function
of the seed alone.
"""

import math

import pytest
import torch
from torch import nn

from fastecg.models._layers import (SqueezeExcite, damp_residual_branch, init_skip_blocks,
                                    init_weights)
from fastecg.registry import BACKBONES

NAMES = BACKBONES.list()
# feature RMS / input RMS; float16 spans about 6e-5 (smallest normal) to 65504
BAND = (1e-2, 1e3)
# the backbones whose initialisation follows a per-family rule of this file's concern
CHANGED = ("darknet", "efficientnet", "efficientnet_v2", "mobilenet_v1", "mobilenet_v2",
           "mobilenet_v3", "xception")
# shallower builds where building is slow (the rules apply per block, whatever the depth)
QUICK = {"efficientnet": {"depth_mult": 0.5}, "efficientnet_v2": {"depth_mult": 0.5}}


def rms(t: torch.Tensor) -> float:
    return t.double().pow(2).mean().sqrt().item()


@pytest.mark.parametrize("name", NAMES)
def test_eval_features_keep_the_input_scale_at_init(name):
    torch.manual_seed(0)
    net = BACKBONES.build(name, in_channels=12).eval()
    x = torch.randn(2, 12, 1000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ratio = rms(net.forward_features(x)) / rms(x)
    assert BAND[0] <= ratio <= BAND[1], f"{name}: feature RMS {ratio:.3g} x the input's"


@pytest.mark.parametrize("name", CHANGED)
def test_init_is_a_function_of_the_seed_and_training_mode_stays_normalised(name):
    nets = []
    for _ in range(2):
        torch.manual_seed(3)
        nets.append(BACKBONES.build(name, in_channels=12, **QUICK.get(name, {})))
    a, b = nets[0].state_dict(), nets[1].state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # every rescaled conv feeds a batch norm: in training mode the features keep the
    # O(1) scale that batch statistics give them, whatever the input's scale
    x = 5 * torch.randn(2, 12, 500, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = nets[0].train().forward_features(x)
    assert 0.1 <= rms(y) <= 10.0, rms(y)


def test_per_group_fan_out_matches_the_tensorflow_reference():
    # TF's EfficientNet initialiser: normal, std sqrt(2 / fan_out) with
    # fan_out = taps * out_channels / groups (a depthwise kernel's out_filters is 1)
    torch.manual_seed(0)
    dw = nn.Conv1d(256, 256, 5, groups=256, bias=True)
    pw = nn.Conv1d(64, 128, 1)
    init_weights(nn.Sequential(dw, pw), per_group=True)
    assert dw.weight.std().item() == pytest.approx(math.sqrt(2 / 5), rel=0.05)
    assert pw.weight.std().item() == pytest.approx(math.sqrt(2 / 128), rel=0.05)
    assert not dw.bias.any() and not pw.bias.any()
    init_weights(dw)  # without per_group: PyTorch's fan-out, 256 * 5
    assert dw.weight.std().item() == pytest.approx(math.sqrt(2 / (256 * 5)), rel=0.05)


def test_init_skip_blocks_rescales_only_the_projections():
    from fastecg.models.backbones.mobilenet import InvertedResidual

    torch.manual_seed(0)
    skip = InvertedResidual(16, 16, 64, se_channels=8, se_gate="hardsigmoid")
    plain = InvertedResidual(16, 24, 64, se_channels=8, se_gate="sigmoid")
    init_weights(nn.Sequential(skip, plain), per_group=True)
    before = {k: v.clone() for k, v in nn.Sequential(skip, plain).state_dict().items()}
    init_skip_blocks(nn.Sequential(skip, plain))
    after = nn.Sequential(skip, plain).state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    # the projection after the SE is divided by gate(0) = 0.5 in both blocks; with a
    # skip the branch is then damped by 0.5, so that one is back where it was
    assert isinstance(skip.conv[2], SqueezeExcite) and isinstance(plain.conv[2], SqueezeExcite)
    assert changed == {"1.conv.3.0.weight"}
    torch.testing.assert_close(after["1.conv.3.0.weight"], 2 * before["1.conv.3.0.weight"])
    init_skip_blocks(skip, gain=0.25)
    torch.testing.assert_close(skip.conv[3][0].weight, 0.5 * before["0.conv.3.0.weight"])


def test_damp_residual_branch_scales_the_last_conv():
    branch = nn.Sequential(nn.Conv1d(4, 2, 1), nn.ReLU(), nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4))
    first, last = branch[0].weight.clone(), branch[2].weight.clone()
    damp_residual_branch(branch, 0.25)
    assert torch.equal(branch[0].weight, first)
    torch.testing.assert_close(branch[2].weight, 0.25 * last)

