"""SSL methods: defaults take 12-lead input, losses fall on synthetic ECG, checkpoints
round-trip with their input contract, fine-tuning, bad input."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from fastecg.data.synthetic import synthetic_ecg
from fastecg.preprocessors import PreprocManager
from fastecg.registry import SSL
from fastecg.ssl import (MAE1D, STMEM, BaseContrastiveLearner, Contract, finetune,
                         from_pretrained, save_pretrained)
from fastecg.train import Trainer
from ssl_probe import plain_loop_losses

TINY = dict(n_leads=3, seq_len=200, patch_size=20, embed_dim=16, depth=1, num_heads=2,
            decoder_dim=8, decoder_depth=1, decoder_heads=2)


pytestmark = pytest.mark.usefixtures("one_thread")


def _synthetic(n, n_leads=3, seed=0):
    x = torch.from_numpy(synthetic_ecg(n, n_leads=n_leads, fs=50.0, duration_s=4.0, seed=seed))
    return (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True)


def _tiny(name, **kw):
    torch.manual_seed(0)
    return SSL.build({"name": name, **TINY, **({"preprocess": None} if name == "st_mem" else {}),
                      **kw})


@pytest.mark.parametrize("name", ["mae_1d", "st_mem"])
def test_defaults_take_12_leads(name):
    model = SSL.build(name)
    x = torch.randn(1, 12, model.seq_len)
    with torch.no_grad():
        out = model.pretrain_step(x)
        assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
        n_patches = model.seq_len // model.patch_size
        per_record = round(n_patches * 0.75) * (12 if name == "st_mem" else 1)
        assert out["mask"].sum() == per_record


def test_st_mem_defaults_follow_the_paper():
    cfg = SSL.get("st_mem").__init__.__defaults__
    model_cfg = dict(zip(["n_leads", "seq_len", "patch_size", "embed_dim", "depth", "num_heads",
                          "decoder_dim", "decoder_depth", "decoder_heads", "mlp_ratio",
                          "mask_ratio", "norm_pix", "fs"], cfg))
    assert model_cfg["seq_len"] == 2250 and model_cfg["patch_size"] == 75
    assert model_cfg["mask_ratio"] == 0.75 and model_cfg["fs"] == 250.0


def test_mae_1d_loss_falls_in_a_plain_loop():
    # An SSL method is a plain nn.Module: this is the user's own loop. (A model this
    # small needs hundreds of steps to beat the patch mean on fresh records; on a few
    # records it learns within 80.)
    model = _tiny("mae_1d", embed_dim=32, decoder_dim=32, num_heads=4, decoder_heads=4,
                  norm_pix=False)
    x = _synthetic(8)
    losses = plain_loop_losses(model, x)
    assert np.mean(losses[-5:]) < 0.75 * np.mean(losses[:5])


def test_st_mem_loss_falls_with_the_trainer():
    model = _tiny("st_mem")
    hist = Trainer(model, lr=3e-3, batch_size=16, max_steps=40, progress=False).fit(
        _synthetic(64))
    losses = [h["loss"] for h in hist]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


@pytest.mark.parametrize("name", ["mae_1d", "st_mem"])
def test_pretrained_round_trip(tmp_path, name):
    model = _tiny(name).eval()
    x = torch.randn(2, 3, 200)
    save_pretrained(model, tmp_path)
    # weights are safetensors (a JSON header, never a pickle)
    raw = (tmp_path / "model.safetensors").read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    json.loads(raw[8:8 + header_len])
    loaded = from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model) and loaded.config == model.config
    with torch.no_grad():
        assert torch.equal(loaded.embed(x), model.embed(x))
    assert loaded.contract == model.contract
    assert set(model.encoder_state_dict()) < set(model.state_dict())


def test_contract_rebuilds_the_preprocessing(tmp_path):
    torch.manual_seed(0)
    model = STMEM(embed_dim=16, depth=1, num_heads=2, decoder_dim=8, decoder_depth=1,
                  decoder_heads=2)
    model.save_pretrained(tmp_path)
    loaded = STMEM.from_pretrained(tmp_path)
    recipe = PreprocManager.from_recipe("st_mem").to_config()
    assert loaded.contract.manager().to_config() == recipe
    assert loaded.contract.fs == 250.0 and loaded.contract.siglen == 2250
    assert loaded.contract.lead_names[:2] == ["I", "II"]
    raw = torch.from_numpy(synthetic_ecg(2, fs=500.0, duration_s=10.0))
    x = loaded.preprocess(raw, 500.0)
    expected, fs = PreprocManager.from_recipe("st_mem")(raw, 500.0)
    assert fs == 250.0 and torch.equal(x, expected)
    with torch.no_grad():
        assert loaded.embed(x).shape == (2, 16)


def test_checkpoint_of_another_model_is_a_clear_error(tmp_path):
    save_pretrained(_tiny("mae_1d"), tmp_path / "mae")
    with pytest.raises(ValueError, match="'mae_1d'.*not 'st_mem'"):
        STMEM.from_pretrained(tmp_path / "mae")
    with pytest.raises(FileNotFoundError, match="config.json"):
        MAE1D.from_pretrained(tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"format": "hf"}')
    with pytest.raises(ValueError, match="not a fastecg checkpoint"):
        from_pretrained(tmp_path / "other")


@pytest.mark.parametrize("name", ["mae_1d", "st_mem"])
def test_bad_input(name):
    model = _tiny(name)
    with pytest.raises(ValueError, match="leads"):
        model.pretrain_step(torch.randn(2, 4, 200))
    with pytest.raises(ValueError, match="not a multiple of patch_size"):
        model.pretrain_step(torch.randn(2, 3, 190))
    with pytest.raises(ValueError, match="at most 200"):
        model.pretrain_step(torch.randn(2, 3, 220))
    with pytest.raises(ValueError, match="mask_ratio"):
        _tiny(name, mask_ratio=1.0)
    with pytest.raises(ValueError, match="not a multiple"):
        _tiny(name, seq_len=210)
    with pytest.raises(KeyError, match="did you mean 'st_mem'"):
        SSL.build("stmem")


MASKED = [("mae_1d", {}), ("st_mem", {}), ("mae_ecg", {"variant": "mtae"}),
          ("mae_ecg", {"variant": "mltae"}), ("mae_ecg", {"variant": "mlae"})]


@pytest.mark.parametrize("name,kw", MASKED)
def test_a_mask_ratio_that_masks_nothing_is_refused_at_construction(name, kw):
    """The loss is a mean over masked patches: with none it was 0 / 0 = NaN."""
    with pytest.raises(ValueError, match=r"mask_ratio must be in \(0, 1\), got 0.0"):
        _tiny(name, mask_ratio=0.0, **kw)
    # TINY takes at most 10 patches (per lead) and 3 leads: round(10 x 0.04) = 0 masked
    n, unit = (3, "leads") if kw.get("variant") == "mlae" else (10, "patches")
    with pytest.raises(ValueError, match=rf"round\({n} x 0.04\) = 0 of the {n} {unit}"):
        _tiny(name, mask_ratio=0.04, **kw)


@pytest.mark.parametrize("name,kw", MASKED[:4])
def test_an_input_too_short_to_mask_is_refused_at_the_step(name, kw):
    model = _tiny(name, mask_ratio=0.1, **kw)  # 1 of 10 patches; 0 of 2
    with torch.no_grad():
        assert model.pretrain_step(torch.randn(2, 3, 200))["mask"].sum(1).eq(
            3 if name == "st_mem" or kw.get("variant") == "mltae" else 1).all()
        with pytest.raises(ValueError, match=r"the input has 2 patches.*round\(2 x 0.1\) "
                                             r"= 0"):
            model.pretrain_step(torch.randn(2, 3, 40))


@pytest.mark.parametrize("name,kw,n_samples", [
    ("st_mem", {}, 20), ("st_mem", {}, 40), ("st_mem", {"mask_ratio": 0.99}, 200),
    ("mae_1d", {}, 20), ("mae_ecg", {"variant": "mltae"}, 40)])
def test_every_patch_masked_is_taken(name, kw, n_samples):
    """1-2 patches at mask_ratio 0.75 (round(0.75) = 1, round(1.5) = 2), or 0.99 of 10:
    every patch masked. The encoder sees the class (SEP) tokens alone, as MAE-1D does,
    and the loss is the plain mean squared error over every patch."""
    from fastecg.ops.patch_mask import patchify

    model = _tiny(name, norm_pix=False, **kw)
    x = torch.randn(2, 3, n_samples)
    out = model.pretrain_step(x)
    assert out["mask"].eq(1).all()
    mode = "temporal" if name == "mae_1d" else "lead_temporal"
    expected = (out["pred"] - patchify(x, 20, mode)).square().mean()
    torch.testing.assert_close(out["loss"], expected, rtol=1e-5, atol=1e-6)
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_st_mem_takes_fewer_leads():
    model = _tiny("st_mem")
    with torch.no_grad():
        assert model.pretrain_step(torch.randn(2, 2, 200))["pred"].shape == (2, 20, 20)


def test_finetune_linear_probe_and_layer_decay(tmp_path):
    save_pretrained(_tiny("mae_1d"), tmp_path)
    probe = finetune(tmp_path, num_classes=3, mode="linear_probe")
    assert not any(p.requires_grad for p in probe.encoder.parameters())
    probe.train()
    assert not probe.encoder.training
    x, y = _synthetic(32), torch.arange(32) % 3
    before = {k: v.clone() for k, v in probe.encoder.state_dict().items()}
    Trainer(probe, loss_fn=nn.functional.cross_entropy, batch_size=8, max_steps=3,
            progress=False).fit(torch.utils.data.TensorDataset(x, y))
    assert all(torch.equal(v, probe.encoder.state_dict()[k]) for k, v in before.items())
    assert probe(x[:4]).shape == (4, 3)

    full, opt = finetune(tmp_path, num_classes=3, mode="full", layer_decay=0.5, lr=1.0,
                         optimizer=True)
    scales = sorted({g["lr_scale"] for g in opt.param_groups})
    assert scales == [0.25, 0.5, 1.0]  # embeddings, the one block, norm + head
    head_lr = [g["lr"] for g in opt.param_groups
               if any(p is full.head[1].weight for p in g["params"])]
    assert head_lr == [1.0]
    decay = {id(p): g["weight_decay"] for g in full.param_groups(1.0, weight_decay=0.05)
             for p in g["params"]}
    # MAE's fine-tuning rule: the patch embedding's weight is decayed; biases, the cls
    # token and the position embedding are not
    enc = full.encoder
    assert decay[id(enc.patch_embed.weight)] == 0.05
    assert decay[id(enc.patch_embed.bias)] == decay[id(enc.pos_embed)] == 0.0
    assert decay[id(enc.cls_token)] == 0.0
    with pytest.raises(ValueError, match="mode"):
        finetune(tmp_path, num_classes=3, mode="frozen")


@pytest.mark.parametrize("name", ["mae_1d", "st_mem", "mae_ecg", "simclr", "moco", "clocs"])
def test_full_finetune_trains_only_what_forward_reaches(name):
    """Every trainable parameter of a full fine-tune gets a gradient from one forward
    (DDP's default, find_unused_parameters=False, refused the decoder, mask token,
    projector or momentum encoder that only pretraining uses), and the encoder trains."""
    if name in ("mae_1d", "st_mem"):
        model, n = _tiny(name), TINY["seq_len"]
    elif name == "mae_ecg":
        model, n = SSL.build(name, seq_len=1000), 1000
    else:
        model, n = SSL.build(name, encoder={"name": "resnet18", "widths": [8] * 4,
                                            "stem_channels": 8}), 1000
    clf = finetune(model, num_classes=3, mode="full")
    clf(torch.randn(2, model.n_leads, n)).sum().backward()
    trainable = [(k, p) for k, p in clf.named_parameters() if p.requires_grad]
    assert [k for k, p in trainable if p.grad is None] == []
    assert sum(k.startswith("encoder.") for k, _ in trainable) > 0


@pytest.mark.parametrize("mode", ["linear_probe", "full"])
def test_finetune_leaves_the_callers_model_as_it_was(mode):
    """finetune(model) copies it: no frozen parameters, no eval mode, no weight changes
    leak into the SSL model the caller goes on pretraining."""
    model = _tiny("mae_1d").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    clf = finetune(model, num_classes=3, mode=mode)
    assert clf.encoder is not model
    assert all(p.requires_grad for p in model.parameters()) and model.training
    prefixes = clf.encoder.encoder_prefixes()
    assert all(p.requires_grad == (mode == "full" and n.startswith(prefixes))
               for n, p in clf.encoder.named_parameters())
    x, y = _synthetic(16), torch.arange(16) % 3
    Trainer(clf, loss_fn=nn.functional.cross_entropy, batch_size=8, max_steps=2, lr=0.1,
            progress=False).fit(torch.utils.data.TensorDataset(x, y))
    for k, v in before.items():
        assert torch.equal(model.state_dict()[k], v), k
    changed = any(not torch.equal(clf.encoder.state_dict()[k], v) for k, v in before.items())
    assert changed == (mode == "full")
    # the caller's model still pretrains
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.pretrain_step(x[:4])["loss"].backward()
    opt.step()
    assert not torch.equal(model.patch_embed.weight, before["patch_embed.weight"])


def test_finetune_head_follows_the_encoders_dtype():
    """The head was always a CPU float32 Linear: a float64 (or GPU) encoder's features
    met it with a dtype (device) error."""
    model = _tiny("mae_1d").double()
    torch.manual_seed(3)
    clf = finetune(model, num_classes=3, mode="full")
    torch.manual_seed(3)
    ref = nn.Linear(model.embed_dim, 3)  # the same CPU draws as the float32 head
    head = clf.head[1]
    assert head.weight.dtype == head.bias.dtype == torch.float64
    torch.testing.assert_close(head.weight, ref.weight.double(), rtol=0, atol=0)
    x = _synthetic(4).double()
    expected = clf.encoder.forward_features(x).mean(-1) @ head.weight.T + head.bias
    out = clf(x)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


class NoiseViews(BaseContrastiveLearner):
    method_name = "noise_views"

    def views(self, x):
        return x + 0.1 * torch.randn_like(x), x + 0.1 * torch.randn_like(x)


def test_contrastive_base_with_a_backbone():
    torch.manual_seed(0)
    model = NoiseViews("resnet18", n_leads=3, proj_dim=8)
    out = model.pretrain_step((torch.randn(4, 3, 500), torch.zeros(4)))
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and model.embed(torch.randn(2, 3, 500)).shape[0] == 2


def test_contract_errors():
    c = Contract(fs=250.0, lead_names=["I", "II"], siglen=100)
    with pytest.raises(ValueError, match="leads"):
        c.apply(torch.randn(3, 100), 250.0)
    with pytest.raises(ValueError, match="samples"):
        c.apply(torch.randn(2, 90), 250.0)
    with pytest.raises(ValueError, match="Hz"):
        c.apply(torch.randn(2, 100), 500.0)


def test_contract_puts_named_leads_in_its_order():
    c = Contract(fs=250.0, lead_names=["I", "II", "III"], siglen=100)
    x = torch.randn(2, 3, 100)  # leads III, I, II
    torch.testing.assert_close(c.apply(x, 250.0, ["III", "I", "II"]), x[:, [1, 2, 0]],
                               rtol=0, atol=0)
    assert c.lead_order(["I", "II", "III"]) is None and c.lead_order(None) is None
    assert torch.equal(c.apply(x, 250.0, ["I", "II", "III"]), x)
    with pytest.raises(ValueError, match=r"\(I, II, V1\) are not the model's \(I, II, III\): "
                                         r"missing \['III'\], not expected \['V1'\]"):
        c.apply(x, 250.0, ["I", "II", "V1"])


def test_contract_with_a_pipeline_built_for_another_lead_order():
    """A recipe built for records stored in another order (its lead_select gives the
    contract's order): records named in either order come out in the contract's order,
    once (they were reordered twice: silently scrambled), in apply and in the CLI's
    training-step transform."""
    from fastecg.ssl.cli import _input_transform

    std = ["I", "II", "III"]
    pm = PreprocManager({"name": "lead_select", "leads": std}, lead_names=std[::-1])
    c = Contract(lead_names=std, preprocess=pm)
    x = torch.arange(3.0)[None, :, None].expand(2, 3, 8)  # lead k holds k (standard order)
    for names, given in ((std[::-1], x.flip(-2)), (std, x), (["II", "III", "I"], x[:, [1, 2, 0]])):
        assert torch.equal(c.apply(given, 500.0, names), x), names
        assert torch.equal(_input_transform(c, 500.0, names)(given), x), names
    assert torch.equal(c.apply(x.flip(-2), 500.0), x)  # unnamed: the pipeline's order


def test_downstream_model_round_trip(tmp_path):
    from fastecg.registry import MODELS

    config = {"name": "ECG_CRNN", "classes": 2, "n_leads": 3}
    torch.manual_seed(0)
    model = MODELS.build(config).eval()
    contract = Contract(fs=500.0, lead_names=["I", "II", "III"], siglen=1000,
                        preprocess=PreprocManager.from_config(
                            [{"name": "bandpass", "lowcut": 0.5, "highcut": 45.0}]))
    save_pretrained(model, tmp_path, config=config, contract=contract, registry="MODELS")
    loaded = from_pretrained(tmp_path).eval()
    x = torch.randn(2, 3, 1000)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert loaded.contract == contract
    with pytest.raises(ValueError, match="not 'mae_1d'"):
        MAE1D.from_pretrained(tmp_path)


def test_st_mem_contract_follows_seq_len():
    torch.manual_seed(0)
    model = STMEM(seq_len=750, embed_dim=16, depth=1, num_heads=2, decoder_dim=8,
                  decoder_depth=1, decoder_heads=2)
    x = model.preprocess(torch.randn(1, 12, 5000), 500.0)
    assert x.shape == (1, 12, 750)
    with torch.no_grad():
        assert torch.isfinite(model.pretrain_step(x)["loss"])
