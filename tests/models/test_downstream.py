"""Downstream models (ECG_CRNN, ECG_SEQ_LAB_NET, ECG_FCN), attention layers and GradCam.

Most tests run on a small local backbone built on the ``Backbone`` contract, so they
check the downstream code alone, fast; the contract is the only thing they share with
the registered backbones (which the generic backbone test covers).

Tests run on one thread: on a busy shared machine, OpenMP threads spin-waiting for each
other make the training steps of these tiny networks many times slower than one thread.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastecg.data import synthetic_ecg
from fastecg.models import (ECG_CRNN, ECG_FCN, ECG_SEQ_LAB_NET, Backbone, GlobalContext,
                            GradCam, NonLocal, SelfAttention, SqueezeExcitation)
from fastecg.models._layers import ConvBnAct
from fastecg.registry import ATTN_LAYERS, BACKBONES, MODELS

ATTENTIONS = ["self_attention", "squeeze_excitation", "global_context", "non_local"]


class TinyBackbone(Backbone):
    """``stem (stride 2) -> stages (stride 2 each)``: reduction 16 with three stages."""

    def __init__(self, in_channels: int = 12, widths=(8, 16, 16), kernel_size: int = 5,
                 pad_stem: bool = True):
        super().__init__(in_channels)
        self.stem = (ConvBnAct(in_channels, widths[0], 7, stride=2) if pad_stem
                     else nn.Conv1d(in_channels, widths[0], 7, stride=2))
        chans = [widths[0], *widths]
        self.stages = nn.ModuleList(
            nn.Sequential(ConvBnAct(chans[i], chans[i + 1], kernel_size, stride=2),
                          ConvBnAct(chans[i + 1], chans[i + 1], kernel_size))
            for i in range(len(widths)))
        self._finish(widths)


pytestmark = pytest.mark.usefixtures("one_thread")


def _zscore(x: np.ndarray) -> torch.Tensor:
    x = (x - x.mean(-1, keepdims=True)) / (x.std(-1, keepdims=True) + 1e-6)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def _train(model, x, y, steps, batch_size=32, lr=3e-3, seed=0):
    """Plain AdamW + BCE-with-logits on random minibatches; returns the model in eval mode."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch_size,), generator=gen)
        loss = F.binary_cross_entropy_with_logits(model(x[idx])[:, 0], y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


# -- a labelled synthetic task: heart rate ------------------------------------------------
def rate_task(n: int, seed: int):
    """Balanced binary task, 12 leads x 1000 samples ("10 s at 100 Hz").

    Class 0: ``synthetic_ecg`` at 100 Hz for 10 s (50-110 bpm). Class 1: the same
    generator at 50 Hz for 20 s, read as 100 Hz, i.e. played at double speed
    (100-220 bpm, waves half as wide). No mains hum, so that no aliasing artefact tells
    the classes apart; noise and wander are the generator's.
    """
    slow = synthetic_ecg(n // 2, 12, fs=100.0, duration_s=10.0, seed=seed, mains_mv=0.0)
    fast = synthetic_ecg(n - n // 2, 12, fs=50.0, duration_s=20.0, seed=seed + 1,
                         mains_mv=0.0)
    x = _zscore(np.concatenate([slow, fast]))
    y = torch.cat([torch.zeros(len(slow)), torch.ones(len(fast))])
    return x, y


# a small ResNet (8k parameters with the head), built through the registry by dict
SMALL_RESNET = {"name": "resnet", "layers": (1, 1, 1), "widths": (8, 16, 32),
                "strides": (1, 2, 2), "stem_channels": 8, "stem_kernel": 7}


def test_crnn_learns_heart_rate_on_held_out_records():
    if "resnet" not in BACKBONES:
        pytest.skip("backbone 'resnet' is not registered")
    torch.manual_seed(0)
    x_train, y_train = rate_task(256, seed=0)
    x_test, y_test = rate_task(128, seed=1000)  # other seeds: other records
    model = ECG_CRNN(["tachycardia"], n_leads=12,
                     config={"backbone": SMALL_RESNET, "global_pool": "avg",
                             "attention": "squeeze_excitation"})
    _train(model, x_train, y_train, steps=300)
    with torch.no_grad():
        accuracy = ((model(x_test)[:, 0] > 0).float() == y_test).float().mean().item()
    # balanced classes: chance is 0.5; measured 0.98 (seed 0, 1 thread)
    assert accuracy >= 0.9, accuracy


# -- shapes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("seq_len", [1, 2, 37, 500, 1000, 1234, 4097])
def test_fcn_output_length_equals_input_length(seq_len):
    model = ECG_FCN(["N", "P", "QRS", "T"], n_leads=12, backbone=TinyBackbone())
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 12, seq_len))
    assert out.shape == (2, seq_len, 4)
    assert model.compute_output_shape(seq_len, 2) == (2, seq_len, 4)


def test_fcn_rejects_input_shorter_than_backbone_minimum():
    model = ECG_FCN(3, backbone=TinyBackbone(pad_stem=False))  # 7-tap stem, no padding
    assert model.min_seq_len == 7
    with pytest.raises(ValueError, match="at least 7"):
        model(torch.randn(1, 12, 6))


@pytest.mark.parametrize("recover_length", [True, False])
def test_seq_lab_net_shape(recover_length):
    model = ECG_SEQ_LAB_NET(["N", "S", "V"], n_leads=12, backbone=TinyBackbone(),
                            recover_length=recover_length).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 12, 999))
    expected = model.compute_output_shape(999, 3)
    assert out.shape == expected
    assert expected == ((3, 999, 3) if recover_length else (3, 63, 3))  # ceil(999/16) = 63


def test_torch_ecgs_nested_sub_configs_are_named_in_the_error():
    # torch_ecg's {"name": x, x: {...}} (from its model_configs) is not fastecg's form:
    # the error says so, instead of "unexpected keyword argument 'lstm'"
    for key, spec in (("rnn", {"name": "lstm", "lstm": {"hidden_sizes": [12, 24]},
                               "linear": {"out_channels": [8]}}),
                      ("attention", {"name": "squeeze_excitation",
                                     "squeeze_excitation": {"reduction": 8}}),
                      ("backbone", {"name": "resnet", "resnet": {"layers": [1, 1]}})):
        with pytest.raises(TypeError, match=f"{key}: arguments nested under .*beside the name"):
            ECG_CRNN(["a"], n_leads=12, config={key: spec})
    # the form the message gives builds
    model = ECG_CRNN(["a"], n_leads=12, config={
        "backbone": TinyBackbone(), "rnn": {"name": "lstm", "hidden_size": 8},
        "attention": {"name": "squeeze_excitation", "reduction": 8}})
    assert model.rnn.out_channels == 16


def test_compute_output_shape_without_a_length_as_torch_ecg():
    # torch_ecg's compute_output_shape(seq_len=None, batch_size=None): the length unknown
    # (None) where it depends on the input's, the other sizes still given.
    backbone = TinyBackbone()
    assert backbone.compute_features_output_shape() == (None, 16, None)
    crnn = ECG_CRNN(["a", "b"], backbone=TinyBackbone())
    assert crnn.compute_output_shape() == (None, 2)
    assert crnn.compute_features_output_shape(batch_size=4) == (4, 16, None)
    for recover_length in (True, False):
        seq = ECG_SEQ_LAB_NET(["N", "S", "V"], backbone=TinyBackbone(),
                              recover_length=recover_length)
        assert seq.compute_output_shape() == (None, None, 3)
        assert seq.compute_output_shape(batch_size=2) == (2, None, 3)
    fcn = ECG_FCN(["N", "P", "QRS", "T"], backbone=TinyBackbone())
    assert fcn.compute_output_shape(batch_size=2) == (2, None, 4)


@pytest.mark.parametrize("attention", [None] + ATTENTIONS)
@pytest.mark.parametrize("rnn", [None, "lstm", {"name": "gru", "hidden_size": 8,
                                                "bidirectional": False}])
@pytest.mark.parametrize("pool", ["max", "avg", "attn"])
def test_crnn_shapes(attention, rnn, pool):
    model = ECG_CRNN(["a", "b", "c"], n_leads=2,
                     config={"backbone": TinyBackbone(2), "rnn": rnn, "attention": attention,
                             "global_pool": pool}).eval()
    x = torch.randn(4, 2, 300)
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model(x)
    assert logits.shape == model.compute_output_shape(300, 4) == (4, 3)
    assert feats.shape == model.compute_features_output_shape(300, 4)
    width = {None: 16, "lstm": 256}.get(rnn if isinstance(rnn, (str, type(None))) else "gru", 8)
    assert feats.shape == (4, width, 19)


def test_models_are_registered_and_built_by_dict():
    assert {"ECG_CRNN", "ECG_SEQ_LAB_NET", "ECG_FCN"} <= set(MODELS.list())
    model = MODELS.build({"name": "ECG_CRNN", "classes": ["AF"], "n_leads": 1,
                          "config": {"cnn": TinyBackbone(1), "attn": "non_local"}})
    assert isinstance(model, ECG_CRNN) and isinstance(model.attention, NonLocal)


@pytest.mark.parametrize("name", BACKBONES.list())
def test_downstream_models_on_every_registered_backbone(name):
    """ECG_CRNN, ECG_FCN and GradCam on each backbone's defaults, at its shortest input
    and at an odd length."""
    torch.manual_seed(0)
    crnn = ECG_CRNN(["a", "b"], n_leads=12, backbone=name, attention="self_attention")
    fcn = ECG_FCN(["N", "P", "QRS", "T"], n_leads=12, backbone={"name": name})
    n_min = crnn.min_seq_len
    crnn.eval()
    fcn.eval()
    with torch.no_grad():
        assert crnn(torch.randn(1, 12, n_min)).shape == (1, 2)
        for seq_len in (n_min, n_min + 37):
            assert fcn(torch.randn(1, 12, seq_len)).shape == (1, seq_len, 4)
    cam = GradCam(crnn)
    assert cam.target_name == "backbone." + crnn.backbone.feature_info[-1]["module"]
    saliency = cam(torch.randn(2, 12, n_min + 37), target_class=1)
    assert saliency.shape == (2, n_min + 37) and torch.isfinite(saliency).all()
    assert _hooks(crnn) == []


# -- complete at construction: state_dict, reset_classifier, compile ----------------------
def _crnn():
    return ECG_CRNN(["a", "b"], n_leads=12, backbone=TinyBackbone(), attention="self_attention",
                    clf_hidden=(16,))


def _seq_lab():
    return ECG_SEQ_LAB_NET(["N", "S", "V"], n_leads=12, backbone=TinyBackbone(),
                           rnn=None, attention="global_context")


def _fcn():
    return ECG_FCN(["N", "P", "QRS", "T"], n_leads=12, backbone=TinyBackbone())


@pytest.mark.parametrize("make", [_crnn, _seq_lab, _fcn], ids=["crnn", "seq_lab", "fcn"])
def test_built_model_is_complete_and_state_dict_round_trips(make):
    torch.manual_seed(0)
    model = make()
    assert not model.has_lazy_modules()
    assert not any(isinstance(m, nn.modules.lazy.LazyModuleMixin) for m in model.modules())
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert model.materialize(500) is model  # kept for 0.1.0 code: nothing to do
    assert model.training
    for k, v in state.items():
        torch.testing.assert_close(model.state_dict()[k], v, rtol=0, atol=0)
    model.eval()
    x = torch.randn(2, 12, 800)
    with torch.no_grad():
        expected = model(x)

    torch.manual_seed(1)  # other initial weights
    fresh = make().eval()
    with torch.no_grad():
        assert not torch.allclose(fresh(x), expected)
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), expected, rtol=0, atol=0)
    assert sum(p.numel() for p in fresh.parameters()) == sum(p.numel()
                                                             for p in model.parameters())


class LazyBackbone(TinyBackbone):
    """A user's backbone with a lazy layer: the one case ``materialize`` is for."""

    def __init__(self):
        super().__init__()
        self.stages[0][0][0] = nn.LazyConv1d(8, 5, stride=2, padding=2, bias=False)


def test_materialize_initialises_lazy_modules_a_user_plugs_in():
    torch.manual_seed(0)
    model = ECG_CRNN(["a", "b"], n_leads=12, backbone=LazyBackbone())
    assert model.has_lazy_modules()
    model.train()
    bn_before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    assert model.materialize(500) is model
    assert not model.has_lazy_modules()
    assert model.training  # state restored
    assert not any(isinstance(m, nn.modules.lazy.LazyModuleMixin) for m in model.modules())
    for k, v in bn_before.items():  # the dummy forward ran in eval mode
        torch.testing.assert_close(model.state_dict()[k], v, rtol=0, atol=0)


@pytest.mark.parametrize("make", [_crnn, _seq_lab, _fcn], ids=["crnn", "seq_lab", "fcn"])
def test_reset_classifier_replaces_only_the_output_layer(make):
    torch.manual_seed(0)
    model = make().eval()
    x = torch.randn(2, 12, 300)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.reset_classifier(["x", "y", "z", "w", "v"])
    assert model.classes == ["x", "y", "z", "w", "v"] and model.n_classes == 5
    with torch.no_grad():
        out = model(x)
    assert out.shape == model.compute_output_shape(300, 2) and out.shape[-1] == 5
    after = model.state_dict()
    changed = {k for k in before if k not in after or after[k].shape != before[k].shape
               or not torch.equal(after[k], before[k])}
    # the output layer alone: clf.<last>.weight/bias, or the FCN's 1x1 head conv
    assert changed and all(k.split(".")[0] in ("clf", "head") for k in changed), changed
    assert len({k.rsplit(".", 1)[0] for k in changed}) == 1, changed

    model.reset_classifier(0)  # no classifier: the features it would have classified
    assert model.n_classes == 0 and model.classes == []
    with torch.no_grad():
        feats = model(x)
    assert feats.shape == model.compute_output_shape(300, 2)
    assert feats.shape[-1] == {"ECG_CRNN": 16, "ECG_SEQ_LAB_NET": 16,
                               "ECG_FCN": 64}[type(model).__name__]
    model.reset_classifier(3)
    assert model.classes == ["0", "1", "2"]
    with torch.no_grad():
        assert model(x).shape[-1] == 3


def test_reset_classifier_global_pool():
    model = ECG_CRNN(["a"], n_leads=12, backbone=TinyBackbone())
    model.reset_classifier(2, global_pool="attn")
    assert model.config["global_pool"] == "attn"
    assert model(torch.randn(2, 12, 300)).shape == (2, 2)
    with pytest.raises(KeyError, match="did you mean 'avg'"):
        model.reset_classifier(2, global_pool="avgg")
    with pytest.raises(ValueError, match=">= 0"):
        model.reset_classifier(-1)


@pytest.mark.slow
@pytest.mark.parametrize("make", [_crnn, _fcn], ids=["crnn", "fcn"])
def test_compile_fullgraph_matches_eager(make):
    torch.manual_seed(0)
    model = make().eval()
    x = torch.randn(2, 12, 1000)
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)


# -- bad configs ----------------------------------------------------------------------------
def test_unknown_attention_name_lists_close_matches():
    with pytest.raises(KeyError, match="self_attention"):
        ECG_CRNN(["a"], backbone=TinyBackbone(), attention="self_atention")
    with pytest.raises(KeyError, match="non_local"):
        ECG_SEQ_LAB_NET(["a"], backbone=TinyBackbone(), attention={"name": "nonlocal"})


def test_unknown_backbone_name_raises_key_error():
    with pytest.raises(KeyError, match="unknown backbone 'resnett'") as err:
        ECG_CRNN(["a"], backbone="resnett")
    if "resnet" in BACKBONES:
        assert "did you mean 'resnet'" in str(err.value)


def test_unknown_config_key_and_options():
    with pytest.raises(KeyError, match="global_pool"):
        ECG_CRNN(["a"], config={"backbone": TinyBackbone(), "global_pol": "max"})
    with pytest.raises(KeyError, match="unknown global_pool"):
        ECG_CRNN(["a"], backbone=TinyBackbone(), global_pool="median")
    with pytest.raises(KeyError, match="lstm"):
        ECG_CRNN(["a"], backbone=TinyBackbone(), rnn="lstn")
    with pytest.raises(ValueError, match="leads"):
        ECG_CRNN(["a"], n_leads=1, backbone=TinyBackbone(12))
    with pytest.raises(ValueError, match="decoder_channels"):
        ECG_FCN(["a"], backbone=TinyBackbone(), decoder_channels=[8, 8])
    with pytest.raises(ValueError, match="num_heads=3"):
        ATTN_LAYERS.build({"name": "self_attention", "num_heads": 3}, channels=16)


@pytest.mark.parametrize("name", ["squeeze_excitation", "global_context", "non_local"])
def test_attention_reduction_takes_a_fraction_or_torch_ecgs_ratio(name):
    """torch_ecg's ``reduction=16`` (a ratio) was taken as a fraction: a silent gate 16x
    wider than its input (8.4 M parameters for SE on 512 channels instead of 33 k), and
    0 or a negative value a width-1 one. A ratio above 1 now means channels / r, the
    same layer as the fraction 1/r; what is neither is refused."""
    for ratio in (16, 8, 1.5):
        a = ATTN_LAYERS.build({"name": name, "reduction": ratio}, channels=512)
        b = ATTN_LAYERS.build({"name": name, "reduction": 1 / ratio}, channels=512)
        assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]
    se = ATTN_LAYERS.build({"name": name, "reduction": 16}, channels=512)
    assert sum(p.numel() for p in se.parameters()) < 10 ** 5
    if name == "squeeze_excitation":  # floored as torch_ecg's channels // r
        for channels, ratio in ((98, 49), (309, 103), (535, 107)):
            gate = ATTN_LAYERS.build({"name": name, "reduction": ratio}, channels=channels)
            assert next(gate.parameters()).shape[0] == channels // ratio
    for bad in (0, -0.25, True, math.inf, math.nan, "16"):
        with pytest.raises(ValueError, match=r"fraction of the channels in \(0, 1\] or a ratio"):
            ATTN_LAYERS.build({"name": name, "reduction": bad}, channels=512)
    clf = ECG_CRNN(["a"], backbone=TinyBackbone(), attention={"name": name, "reduction": 16})
    assert clf(torch.randn(2, 12, 200)).shape == (2, 1)


# torch_ecg's names (its ``@ATTN_LAYERS.register(name=...)`` in models/_nets.py:
# sa -> SelfAttention, se and se_block -> SEBlock, gc -> GlobalContextBlock,
# nl -> NonLocalBlock), and the layer of ours each stands for
TORCH_ECG_ATTENTIONS = {"sa": "self_attention", "se": "squeeze_excitation",
                        "se_block": "squeeze_excitation", "gc": "global_context",
                        "nl": "non_local"}


@pytest.mark.parametrize("short, name", TORCH_ECG_ATTENTIONS.items())
def test_torch_ecg_attention_names_build_our_layers(short, name):
    """A torch_ecg config's ``attn`` name was an unknown attention layer."""
    assert ATTN_LAYERS.get(short) is ATTN_LAYERS.get(name)
    torch.manual_seed(0)
    ours = ATTN_LAYERS.build({"name": name}, channels=32)
    torch.manual_seed(0)
    theirs = ATTN_LAYERS.build({"name": short}, channels=32)
    assert type(theirs) is type(ours)
    for (k, a), (k2, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    # as a torch_ecg model config spells it: the ``attn`` key and the short name
    for build in (lambda: ECG_CRNN(["a", "b"], backbone=TinyBackbone(), attn={"name": short}),
                  lambda: ECG_SEQ_LAB_NET(["a"], backbone=TinyBackbone(), attn=short)):
        model = build()
        assert type(model.attention) is type(ours)


def test_torch_ecg_attention_short_names_are_all_known():
    # the names torch_ecg registers, read from its source (not imported: its import
    # pulls in optional dependencies); CBAM has no fastecg counterpart, and attentive
    # pooling reduces time away (ECG_CRNN's global_pool="attn" does that)
    import importlib.util
    import re
    from pathlib import Path

    spec = importlib.util.find_spec("torch_ecg")
    if spec is None:
        pytest.skip("torch_ecg is not installed")
    source = (Path(spec.origin).parent / "models" / "_nets.py").read_text()
    names = set(re.findall(r'@ATTN_LAYERS\.register\(name="(\w+)"\)', source))
    assert {"sa", "se", "gc", "nl"} <= names
    assert names - {"cbam", "cbam_block", "attentive_pooling"} <= set(ATTN_LAYERS.list())
    assert set(TORCH_ECG_ATTENTIONS) <= names


# -- attention layers against plain-PyTorch formulas ---------------------------------------
@pytest.mark.parametrize("name", ATTENTIONS)
@pytest.mark.parametrize("length", [1, 7, 64])
def test_attention_keeps_shape_and_length(name, length):
    layer = ATTN_LAYERS.build(name, channels=16)
    x = torch.randn(3, 16, length, requires_grad=True)
    out = layer(x)
    assert out.shape == x.shape and layer.output_length(length) == length
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


def _randomise(layer):
    torch.manual_seed(3)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return layer.eval()


def test_non_local_matches_formula():
    layer = _randomise(NonLocal(6, reduction=0.5))
    x = torch.randn(2, 6, 11, dtype=torch.float64)
    layer = layer.double()
    w = {n: getattr(layer, n).weight[:, :, 0] for n in ("theta", "phi", "g")}
    b = {n: getattr(layer, n).bias for n in ("theta", "phi", "g")}
    emb = {n: torch.einsum("ic,bct->bti", w[n], x) + b[n] for n in w}  # (batch, time, inter)
    attn = torch.softmax(torch.einsum("bti,bsi->bts", emb["theta"], emb["phi"]), dim=-1)
    y = torch.einsum("bts,bsi->bit", attn, emb["g"])
    conv, bn = layer.out
    z = torch.einsum("ci,bit->bct", conv.weight[:, :, 0], y) + conv.bias[:, None]
    z = ((z - bn.running_mean[:, None]) / torch.sqrt(bn.running_var[:, None] + bn.eps)
         * bn.weight[:, None] + bn.bias[:, None])
    torch.testing.assert_close(layer(x), x + z)


def test_global_context_matches_formula():
    layer = _randomise(GlobalContext(8, reduction=0.5)).double()
    x = torch.randn(2, 8, 13, dtype=torch.float64)
    wk = layer.context.weight[0, :, 0]
    weights = torch.softmax(torch.einsum("c,bct->bt", wk, x) + layer.context.bias, dim=-1)
    context = torch.einsum("bct,bt->bc", x, weights)
    conv1, ln, _, conv2 = layer.transform
    h = context @ conv1.weight[:, :, 0].T + conv1.bias
    h = F.layer_norm(h, h.shape[-1:], ln.weight[:, 0], ln.bias[:, 0], ln.eps).relu()
    delta = h @ conv2.weight[:, :, 0].T + conv2.bias
    torch.testing.assert_close(layer(x), x + delta[:, :, None])


def test_squeeze_excitation_matches_formula():
    layer = _randomise(SqueezeExcitation(16, reduction=0.25)).double()
    x = torch.randn(2, 16, 9, dtype=torch.float64)
    s = x.mean(-1)
    h = (s @ layer.fc1.weight[:, :, 0].T + layer.fc1.bias).relu()
    gate = torch.sigmoid(h @ layer.fc2.weight[:, :, 0].T + layer.fc2.bias)
    torch.testing.assert_close(layer(x), x * gate[:, :, None])


def test_self_attention_matches_formula():
    layer = _randomise(SelfAttention(8, num_heads=2)).double()
    x = torch.randn(2, 8, 10, dtype=torch.float64)
    tokens = F.layer_norm(x.transpose(1, 2), (8,), layer.norm.weight, layer.norm.bias,
                          layer.norm.eps)
    q, k, v = (tokens @ layer.attn.in_proj_weight.T + layer.attn.in_proj_bias).chunk(3, -1)
    split = lambda t: t.reshape(2, 10, 2, 4).transpose(1, 2)  # noqa: E731
    attn = torch.softmax(split(q) @ split(k).transpose(-1, -2) / 2.0, dim=-1)
    heads = (attn @ split(v)).transpose(1, 2).reshape(2, 10, 8)
    out = heads @ layer.attn.out_proj.weight.T + layer.attn.out_proj.bias
    torch.testing.assert_close(layer(x), x + out.transpose(1, 2))


def test_fresh_context_blocks_are_identity():
    x = torch.randn(2, 16, 20)
    for layer in (GlobalContext(16), NonLocal(16).eval()):
        torch.testing.assert_close(layer(x), x)


# -- GradCam --------------------------------------------------------------------------------
BUMP_WIDTH = 8  # samples (80 ms at 100 Hz), wider and taller than any wave of the generator


def bump_task(n: int, seed: int):
    """Half the records carry a Gaussian bump (1.5 mV, sigma 80 ms, all leads, random
    polarity per lead) at a random place in the middle 80%; label 1 = has the bump."""
    rng = np.random.default_rng(seed)
    x = synthetic_ecg(n, 12, fs=100.0, duration_s=10.0, seed=seed, mains_mv=0.0)
    n_samples = x.shape[-1]
    y = np.zeros(n, dtype=np.float32)
    y[: n // 2] = 1
    centres = rng.integers(int(0.1 * n_samples), int(0.9 * n_samples), size=n)
    t = np.arange(n_samples)
    for i in range(n // 2):
        sign = rng.choice([-1.0, 1.0], size=(12, 1))
        x[i] += 1.5 * sign * np.exp(-0.5 * ((t - centres[i]) / BUMP_WIDTH) ** 2)
    return _zscore(x), torch.from_numpy(y), torch.from_numpy(centres)


@pytest.fixture(scope="module")
def bump_model():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        x, y, _ = bump_task(256, seed=0)
        model = ECG_CRNN(["bump"], n_leads=12, backbone=TinyBackbone(widths=(16, 16, 32)),
                         global_pool="max")
        _train(model, x, y, steps=300)
    finally:
        torch.set_num_threads(before)
    return model


def _hooks(model):
    return [(name, kind) for name, m in model.named_modules()
            for kind in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                         "_backward_pre_hooks")
            if getattr(m, kind)]


def test_grad_cam_peaks_at_the_planted_bump(bump_model):
    x, y, centres = bump_task(64, seed=500)
    with torch.no_grad():
        accuracy = ((bump_model(x)[:, 0] > 0).float() == y).float().mean().item()
    assert accuracy >= 0.9, accuracy
    positive = y == 1
    cam = GradCam(bump_model)
    assert cam.target_name == "backbone.stages.2"
    saliency = cam(x[positive], target_class=0)
    assert saliency.shape == (int(positive.sum()), x.shape[-1])
    assert saliency.min() >= 0 and saliency.max() <= 1
    distance = (saliency.argmax(dim=1) - centres[positive]).abs().float()
    # measured: median 3 samples, worst 11 of 1000 (seed 0, 1 thread); the bar is
    # a median under 10% of the record, we also hold the median within one bump sigma
    assert distance.median() < 0.1 * x.shape[-1], distance
    assert distance.median() <= BUMP_WIDTH, distance
    assert (distance < 0.1 * x.shape[-1]).all(), distance


def test_grad_cam_restores_state_and_removes_hooks():
    torch.manual_seed(0)
    model = ECG_CRNN(["a", "b"], n_leads=12, backbone=TinyBackbone())
    model.train()
    model.backbone.stages[0].eval()  # a mixed state must come back exactly
    model.backbone.stem[0].weight.requires_grad_(False)
    modes = {n: m.training for n, m in model.named_modules()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(3, 12, 200)

    cam = GradCam(model, target_layer="backbone.stages.1")
    per_sample = cam(x, target_class=torch.tensor([0, 1, 0]))
    assert per_sample.shape == (3, 200)
    with torch.no_grad():  # works inside no_grad, and class 0 for all equals per-sample 0
        all_zero = cam(x, target_class=0)
    torch.testing.assert_close(per_sample[[0, 2]], all_zero[[0, 2]])

    assert _hooks(model) == []
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():  # eval mode inside: BN statistics untouched
        torch.testing.assert_close(v, state[k], rtol=0, atol=0)

    # a failing forward still removes the hook and restores the state
    handle = model.backbone.stages[2].register_forward_hook(
        lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        cam(x, target_class=1)
    handle.remove()
    assert _hooks(model) == []
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags


def test_grad_cam_on_sequence_and_segmentation_models():
    torch.manual_seed(0)
    for model in (_seq_lab(), _fcn()):
        cam = GradCam(model)
        assert cam.target_name == "backbone.stages.2"
        out = cam(torch.randn(2, 12, 333), target_class=1)
        assert out.shape == (2, 333) and torch.isfinite(out).all()
        assert _hooks(model) == []


def test_grad_cam_explains_a_compiled_model_through_its_module():
    """torch.compile's wrapper hid the target layer's output from autograd ("the
    differentiated Tensor ... not used in the graph"); GradCam now runs the module the
    wrapper compiles, eagerly, and names layers as in it."""
    torch.manual_seed(0)
    model = ECG_CRNN(["a", "b"], n_leads=12, backbone=TinyBackbone()).eval()
    compiled = torch.compile(model)
    x = torch.randn(2, 12, 200)
    cam = GradCam(compiled)
    assert cam.model is model and cam.target_name == "backbone.stages.2"
    torch.testing.assert_close(cam(x, target_class=1), GradCam(model)(x, target_class=1),
                               rtol=0, atol=0)
    by_name = GradCam(compiled, target_layer="_orig_mod.backbone.stages.1")
    assert by_name.target_name == "backbone.stages.1"
    assert by_name(x).shape == (2, 200) and _hooks(model) == []


@pytest.fixture
def gloo_world_of_one(tmp_path):
    """A one-process gloo group, so that a DistributedDataParallel can be built on CPU."""
    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1),
                            rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_grad_cam_explains_ddp_and_data_parallel_through_their_module(gloo_world_of_one):
    """A DistributedDataParallel was run through its own forward, which broadcasts buffers
    to every rank: GradCam on one rank alone (rank 0 explaining) waited on the others
    until the group's timeout, and the layer was named "module.backbone...". GradCam now
    runs the wrapped module, through any nesting of DDP, DataParallel and torch.compile."""
    torch.manual_seed(0)
    model = ECG_CRNN(["a", "b"], n_leads=12, backbone=TinyBackbone()).eval()
    x = torch.randn(2, 12, 200)
    expected = GradCam(model)(x, target_class=1)
    ddp = nn.parallel.DistributedDataParallel(model)
    for wrapped in (ddp, nn.DataParallel(model), torch.compile(ddp),
                    nn.parallel.DistributedDataParallel(torch.compile(model))):
        cam = GradCam(wrapped)
        assert cam.model is model and cam.target_name == "backbone.stages.2"
        torch.testing.assert_close(cam(x, target_class=1), expected, rtol=0, atol=0)
        assert _hooks(model) == []

    # DDP's forward with grad enabled arms its reducer (prepare_for_backward); it must
    # not have run, or the next forward would insist on that reduction finishing first
    forwards = []
    handle = ddp.register_forward_pre_hook(lambda *a: forwards.append(1))
    by_name = GradCam(ddp, target_layer="module.backbone.stages.1")
    assert by_name.target_name == "backbone.stages.1"
    by_name(x)
    handle.remove()
    assert forwards == []


def test_grad_cam_bad_arguments():
    model = ECG_CRNN(["a", "b"], n_leads=12, backbone=TinyBackbone())
    with pytest.raises(AttributeError):
        GradCam(model, target_layer="backbone.stages.9")
    with pytest.raises(ValueError, match="not a submodule"):
        GradCam(model, target_layer=nn.Linear(2, 2))
    with pytest.raises(ValueError, match="no backbone"):
        GradCam(nn.Sequential(nn.Conv1d(12, 2, 3)))
    with pytest.raises(ValueError, match="2 entries for a batch of 3"):
        GradCam(model)(torch.randn(3, 12, 100), target_class=torch.tensor([0, 1]))


def test_grad_cam_refuses_a_backbone_without_classifier():
    """A bare backbone's (batch, channels, L') feature maps passed for (batch, time,
    classes) sequence logits: a map of the 'class' at one time step, silently."""
    backbone = TinyBackbone()
    with pytest.raises(ValueError, match="no classifier.*reset_classifier"):
        GradCam(backbone)
    backbone.reset_classifier(3)
    cam = GradCam(backbone)
    assert cam.target_name == "stages.2"
    assert cam(torch.randn(2, 12, 100), target_class=2).shape == (2, 100)


def test_a_models_config_is_its_own():
    """Editing a built model's config changes neither the class defaults nor the next
    model, nor the caller's dict; torch_ecg's {"name": "none"} means no RNN / attention;
    one key under two names is an error, not the last one silently."""
    a = ECG_SEQ_LAB_NET(["N", "S", "V"], 1, backbone="resnet18")
    a.config["rnn"]["hidden_size"] = 8
    assert ECG_SEQ_LAB_NET(["N", "S", "V"], 1, backbone="resnet18").rnn.rnn.hidden_size == 128
    mine = {"rnn": {"name": "gru", "hidden_size": 16}}
    b = ECG_CRNN(2, 12, config=mine)
    b.config["rnn"]["hidden_size"] = 4
    assert mine["rnn"]["hidden_size"] == 16
    none = ECG_CRNN(2, 12, config={"rnn": {"name": "none"}, "attn": {"name": "none"}})
    assert none.rnn is None and none.attention is None
    with pytest.raises(KeyError, match="'cnn' and 'backbone' both set 'backbone'"):
        ECG_CRNN(2, 12, config={"cnn": "vgg16", "backbone": "resnet"})
