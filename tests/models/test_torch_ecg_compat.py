"""torch_ecg compatibility of the downstream models: its attention layers' arguments and
the ``inference`` method of ECG_CRNN and ECG_SEQ_LAB_NET.

torch_ecg's layers, where importable, are the reference: ``torch_ecg.models._nets`` is
imported without the package ``__init__`` files (which import every optional
dependency), with empty modules for the packages it imports but these layers never call.
"""

from __future__ import annotations


import numpy as np
import pytest
import torch
from torch import nn

from fastecg.bench.peers import import_torch_ecg
from fastecg.models import ECG_CRNN, ECG_SEQ_LAB_NET, Backbone
from fastecg.registry import ATTN_LAYERS


class TinyBackbone(Backbone):
    """One conv + BatchNorm stage (stride 1): the Backbone contract, small and fast."""

    def __init__(self, in_channels: int = 3, width: int = 4):
        super().__init__(in_channels)
        self.stem = nn.Identity()
        self.stages = nn.ModuleList([nn.Sequential(nn.Conv1d(in_channels, width, 3, padding=1),
                                                   nn.BatchNorm1d(width))])
        self._finish([width])


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def nets():
    module = import_torch_ecg(
        "torch_ecg.models._nets", keep=False,
        skip_init=("torch_ecg.models", "torch_ecg.utils", "torch_ecg.components"),
        # a decorator must hand the function back, not a mock
        stub_attrs={"deprecate_kwargs": lambda *args, **kwargs: (lambda f: f)})
    if module is None:
        pytest.skip("torch_ecg's models/_nets.py cannot be imported")
    return module


def _conv_shapes(module):
    """Shapes of the weights of the linear maps (Linear and 1x1 Conv1d), kernel dim
    dropped, in module order; and the bias shapes."""
    weights, biases = [], []
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d)):
            w = m.weight
            weights.append(tuple(w.shape[:2]))
            biases.append(None if m.bias is None else tuple(m.bias.shape))
    return weights, biases


# torch_ecg's attention configs as its ECG_CRNN config holds them (model_configs/attn.py),
# with another variant for GC (its default, fusion "mul", is tested below)
SE = {"reduction": 8, "activation": "relu", "kw_activation": {"inplace": True},
      "bias": True, "kernel_initializer": "he_normal"}
GC = {"ratio": 4, "reduction": True, "pooling_type": "attn", "fusion_types": ["add"]}
NL = {"filter_lengths": {"g": 1, "phi": 1, "theta": 1, "W": 1}, "subsample_length": 2,
      "batch_norm": True}
SA = {"num_heads": 8, "dropout": 0.1, "bias": True}


@pytest.mark.parametrize("channels", [64, 100, 30])
def test_torch_ecg_attention_arguments_build_torch_ecgs_shapes(nets, channels):
    """torch_ecg's arguments were a TypeError (unknown argument); each now builds the
    layer of the same widths and biases as torch_ecg's layer for the same arguments."""
    cases = [
        ("se", SE, lambda kw: nets.SEBlock(channels, **kw)),
        ("se", dict(SE, bias=False, reduction=4), lambda kw: nets.SEBlock(channels, **kw)),
        ("gc", GC, lambda kw: nets.GlobalContextBlock(channels, **kw)),
        ("gc", dict(GC, ratio=3), lambda kw: nets.GlobalContextBlock(channels, **kw)),
        ("gc", dict(GC, ratio=2, reduction=False),
         lambda kw: nets.GlobalContextBlock(channels, **kw)),
        ("nl", NL, lambda kw: nets.NonLocalBlock(channels, **kw)),
        ("nl", dict(NL, mid_channels=7), lambda kw: nets.NonLocalBlock(channels, **kw)),
    ]
    for name, kw, theirs in cases:
        ours = ATTN_LAYERS.build(dict(kw, name=name), channels=channels)
        want_w, want_b = _conv_shapes(theirs(dict(kw)))
        got_w, got_b = _conv_shapes(ours)
        assert sorted(got_w) == sorted(want_w), (name, kw)
        assert sorted(got_b, key=str) == sorted(want_b, key=str), (name, kw)
    # self-attention: the attention's projections as torch_ecg's (ours adds a LayerNorm)
    for bias in (True, False):
        ours = ATTN_LAYERS.build(dict(SA, name="sa", bias=bias), channels=channels - channels % 8)
        theirs = nets.SelfAttention(channels - channels % 8, 8, dropout=0.1, bias=bias)
        assert {k: v.shape for k, v in ours.attn.state_dict().items()} == \
            {k: v.shape for k, v in theirs.mha.state_dict().items()}


def test_torch_ecg_attention_arguments_change_our_layer():
    """Each mapped argument does what it does in torch_ecg (checked without torch_ecg)."""
    x = torch.randn(2, 64, 30)
    se = ATTN_LAYERS.build(dict(SE, name="se", bias=False,
                                activation="leaky_relu",
                                kw_activation={"negative_slope": 0.3, "inplace": True}),
                           channels=64)
    assert se.fc1.bias is None and se.fc2.bias is None and se.fc1.out_channels == 8
    assert isinstance(se.act, nn.LeakyReLU) and se.act.negative_slope == 0.3
    s = x.mean(-1)
    h = torch.nn.functional.leaky_relu(s @ se.fc1.weight[:, :, 0].T, 0.3)
    torch.testing.assert_close(se(x), x * torch.sigmoid(h @ se.fc2.weight[:, :, 0].T)[..., None])
    assert ATTN_LAYERS.build(dict(GC, name="gc", ratio=2, reduction=False),
                             channels=64).transform[0].out_channels == 128
    nl = ATTN_LAYERS.build(dict(NL, name="nl", subsample_length=3, mid_channels=5), channels=64)
    assert nl.theta.out_channels == 5 and nl.pool.kernel_size == 3
    assert isinstance(ATTN_LAYERS.build({"name": "nl", "subsample_length": 1}, channels=8).pool,
                      nn.Identity)
    assert ATTN_LAYERS.build({"name": "sa", "bias": False}, channels=16).attn.in_proj_bias is None
    # as ECG_CRNN's config holds them
    for name, kw in (("se", SE), ("gc", GC), ("nl", NL), ("sa", SA)):
        model = ECG_CRNN(["a", "b"], attn=dict(kw, name=name), backbone=TinyBackbone(12, 16))
        assert model(torch.randn(2, 12, 64)).shape == (2, 2)


@pytest.mark.parametrize("name, kw, arg", [
    ("gc", {"ratio": 4, "pooling_type": "max"}, "pooling_type"),
    ("gc", {"ratio": 4, "fusion_types": ["concat"]}, "fusion_types"),
    ("gc", {"ratio": 4, "fusion_types": ["add", "concat"]}, "fusion_types"),
    ("gc", {"ratio": 4, "fusion_types": []}, "fusion_types"),
    ("gc", {"ratio": 4, "reduction": 0.5}, "ratio"),
    ("gc", {"ratio": 0.5}, "ratio"),
    ("nl", {"filter_lengths": 3}, "filter_lengths"),
    ("nl", {"filter_lengths": {"W": 3}}, "filter_lengths"),
    ("nl", {"batch_norm": False}, "batch_norm"),
    ("nl", {"norm": "group_norm"}, "norm"),
    ("nl", {"mid_channels": 8, "reduction": 0.25}, "mid_channels"),
    ("nl", {"sub_sample": True, "subsample_length": 3}, "subsample_length"),
    ("se", {"dropouts": 0.2}, "dropouts"),
    ("se", {"dropouts": [0.0, 0.1]}, "dropouts"),
    ("se", {"act": "gelu", "activation": "relu"}, "activation"),
])
def test_torch_ecg_variants_we_lack_are_refused(name, kw, arg):
    """What selects a variant not implemented is a ValueError naming the argument, never
    a layer silently different from the one asked for."""
    with pytest.raises(ValueError, match=arg):
        ATTN_LAYERS.build(dict(kw, name=name), channels=64)


# -- global context: torch_ecg's GlobalContextBlock as the reference -----------------------
def _torch_ecg_attn_config(name):
    """torch_ecg's default config of attention layer `name` (model_configs/attn.py)."""
    module = import_torch_ecg("torch_ecg.model_configs.attn", keep=False)
    if module is None:
        pytest.skip("torch_ecg's model_configs/attn.py cannot be imported")
    return dict(getattr(module, name))


def _copy_gc_weights(ours, theirs):
    """torch_ecg's GlobalContextBlock parameters into ours, parameter by parameter:
    conv_mask -> context, channel_add_conv -> transform, channel_mul_conv -> mul_transform
    (same Sequential layout: conv, LayerNorm, activation, conv)."""
    mapping = {"conv_mask": "context", "channel_add_conv": "transform",
               "channel_mul_conv": "mul_transform"}
    theirs_state = theirs.state_dict()
    ours_state = {}
    for key, value in theirs_state.items():
        head, _, rest = key.partition(".")
        ours_state[f"{mapping[head]}.{rest}"] = value
    assert set(ours_state) == set(ours.state_dict())
    ours.load_state_dict(ours_state)


@pytest.mark.parametrize("pooling_type", ["attn", "avg"])
@pytest.mark.parametrize("fusion_types", [["add"], ["mul"], ["add", "mul"], ["mul", "add"]])
@pytest.mark.parametrize("ratio, reduction", [(4, True), (2, False)])
def test_gc_matches_torch_ecg_global_context_block(nets, pooling_type, fusion_types,
                                                   ratio, reduction):
    """"avg" pooling and "mul" fusion were a ValueError; every pooling x fusion that
    torch_ecg's GlobalContextBlock supports now computes its output, given its weights."""
    torch.manual_seed(0)
    kw = {"ratio": ratio, "reduction": reduction, "pooling_type": pooling_type,
          "fusion_types": fusion_types}
    theirs = nets.GlobalContextBlock(24, **kw).double().eval()
    # every parameter away from its init (the last convs would otherwise hide a fusion)
    with torch.no_grad():
        for param in theirs.parameters():
            param.copy_(torch.randn_like(param))
    ours = ATTN_LAYERS.build(dict(kw, name="gc"), channels=24).double().eval()
    _copy_gc_weights(ours, theirs)
    x = torch.randn(3, 24, 50, dtype=torch.float64)
    x_before = x.clone()
    want = theirs(x.clone())
    got = ours(x)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(x, x_before, rtol=0, atol=0)


def test_gc_fusions_follow_gcnet_formulas():
    """The formulas of GCNet (Cao et al. 2019) by hand, without torch_ecg: "avg" pooling
    is the mean over time; "mul" is ``x * sigmoid(T(c))``; a fresh "mul" block halves x."""
    torch.manual_seed(1)
    x = torch.randn(2, 8, 30)
    layer = ATTN_LAYERS.build({"name": "gc", "ratio": 2, "pooling_type": "avg",
                               "fusion_types": ["mul"]}, channels=8)
    torch.testing.assert_close(layer(x), x * 0.5)
    assert layer.context is None and layer.transform is None
    with torch.no_grad():
        for param in layer.parameters():
            param.copy_(torch.randn_like(param))
    t = layer.mul_transform
    c = x.mean(-1, keepdim=True)
    h = torch.einsum("oc,bcl->bol", t[0].weight[..., 0], c) + t[0].bias[:, None]
    h = (h - h.mean((1, 2), keepdim=True)) / torch.sqrt(
        h.var((1, 2), unbiased=False, keepdim=True) + t[1].eps)
    h = torch.relu(h * t[1].weight + t[1].bias)
    m = torch.einsum("oc,bcl->bol", t[3].weight[..., 0], h) + t[3].bias[:, None]
    torch.testing.assert_close(layer(x), x * torch.sigmoid(m))


def test_gc_default_keeps_its_parameters():
    """Our default layer (attention pooling, additive fusion) keeps its parameter names,
    so that saved checkpoints still load."""
    keys = set(ATTN_LAYERS.build({"name": "gc"}, channels=32).state_dict())
    assert keys == {"context.weight", "context.bias", "transform.0.weight", "transform.0.bias",
                    "transform.1.weight", "transform.1.bias", "transform.3.weight",
                    "transform.3.bias"}


def test_torch_ecg_default_gc_config_builds_our_layer(nets):
    """torch_ecg's default global-context config (fusion "mul") was a ValueError; it now
    builds our layer, which computes torch_ecg's."""
    cfg = _torch_ecg_attn_config("global_context")
    assert cfg["fusion_types"] == ["mul"]  # what made it fail
    ours = ATTN_LAYERS.build(dict(cfg, name="gc"), channels=32).double()
    theirs = nets.GlobalContextBlock(32, **cfg).double()
    with torch.no_grad():
        for param in theirs.parameters():
            param.copy_(torch.randn_like(param))
    _copy_gc_weights(ours, theirs)
    x = torch.randn(2, 32, 40, dtype=torch.float64)
    torch.testing.assert_close(ours(x), theirs(x.clone()), rtol=1e-6, atol=1e-6)
    model = ECG_CRNN(["a", "b"], attn=dict(cfg, name="gc"), backbone=TinyBackbone(12, 16))
    assert model(torch.randn(2, 12, 64)).shape == (2, 2)


# -- inference -------------------------------------------------------------------------------
def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_crnn_inference_probabilities_thresholds_and_mode():
    """ECG_CRNN had no ``inference`` (torch_ecg's method name): now sigmoid probabilities,
    0/1 predictions at ``>= bin_pred_thr``, the most probable class where none passes."""
    torch.manual_seed(0)
    model = ECG_CRNN(["AF", "RBBB", "PVC"], n_leads=3, backbone=TinyBackbone(),
                     dropout=0.5).double()
    model.train()
    x = np.random.default_rng(0).standard_normal((5, 3, 40))
    before = x.copy()
    model.eval()
    logits = model(torch.from_numpy(x)).detach().numpy()
    model.train()
    for thr in (0.5, float(np.median(_sigmoid(logits))), 0.99):
        out = model.inference(x, bin_pred_thr=thr)
        assert model.training  # the caller's mode is kept
        prob = _sigmoid(logits)
        np.testing.assert_allclose(out.prob, prob, rtol=1e-10)
        want = (prob >= thr).astype(int)
        for row in range(len(want)):
            if not want[row].any():
                want[row, prob[row].argmax()] = 1
        np.testing.assert_array_equal(out.pred, want)
        assert out.thr == thr and out.classes == ["AF", "RBBB", "PVC"]
        off = model.inference(torch.from_numpy(x), bin_pred_thr=thr, at_least_one=False)
        np.testing.assert_array_equal(off.pred, (prob >= thr).astype(int))
    np.testing.assert_array_equal(x, before)
    assert all(p.grad is None for p in model.parameters())
    # one record, and class names
    one = model.inference(x[0])
    np.testing.assert_allclose(one.prob, _sigmoid(logits[:1]), rtol=1e-10)
    pytest.importorskip("pandas")
    table = model.inference(x, class_names=True, bin_pred_thr=0.99).prob
    assert list(table.columns) == ["AF", "RBBB", "PVC", "pred"]
    np.testing.assert_allclose(table[["AF", "RBBB", "PVC"]].to_numpy(), _sigmoid(logits),
                               rtol=1e-10)
    assert list(table["pred"]) == [[["AF", "RBBB", "PVC"][_sigmoid(row).argmax()]]
                                   for row in logits]
    model.eval()
    model.inference(x)
    assert not model.training
    with pytest.raises(ValueError, match="bin_pred_thr"):
        model.inference(x, bin_pred_thr=1.5)
    with pytest.raises(ValueError, match="input"):
        model.inference(x[None])


def test_seq_lab_net_inference_probabilities_and_thresholds():
    torch.manual_seed(1)
    model = ECG_SEQ_LAB_NET(["N", "S"], n_leads=3, backbone=TinyBackbone(), rnn=None)
    x = torch.randn(2, 3, 32)
    model.eval()
    logits = model(x).detach().double().numpy()
    model.train()
    out = model.inference(x, bin_pred_thr=0.4)
    assert model.training
    prob = _sigmoid(logits)
    assert out.prob.shape == (2, 32, 2) and out.prob.dtype == np.float32
    np.testing.assert_allclose(out.prob, prob, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out.pred[np.abs(prob - 0.4) > 1e-5],
                                  (prob >= 0.4).astype(int)[np.abs(prob - 0.4) > 1e-5])
    assert out.thr == 0.4 and out.classes == ["N", "S"]
    with pytest.raises(ValueError, match="class_names"):
        model.inference(x, class_names=True)
