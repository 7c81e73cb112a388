"""The backbone contract, checked for every name in ``BACKBONES`` (issue #7).

Each registered backbone must build by name, give ``compute_features_output_shape``'s
shape for any input length it accepts, reject shorter inputs with a ``ValueError``
naming its minimum, pass gradients to its first layer, report ``feature_info``
consistent with ``forward_intermediates``, compile with ``fullgraph=True`` to the same
output, survive a ``state_dict`` round trip, and take a classifier with
``reset_classifier``. A new backbone is covered by registering it.
"""

import io
import os

import pytest
import torch
from torch import nn

from fastecg.models import Backbone, SequenceTooShort, output_length
from fastecg.registry import BACKBONES

NAMES = BACKBONES.list()
N_LEADS = 12
LENGTHS = (1000, 2500, 5000)
# the expensive checks (compile, gradients, state_dict) run on one short record
SHORT = 1000

# torch.compile backend per backbone: inductor, except for the models listed here, whose
# inductor compile takes over 20 s on a 2-core CPU; they compile with "aot_eager", still
# one whole graph (fullgraph=True) through dynamo and AOTAutograd, without inductor's
# code generation, so that this file stays within a few minutes. Compile times:
# benchmarks/README.md. FASTECG_TEST_COMPILE_BACKEND=inductor (or any backend) overrides
# this for every model.
COMPILE_BACKEND = {name: "aot_eager" for name in (
    "darknet", "densenet", "efficientnet", "efficientnet_v2", "mobilenet_v2",
    "mobilenet_v3", "regnet", "resnet_nature_comm", "rk8_resnet", "xception")}
FORCED_BACKEND = os.environ.get("FASTECG_TEST_COMPILE_BACKEND")


def build(name: str, seed: int = 0) -> Backbone:
    torch.manual_seed(seed)
    return BACKBONES.build(name, in_channels=N_LEADS)


def signal(length: int, batch: int = 2, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, N_LEADS, length, generator=gen)


def test_registry_is_populated():
    # a broken import in one backbone file would silently shrink the parametrisation
    assert len(NAMES) >= 12, NAMES


@pytest.mark.parametrize("name", NAMES)
def test_builds_and_shapes(name):
    net = build(name)
    assert isinstance(net, Backbone)
    assert net.in_channels == N_LEADS
    assert len(net.feature_info) == len(net.stages) >= 1
    assert net.feature_info[-1]["num_chs"] == net.out_channels
    from_dict = BACKBONES.build({"name": name, "in_channels": N_LEADS})
    assert type(from_dict) is type(net)
    net.eval()
    with torch.no_grad():
        for length in LENGTHS:
            x = signal(length)
            y = net(x)
            assert tuple(y.shape) == net.compute_features_output_shape(length, 2), length
            assert y.dtype == x.dtype
            assert torch.isfinite(y).all()
        torch.testing.assert_close(net.forward_features(x), y, rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_odd_lengths_and_minimum(name):
    net = build(name).eval()
    m = net.min_seq_len
    assert m >= 1
    with torch.no_grad():
        for length in sorted({m, m + 1, m + 7, 2 * m + 3, 777, 1001}):
            y = net(signal(length))
            assert tuple(y.shape) == net.compute_features_output_shape(length, 2), length
            assert y.shape[-1] >= 1
        # timm's int indices: the last n stages; the last stage's output is the features
        (last,) = net.forward_intermediates(signal(m), indices=1, intermediates_only=True)
        torch.testing.assert_close(last, net(signal(m)), rtol=0, atol=0)
    too_short = rf"at least {m}\b"
    with pytest.raises(ValueError, match=too_short):
        net.compute_features_output_shape(m - 1)
    with pytest.raises(ValueError, match=too_short):
        net(signal(m - 1))


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_first_layer(name):
    net = build(name).train()
    x = signal(SHORT)
    y = net(x)
    # a random projection, not y.sum(): the sum of a batch-normalised output has no
    # gradient with respect to the layers before the norm
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(2))
    (y * weights).sum().backward()
    first_name, first = next(iter(net.named_parameters()))
    assert first.grad is not None, first_name
    assert first.grad.abs().sum() > 0, first_name
    for pname, p in net.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", NAMES)
def test_feature_info_matches_intermediates(name):
    net = build(name).eval()
    length = LENGTHS[-1]  # long enough that L / L_i resolves the largest reduction
    x = signal(length, batch=1)
    with torch.no_grad():
        final, intermediates = net.forward_intermediates(x)
        features = net.forward_features(x)
        first_only = net.forward_intermediates(x, indices=[0], stop_early=True,
                                               intermediates_only=True)
    torch.testing.assert_close(final, features, rtol=0, atol=0)
    assert len(intermediates) == len(net.feature_info)
    for i, (info, feat) in enumerate(zip(net.feature_info, intermediates)):
        assert set(info) >= {"num_chs", "reduction", "module"}
        assert feat.shape[1] == info["num_chs"], (i, info)
        expected = length / info["reduction"]
        assert abs(feat.shape[-1] - expected) <= max(2.0, 0.05 * expected), (i, info,
                                                                           feat.shape)
        assert net.get_submodule(info["module"]) is net.stages[i]
    reductions = [info["reduction"] for info in net.feature_info]
    assert reductions == sorted(reductions)
    torch.testing.assert_close(first_only[0], intermediates[0], rtol=0, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_compile_matches_eager(name):
    net = build(name).eval()
    x = signal(SHORT)
    # Backbone.forward is one code object shared by every model; start each model
    # from a clean dynamo cache so the recompile limit is never reached
    torch._dynamo.reset()
    backend = FORCED_BACKEND or COMPILE_BACKEND.get(name, "inductor")
    compiled = torch.compile(net, fullgraph=True, backend=backend)
    with torch.no_grad():
        got = compiled(x)
        want = net(x)
    scale = want.abs().max().item()
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * max(scale, 1.0))
    torch._dynamo.reset()


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    net = build(name, seed=0)
    with torch.no_grad():
        net.train()(signal(SHORT, seed=3))  # move BN running statistics off their init
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    fresh = build(name, seed=1)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    net.eval()
    fresh.eval()
    x = signal(SHORT)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), net(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_reset_classifier(name):
    net = build(name).eval()
    x = signal(net.min_seq_len + 5)
    with torch.no_grad():
        features = net(x)
        net.reset_classifier(3)
        logits = net(x)
        pooled = net.forward_head(net.forward_features(x), pre_logits=True)
    assert net.num_classes == 3 and logits.shape == (2, 3)
    torch.testing.assert_close(pooled, features.mean(-1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits, net.head.fc(pooled), rtol=0, atol=0)
    net.reset_classifier(5, global_pool="max")
    with torch.no_grad():
        assert net(x).shape == (2, 5)
    net.reset_classifier(0)  # as built: no head, feature maps out
    assert net.num_classes == 0 and not any(k.startswith("head.") for k in net.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(net(x), features, rtol=0, atol=0)


@pytest.mark.parametrize("wrong, suggestion", [
    ("resnet_nature", "resnet_nature_comm"),
    ("densnet", "densenet"),
    ("resnet_n_bottle_neck", "resnet_n_bottleneck"),
])
def test_unknown_backbone_suggests_close_names(wrong, suggestion):
    with pytest.raises(KeyError, match=f"did you mean.*'{suggestion}'"):
        BACKBONES.build(wrong)
    with pytest.raises(KeyError, match=f"'{suggestion}'"):
        BACKBONES.build({"name": wrong, "in_channels": N_LEADS})


@pytest.mark.parametrize("module", [
    nn.Conv1d(2, 2, 5, stride=3, padding=1, dilation=2),
    nn.Conv1d(2, 2, 5, padding="same", dilation=2),
    nn.MaxPool1d(3, 2, 1),
    nn.MaxPool1d(2, 2, ceil_mode=True),
    nn.AvgPool1d(4, 3, 1, ceil_mode=True),
    nn.ConvTranspose1d(2, 2, 4, stride=2, padding=1),
    nn.ConstantPad1d((3, 5), 0.0),
    nn.ZeroPad1d(2),
    nn.ReflectionPad1d((1, 4)),
    nn.ReplicationPad1d(3),
    nn.CircularPad1d((2, 1)),
    nn.Upsample(scale_factor=2),
    nn.Upsample(scale_factor=1.5),
    nn.Upsample(scale_factor=0.5, mode="linear"),
    nn.MaxPool1d(6, stride=4, padding=2, ceil_mode=True),
    nn.AdaptiveAvgPool1d(7),
], ids=lambda m: f"{type(m).__name__}-{m.extra_repr()}")
def test_output_length_of_layers(module):
    for length in (1, 2, 3, 9, 10, 31):
        try:
            real = module(torch.randn(1, 2, length)).shape[-1]
        except RuntimeError:  # too short for the layer: output_length says so too
            with pytest.raises(SequenceTooShort):
                output_length(module, length)
            continue
        assert output_length(module, length) == real


def test_forward_intermediates_refuses_indices_outside_the_stages():
    net = BACKBONES.build("resnet18", in_channels=1).eval()
    x = torch.randn(1, 1, 256)
    n = len(net.stages)
    for bad in ([n], [-n - 1], n + 2, 0, [], [1.0]):
        with pytest.raises(ValueError, match="forward_intermediates"):
            net.forward_intermediates(x, indices=bad, intermediates_only=True)
    every = net.forward_intermediates(x, intermediates_only=True)
    got = net.forward_intermediates(x, indices=[-1, 0], intermediates_only=True)
    assert torch.equal(got[0], every[0]) and torch.equal(got[1], every[-1])
