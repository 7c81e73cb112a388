"""Family-specific checks of the MobileNet, EfficientNet, RegNet and transformer
backbones, and of the builders the backbones share (stages, stochastic depth, weight
initialisation); the shared contract is checked for every backbone in test_backbones.py."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from fastecg.models._layers import (ConvBnAct, DropPath, SkipBlock, SqueezeExcite,
                                    build_stages, drop_path_rates, init_weights)
from fastecg.models.backbones.efficientnet import FusedMBConv
from fastecg.models.backbones.mobilenet import InvertedResidual
from fastecg.models.backbones.regnet import RegNetBlock, regnet_widths
from fastecg.models.backbones.resnet import _ResidualBlock
from fastecg.models.backbones.transformer import PositionalEncoding, _pre_norm_layer
from fastecg.registry import BACKBONES


def blocks_of(net, cls):
    return [m for m in net.modules() if isinstance(m, cls)]


# -- RegNet ---------------------------------------------------------------------------

@pytest.mark.parametrize("params,widths,depths", [
    # Radosavovic et al. 2020 / pycls model zoo
    ((16, 48, 27.89, 2.09, 8), [48, 104, 208, 440], [1, 3, 6, 6]),      # RegNetY-400MF
    ((14, 56, 38.84, 2.40, 16), [64, 128, 320, 768], [1, 3, 8, 2]),     # RegNetY-800MF
    ((22, 24, 24.48, 2.54, 16), [32, 64, 160, 384], [1, 2, 7, 12]),     # RegNetX-400MF
    ((27, 48, 20.71, 2.65, 24), [48, 120, 336, 888], [2, 6, 17, 2]),    # RegNetY-1.6GF
])
def test_regnet_widths_match_published_designs(params, widths, depths):
    w, d, g = regnet_widths(*params)
    assert (w, d) == (widths, depths)
    assert all(wi % gi == 0 for wi, gi in zip(w, g))


def test_regnet_default_is_y400mf_with_grouped_conv_and_se():
    net = BACKBONES.build("regnet", in_channels=12)
    blocks = blocks_of(net, RegNetBlock)
    assert len(blocks) == 16 and net.out_channels == 440
    grouped = blocks[-1].conv[1][0]
    assert grouped.groups == 440 // 8
    assert all(any(isinstance(m, SqueezeExcite) for m in b.modules()) for b in blocks)
    x_variant = BACKBONES.build("regnet", variant="x_400mf")
    assert not blocks_of(x_variant, SqueezeExcite)
    with pytest.raises(ValueError, match="variant"):
        BACKBONES.build("regnet", variant="y_9000gf")


def test_regnet_strided_block_shortcut_length_matches_main_path():
    block = RegNetBlock(16, 24, stride=2, group_width=8)
    for n in (1, 2, 7, 10):
        y = block(torch.randn(2, 16, n))
        assert y.shape == (2, 24, block.output_length(n)) == (2, 24, math.ceil(n / 2))


# -- MobileNet / EfficientNet --------------------------------------------------------

def test_inverted_residual_skip_only_when_shape_is_kept():
    assert InvertedResidual(16, 16, 64, stride=1).has_skip
    assert not InvertedResidual(16, 16, 64, stride=2).has_skip
    assert not InvertedResidual(16, 24, 64, stride=1).has_skip
    block = InvertedResidual(16, 16, 16, se_channels=8)  # no expansion conv
    assert len(block.conv) == 3 and isinstance(block.conv[1], SqueezeExcite)
    assert block(torch.randn(2, 16, 9)).shape == (2, 16, 9)


def test_mobilenet_v3_large_and_small():
    large = BACKBONES.build("mobilenet_v3")
    small = BACKBONES.build("mobilenet_v3", variant="small")
    assert (large.out_channels, small.out_channels) == (960, 576)
    assert len(blocks_of(large, InvertedResidual)) == 15
    assert len(blocks_of(small, InvertedResidual)) == 11
    se = blocks_of(large, SqueezeExcite)
    assert len(se) == 8 and all(isinstance(m.gate, nn.Hardsigmoid) for m in se)
    assert blocks_of(large, nn.Hardswish)
    wide = BACKBONES.build("mobilenet_v3", kernel_scale=2)
    assert {m.kernel_size[0] for m in blocks_of(wide, nn.Conv1d) if m.groups > 1} == {7, 11}


def test_mobilenet_v1_v2_widths():
    assert BACKBONES.build("mobilenet_v1").out_channels == 1024
    assert BACKBONES.build("mobilenet_v1", width_mult=0.5).out_channels == 512
    v2 = BACKBONES.build("mobilenet_v2")
    assert v2.out_channels == 1280 and len(blocks_of(v2, InvertedResidual)) == 17
    assert BACKBONES.build("mobilenet_v2", num_features=0).out_channels == 320


def test_efficientnet_scaling_and_stochastic_depth():
    b0 = BACKBONES.build("efficientnet")
    blocks = blocks_of(b0, InvertedResidual)
    assert len(blocks) == 16 and b0.out_channels == 1280
    rates = [b.drop_path.p for b in blocks if isinstance(b.drop_path, DropPath)]
    assert rates == sorted(rates) and 0 < rates[-1] < 0.2
    b2 = BACKBONES.build("efficientnet", variant="b2")
    assert len(blocks_of(b2, InvertedResidual)) == 23  # ceil(1.2 n) per row
    assert b2.out_channels == 1408  # make_divisible(1280 * 1.1)
    assert len(blocks_of(BACKBONES.build("efficientnet", depth_mult=2.0),
                         InvertedResidual)) == 32


def test_efficientnet_drop_path_is_random_in_train_only():
    net = BACKBONES.build("efficientnet", in_channels=1, drop_path_rate=0.9,
                          width_mult=0.25, num_features=0)
    x = torch.randn(8, 1, 256)
    net.eval()
    torch.testing.assert_close(net(x), net(x))
    net.train()
    torch.manual_seed(0)
    a = net(x)
    torch.manual_seed(1)
    assert not torch.allclose(a, net(x))


def test_efficientnet_v2_fused_early_mbconv_with_se_late():
    for variant, n_fused, n_mb in (("b0", 5, 16), ("s", 10, 30)):
        net = BACKBONES.build("efficientnet_v2", variant=variant)
        fused, mb = blocks_of(net, FusedMBConv), blocks_of(net, InvertedResidual)
        assert (len(fused), len(mb)) == (n_fused, n_mb)
        assert not any(m.groups > 1 for b in fused for m in blocks_of(b, nn.Conv1d))
        assert all(blocks_of(b, SqueezeExcite) for b in mb)
        # fused stages come before every MBConv stage
        stage_of = {id(b): i for i, s in enumerate(net.stages) for b in s}
        assert max(stage_of[id(b)] for b in fused) < min(stage_of[id(b)] for b in mb)


# -- Transformer -------------------------------------------------------------------------

def test_sincos_encoding_matches_formula_for_any_length():
    pe = PositionalEncoding(7, "sincos")
    assert "inv_freq" not in pe.state_dict()
    for n in (1, 13, 200, 1001):
        got = pe.encoding(n, torch.float64, torch.device("cpu"))[0].numpy()
        pos = np.arange(n)[None, :]
        i = np.arange(7)[:, None] // 2
        angle = pos / 10000.0 ** (2 * i / 7)
        expected = np.where(np.arange(7)[:, None] % 2 == 0, np.sin(angle), np.cos(angle))
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)  # float32 angles


def test_learned_encoding_interpolates_to_other_lengths():
    pe = PositionalEncoding(4, "learned", max_len=10)
    table = pe.pos_embed
    torch.testing.assert_close(pe.encoding(10, torch.float32, table.device), table)
    longer = pe.encoding(37, torch.float32, table.device)
    assert longer.shape == (1, 4, 37)
    # linear interpolation stays inside the table's range channel by channel
    assert torch.all(longer.amax(-1) <= table.amax(-1) + 1e-6)
    net = BACKBONES.build("transformer", pos_embed="learned", max_len=40, depth=1)
    assert net(torch.randn(1, 12, 2500)).shape == (1, 128, 100)


def test_transformer_tokens_and_odd_lengths():
    net = BACKBONES.build("transformer", depth=2, patch_size=10).eval()
    assert net.min_seq_len == 10
    x = torch.randn(2, 12, 1234)
    assert net(x).shape == (2, 128, 123) == net.compute_features_output_shape(1234, 2)
    assert isinstance(net.stages[-1].norm, nn.LayerNorm)
    assert isinstance(net.stages[0].norm, nn.Identity)


@pytest.mark.parametrize("grad", [False, True])
def test_compile_path_of_encoder_layer_matches_layer(grad):
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True,
                                       norm_first=True).eval()
    x = torch.randn(3, 11, 16).transpose(0, 1).contiguous().transpose(0, 1)
    with torch.set_grad_enabled(grad):
        torch.testing.assert_close(_pre_norm_layer(layer, x), layer(x),
                                   rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="pre-norm"):
        from fastecg.models.backbones.transformer import TransformerStage
        TransformerStage([nn.TransformerEncoderLayer(16, 4, 32, batch_first=True)])


# -- shared builders: stages, stochastic depth, initialisation ---------------------------

def test_drop_path_rates_rise_linearly_to_the_last_block():
    assert drop_path_rates(0.2, 3) == pytest.approx([0.0, 0.1, 0.2])
    assert drop_path_rates(0.3, 1) == [0.0]
    assert drop_path_rates(0.0, 4) == [0.0] * 4
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="drop_path_rate"):
            drop_path_rates(bad, 4)


@pytest.mark.parametrize("name", ["resnet", "mobilenet_v2", "mobilenet_v3", "efficientnet",
                                  "efficientnet_v2"])
def test_backbones_share_the_drop_path_schedule(name):
    net = BACKBONES.build(name, drop_path_rate=0.3)
    blocks = blocks_of(net, (_ResidualBlock, SkipBlock))
    expected = drop_path_rates(0.3, len(blocks))
    got = [b.drop_path.p if isinstance(b.drop_path, DropPath) else None for b in blocks]
    # blocks without a skip (stride or width change in MobileNet/EfficientNet) have none
    assert all(g is None or g == pytest.approx(e) for g, e in zip(got, expected)), got
    assert sum(g is not None for g in got) >= len(blocks) // 2


def test_build_stages_threads_channels_and_numbers_blocks():
    slots = []

    def block(slot, channels):
        slots.append((slot, channels))
        if slot.index == 1:
            return nn.MaxPool1d(2)  # no out_channels: keeps the width
        return ConvBnAct(channels, 8 * (slot.stage + 1), 3)

    stages, channels = build_stages(4, [2, 1], block, drop_path_rate=0.5,
                                    tail=lambda c: [ConvBnAct(c, 32, 1), nn.ReLU()])
    assert channels == [8, 32]
    assert [len(s) for s in stages] == [2, 3]
    assert [(s.stage, s.index, s.block, s.drop_path, c) for s, c in slots] == [
        (0, 0, 0, 0.0, 4), (0, 1, 1, 0.25, 8), (1, 0, 2, 0.5, 8)]
    assert stages[1](stages[0](torch.randn(1, 4, 16))).shape == (1, 32, 8)


def test_init_weights_is_he_normal_with_zero_bias():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(64, 128, 3), nn.BatchNorm1d(128))
    with torch.no_grad():
        net[1].weight.fill_(3.0)
    init_weights(net)  # fan_out = 128 * 3
    assert net[0].weight.std().item() == pytest.approx(math.sqrt(2 / 384), rel=0.03)
    assert not net[0].bias.any()
    assert torch.equal(net[1].weight, torch.ones(128)) and not net[1].bias.any()
    init_weights(net, mode="fan_in", nonlinearity="leaky_relu", negative_slope=0.1)
    gain = math.sqrt(2 / (1 + 0.1 ** 2))
    assert net[0].weight.std().item() == pytest.approx(gain / math.sqrt(64 * 3), rel=0.03)
