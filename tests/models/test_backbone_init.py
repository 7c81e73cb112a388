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



# Residual nets: the std of the features over the std of a unit-variance input, at the
# length of a 10 s record at 500 Hz, must stay O(1) in both modes. Full-amplitude
# residual branches double the eval-mode variance at every block (batch norm with its
# initial running statistics is the identity), which gave ResNet-34 about 1.4e2 x,
# ResNet-50 about 8e1 x, Hannun's ResNet about 1e2 x and Xception about 5e1 x. The
# ResNets zero their branches by default and damp them with zero_init_residual=False.
RESIDUAL = ([(n, {}) for n in NAMES if "resnet" in n] + [("xception", {}), ("darknet", {})]
            + [(n, dict(zero_init_residual=False))
               for n in ("resnet34", "resnet50", "resnet_nature_comm")])
STD_BOUND = (1e-2, 10.0)


def std_ratio(net: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return (net.forward_features(x).double().std() / x.double().std()).item()


@pytest.mark.parametrize("name, kwargs", RESIDUAL)
def test_residual_backbones_keep_the_input_std_at_init_in_both_modes(name, kwargs):
    torch.manual_seed(0)
    net = BACKBONES.build(name, in_channels=12, **kwargs)
    x = torch.randn(2, 12, 5000, generator=torch.Generator().manual_seed(1))
    for mode in ("eval", "train"):
        ratio = std_ratio(getattr(net, mode)(), x)
        assert STD_BOUND[0] < ratio < STD_BOUND[1], f"{name} ({mode}): std ratio {ratio:.3g}"


@pytest.mark.parametrize("name, kwargs", [
    # damped, not zeroed: over 50 basic blocks a fixed branch gain of 0.5 still compounds
    # to ~5e2 x
    ("resnet", dict(layers=(3, 8, 36, 3), widths=(16, 32, 64, 128), stem_channels=16,
                    zero_init_residual=False)),
    ("resnet", dict(block="bottleneck", layers=(3, 8, 36, 3), widths=(8, 16, 32, 64),
                    stem_channels=16, zero_init_residual=False)),
    ("resnet_nature_comm", dict(num_blocks=40, increase_channels_at=10, subsample_every=8,
                                base_filters=8, zero_init_residual=False)),
    # 46 blocks whose branches end in a leaky ReLU: ~6e3 x at a fixed gain of 0.5
    ("darknet", dict(layers=(2, 4, 16, 16, 8), widths=(16, 32, 64, 128, 256),
                     stem_channels=8)),
])
def test_deep_residual_stacks_keep_the_input_std_at_init(name, kwargs):
    torch.manual_seed(0)
    net = BACKBONES.build(name, in_channels=12, **kwargs).eval()
    x = torch.randn(2, 12, 2048, generator=torch.Generator().manual_seed(1))
    ratio = std_ratio(net, x)
    assert STD_BOUND[0] < ratio < STD_BOUND[1], f"{name} {kwargs}: std ratio {ratio:.3g}"


@pytest.mark.parametrize("name, kwargs", [("resnet34", {}), ("resnet50", {}),
                                          ("resnet18", dict(se_ratio=0.25)),
                                          ("resnet_nature_comm", {})])
def test_zero_init_residual_makes_every_block_its_shortcut(name, kwargs):
    from fastecg.models.backbones.resnet import HannunBlock, _ResidualBlock

    torch.manual_seed(0)
    net = BACKBONES.build(name, in_channels=12, zero_init_residual=True, **kwargs)
    blocks = [m for m in net.modules() if isinstance(m, (_ResidualBlock, HannunBlock))]
    assert blocks
    for mode in ("eval", "train"):
        getattr(net, mode)()
        inputs = []
        handles = [b.register_forward_hook(lambda m, i, o: inputs.append((m, i[0], o)))
                   for b in blocks]
        net.forward_features(torch.randn(2, 12, 1000))
        for h in handles:
            h.remove()
        assert len(inputs) == len(blocks)
        for block, x, y in inputs:
            # the branch adds exactly zero: out = act(shortcut(x)), or pooled, padded x
            assert not block.main(x).any()
            if isinstance(block, _ResidualBlock):
                expected = block.act(block.shortcut(x))
            else:
                expected = torch.nn.functional.pad(block.pool(x),
                                                   (0, 0, 0, block.extra_channels))
            torch.testing.assert_close(y, expected, rtol=0, atol=0)


def test_resnet_training_mode_ignores_the_branch_gain():
    # batch norm follows every damped convolution, so training-mode outputs are those
    # of the undamped (plain He-initialised) network, up to batch norm's eps (made
    # negligible here: some channels' batch variance is small enough for 1e-5 to move
    # the features by ~1e-2)
    from fastecg.models._layers import ConvBnAct, residual_branch_gain
    from fastecg.models.backbones.resnet import _ResidualBlock

    torch.manual_seed(0)
    net = BACKBONES.build("resnet34", in_channels=12, widths=(16, 32, 64, 128),
                          stem_channels=16, zero_init_residual=False).double().train()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.eps = 1e-12
    x = torch.randn(2, 12, 1000, generator=torch.Generator().manual_seed(1)).double()
    with torch.no_grad():
        damped = net.forward_features(x)
        for m in net.modules():
            if isinstance(m, _ResidualBlock):
                [b for b in m.main if isinstance(b, ConvBnAct)][-1][0].weight.div_(
                    residual_branch_gain(16))
        undamped = net.forward_features(x)
    torch.testing.assert_close(damped, undamped, rtol=1e-7, atol=1e-7)


def test_residual_branch_gain():
    from fastecg.models._layers import RESIDUAL_BRANCH_GAIN, residual_branch_gain

    assert [residual_branch_gain(n) for n in (1, 2, 4)] == [RESIDUAL_BRANCH_GAIN] * 3
    assert residual_branch_gain(16) == 0.25
    assert residual_branch_gain(50) == pytest.approx(1 / math.sqrt(50))
    with pytest.raises(ValueError, match="n_blocks"):
        residual_branch_gain(0)
