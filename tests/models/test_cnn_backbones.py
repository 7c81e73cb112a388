"""Family-specific checks of the ResNet, VGG, DenseNet, Xception, Darknet and
multi-scopic backbones: layer counts and widths against the published architectures,
and the behaviours the generic contract test cannot see (test_backbones.py checks the
shared contract for every backbone)."""

import pytest
import torch
from torch import nn

from fastecg.models.backbones.multi_scopic import MultiScopicBlock, MultiScopicStage
from fastecg.models.backbones.resnet import Bottleneck, BasicBlock, HannunBlock
from fastecg.registry import BACKBONES


def convs(net):
    return [m for m in net.modules() if isinstance(m, nn.Conv1d)]


def n_params(net):
    return sum(p.numel() for p in net.parameters())


# -- published layer counts -------------------------------------------------------------

@pytest.mark.parametrize("name, block, n_blocks, n_convs, out_channels", [
    # blocks' convs + stem + one 1x1 projection per stage that changes shape
    ("resnet18", BasicBlock, 8, 16 + 1 + 3, 512),
    ("resnet34", BasicBlock, 16, 32 + 1 + 3, 512),
    ("resnet50", Bottleneck, 16, 48 + 1 + 4, 2048),
    ("resnet_n_bottleneck", Bottleneck, 4, 12 + 1 + 4, 2048),
])
def test_resnet_presets(name, block, n_blocks, n_convs, out_channels):
    net = BACKBONES.build(name)
    assert sum(isinstance(m, block) for m in net.modules()) == n_blocks
    assert len(convs(net)) == n_convs
    assert net.out_channels == out_channels
    assert [info["reduction"] for info in net.feature_info] == [4, 8, 16, 32]


def test_resnet_n_kernels_shrink_with_depth():
    net = BACKBONES.build("resnet_n_bottleneck")
    middle = [b.main[1][0].kernel_size[0] for b in net.modules() if isinstance(b, Bottleneck)]
    assert middle == [19, 15, 11, 7]


def test_hannun_resnet_matches_the_paper():
    net = BACKBONES.build("resnet_nature_comm", in_channels=1)
    blocks = [m for m in net.modules() if isinstance(m, HannunBlock)]
    assert len(blocks) == 16
    # 33 convolutions + the paper's dense layer = 34 layers, all 16 taps
    assert len(convs(net)) == 33
    assert {c.kernel_size[0] for c in convs(net)} == {16}
    assert [b.out_channels for b in blocks] == [32 * 2 ** (i // 4) for i in range(16)]
    assert [isinstance(b.pool, nn.MaxPool1d) for b in blocks] == [i % 2 == 1 for i in range(16)]
    assert not isinstance(blocks[0].main[0], nn.BatchNorm1d)  # the stem's BN-ReLU precedes
    assert all(isinstance(b.main[0], nn.BatchNorm1d) for b in blocks[1:])
    assert 10.3e6 < n_params(net) < 10.6e6
    assert net.compute_features_output_shape(256 * 50, 1) == (1, 256, 50)


def test_hannun_shortcut_zero_pads_new_channels():
    block = HannunBlock(4, 8, stride=2, preact=True).eval()
    for m in block.main.modules():  # silence the main path: the output is the shortcut
        if isinstance(m, nn.Conv1d):
            nn.init.zeros_(m.weight)
    x = torch.randn(2, 4, 11)
    y = block(x)
    torch.testing.assert_close(y[:, :4], nn.functional.max_pool1d(x, 2))
    assert not y[:, 4:].any()


def test_vgg16_and_darknet53_layer_counts():
    assert len(convs(BACKBONES.build("vgg16"))) == 13
    # 52 convolutions + the classifier = Darknet-53
    darknet = BACKBONES.build("darknet")
    assert len(convs(darknet)) == 52
    assert [i["num_chs"] for i in darknet.feature_info] == [64, 128, 256, 512, 1024]


def test_densenet121_widths():
    net = BACKBONES.build("densenet")
    assert [i["num_chs"] for i in net.feature_info] == [256, 512, 1024, 1024]
    # 58 dense layers of two convs, three transitions, the stem
    assert len(convs(net)) == 2 * 58 + 3 + 1


def test_xception_published_widths():
    net = BACKBONES.build("xception", width_mult=1.0)
    assert [i["num_chs"] for i in net.feature_info] == [128, 256, 728, 2048]
    assert 20e6 < n_params(net) < 22e6
    assert BACKBONES.build("xception").out_channels == 1024  # default width_mult 0.5


@pytest.mark.parametrize("name, kwargs", [
    ("resnet", {"kernel_size": 4}),
    ("resnet", {"layers": (2, 2), "widths": (64, 128, 256)}),
    ("resnet", {"block": "basic_se"}),
    ("resnet", {"block": "bottleneck", "groups": 4, "base_width": 4,
                "widths": (8, 16, 32, 64)}),  # 0 inner channels in the first stage
    ("resnet_nature_comm", {"kernel_size": 15}),  # 15 - 2 is odd: no padding matches
    ("vgg16", {"kernel_size": 2}),
    ("densenet", {"compression": 0.0}),
    ("xception", {"width_mult": 0.0}),
    ("multi_scopic", {"num_filters": [[8, 16, 32]]}),
])
def test_bad_configs_raise_value_error(name, kwargs):
    with pytest.raises(ValueError):
        BACKBONES.build(name, **kwargs)


# -- multi-scopic ----------------------------------------------------------------------

def test_multi_scopic_scopes_are_dilations():
    net = BACKBONES.build("multi_scopic")
    dilations = [[[c.dilation[0] for c in convs(stage.branches[j])]
                  for stage in net.stages] for j in range(3)]
    assert dilations == [[[1], [1, 1], [1, 1, 1]], [[2], [2, 4], [8, 8, 8]],
                         [[4], [4, 8], [16, 32, 64]]]
    assert [i["num_chs"] for i in net.feature_info] == [144, 288, 576]
    assert [i["reduction"] for i in net.feature_info] == [2, 4, 8]


def test_multi_scopic_branches_stay_independent():
    # the later stages split their input back into the branches' channel groups, so a
    # change in branch 0 must not reach branches 1 and 2
    torch.manual_seed(0)
    net = BACKBONES.build("multi_scopic").eval()
    x = torch.randn(1, 12, 400)
    with torch.no_grad():
        before = net(x)
        first_conv = convs(net.stages[0].branches[0])[0]
        first_conv.weight.add_(1.0)
        after = net(x)
    width = before.shape[1] // 3
    assert not torch.equal(after[:, :width], before[:, :width])
    torch.testing.assert_close(after[:, width:], before[:, width:], rtol=0, atol=0)


def test_multi_scopic_stage_concatenates_branches():
    blocks = [MultiScopicBlock(4, c, (1,), 3) for c in (2, 3)]
    stage = MultiScopicStage(blocks, split=None)
    assert stage(torch.randn(1, 4, 10)).shape == (1, 5, 5)
    later = MultiScopicStage([MultiScopicBlock(2, 4, (2,), 3), MultiScopicBlock(3, 4, (4,), 3)],
                             split=[2, 3])
    assert later(torch.randn(1, 5, 10)).shape == (1, 8, 5)
