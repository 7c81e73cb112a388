"""save_pretrained / from_pretrained: exact weights in their dtype and on the asked
device, wrapped and tied models, damaged or mixed folders as clear errors."""

import json

import pytest
import torch
from torch import nn

from fastecg.registry import MODELS, SSL
from fastecg.ssl import finetune, from_pretrained, pretrained, save_pretrained

pytestmark = pytest.mark.usefixtures("one_thread")

MAE = dict(n_leads=3, seq_len=200, patch_size=20, embed_dim=16, depth=1, num_heads=2,
           decoder_dim=8, decoder_depth=1, decoder_heads=2)
CONTRASTIVE = {"encoder": {"name": "resnet18", "stem_channels": 8, "widths": [8, 8, 8, 8]},
               "n_leads": 3, "seq_len": 400, "fs": 50.0}
TINY = {"mae_1d": MAE, "st_mem": {**MAE, "preprocess": None}, "mae_ecg": MAE,
        "simclr": CONTRASTIVE, "moco": {**CONTRASTIVE, "queue_size": 8},
        "clocs": CONTRASTIVE}


def _tiny(name, **kw):
    torch.manual_seed(0)
    return SSL.build({"name": name, **TINY[name], **kw})


class _Tied(nn.Module):
    """Two layers sharing one weight (safetensors stores shared storage once)."""

    def __init__(self, n: int = 4):
        super().__init__()
        self.a, self.b = nn.Linear(n, n), nn.Linear(n, n)
        self.b.weight = self.a.weight
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))


@pytest.fixture
def tied_registered(monkeypatch):
    "_tied" in MODELS  # providers imported first, so they do not re-register over it
    monkeypatch.setitem(MODELS._entries, "_tied", _Tied)


def test_registry_is_covered():
    assert set(TINY) == set(SSL.list())


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize("name", sorted(TINY))
def test_round_trip_keeps_the_dtype(tmp_path, name, dtype):
    model = _tiny(name).to(dtype)
    save_pretrained(model, str(tmp_path))
    loaded = from_pretrained(tmp_path)
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    for key, value in ours.items():
        assert theirs[key].dtype == value.dtype, key
        assert torch.equal(theirs[key], value), key


def test_tied_weights_stay_tied_in_their_dtype(tmp_path, tied_registered):
    model = _Tied().to(torch.bfloat16)
    model.count += 7
    save_pretrained(model, tmp_path, config={"name": "_tied"})
    loaded = from_pretrained(tmp_path)
    assert loaded.a.weight is loaded.b.weight
    assert loaded.a.weight.dtype == torch.bfloat16
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    # no contract saved: none loaded (not an empty one that passes any input)
    assert loaded.contract is None


def test_map_location_puts_the_model_there(tmp_path):
    save_pretrained(_tiny("mae_1d"), tmp_path)
    loaded = from_pretrained(tmp_path, map_location="meta")
    assert {t.device.type for t in loaded.state_dict().values()} == {"meta"}
    loaded = from_pretrained(tmp_path, map_location=torch.device("cpu"))
    assert {t.device.type for t in loaded.state_dict().values()} == {"cpu"}


@pytest.mark.cuda
def test_a_gpu_model_round_trips_onto_the_gpu(tmp_path):
    model = _tiny("moco").cuda()
    model.pretrain_step(torch.randn(4, 3, 400, device="cuda"))
    save_pretrained(model, tmp_path)
    loaded = from_pretrained(tmp_path, map_location="cuda")
    for key, value in model.state_dict().items():
        assert loaded.state_dict()[key].device == value.device
        assert torch.equal(loaded.state_dict()[key], value), key


@pytest.mark.parametrize("wrap", [torch.compile, nn.DataParallel])
def test_a_wrapped_model_saves_as_the_module_it_wraps(tmp_path, wrap):
    model = _tiny("simclr")
    save_pretrained(wrap(model), tmp_path)
    loaded = from_pretrained(tmp_path)
    assert type(loaded) is type(model)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_a_meta_model_does_not_save(tmp_path):
    with pytest.raises(ValueError, match="meta device"):
        save_pretrained(_tiny("mae_1d").to("meta"), tmp_path)
    assert not (tmp_path / "model.safetensors").exists()


def test_an_interrupted_overwrite_does_not_load(tmp_path, monkeypatch):
    # Same architecture, other weights and contract: the old config would load the new
    # weights without any error in shape.
    save_pretrained(_tiny("mae_1d", fs=50.0), tmp_path)
    write = pretrained._atomic_write

    def die_before_the_config(path, fn):
        if path.name == pretrained.CONFIG_NAME:
            raise KeyboardInterrupt
        write(path, fn)

    monkeypatch.setattr(pretrained, "_atomic_write", die_before_the_config)
    with pytest.raises(KeyboardInterrupt):
        save_pretrained(_tiny("mae_1d", fs=100.0, mask_ratio=0.5), tmp_path)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="different saves"):
        from_pretrained(tmp_path)
    # the next complete save loads
    model = _tiny("mae_1d", fs=100.0)
    save_pretrained(model, tmp_path)
    assert from_pretrained(tmp_path).contract.fs == 100.0


def _damage(folder, config=None, weights=None):
    if config is not None:
        (folder / "config.json").write_text(config)
    if weights is not None:
        (folder / "model.safetensors").write_bytes(weights)


@pytest.mark.parametrize("damage,error,match", [
    ({"config": "{not json"}, ValueError, r"config\.json is not valid JSON"),
    ({"config": "[1, 2]"}, ValueError, r"config\.json is not a fastecg checkpoint"),
    ({"config": json.dumps({"format": "fastecg-pretrained", "version": 1,
                            "registry": "SSL"})}, ValueError, "'model' must be"),
    ({"weights": b"\x00" * 4}, ValueError, r"model\.safetensors is not a readable"),
])
def test_a_damaged_folder_is_a_clear_error(tmp_path, damage, error, match):
    save_pretrained(_tiny("mae_1d"), tmp_path)
    _damage(tmp_path, **damage)
    with pytest.raises(error, match=match):
        from_pretrained(tmp_path)


def test_a_folder_without_weights_is_a_clear_error(tmp_path):
    save_pretrained(_tiny("mae_1d"), tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"no model\.safetensors"):
        from_pretrained(tmp_path)


def test_finetune_from_a_float64_folder(tmp_path):
    model = _tiny("moco").double().eval()
    save_pretrained(model, tmp_path)
    clf = finetune(tmp_path, num_classes=2, mode="full").eval()
    x = torch.randn(2, 3, 400, dtype=torch.float64)
    with torch.no_grad():
        logits = clf(x)
        expected = clf.head(model.embed(x))
    assert logits.dtype == torch.float64
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)


def test_dtype_casts_the_loaded_model(tmp_path):
    model = _tiny("moco").double()
    save_pretrained(model, tmp_path)
    loaded = from_pretrained(tmp_path, dtype=torch.float32)
    for key, value in model.state_dict().items():
        expected = value.float() if value.is_floating_point() else value
        assert loaded.state_dict()[key].dtype == expected.dtype, key
        assert torch.equal(loaded.state_dict()[key], expected), key
    with pytest.raises(TypeError, match="dtype"):
        from_pretrained(tmp_path, dtype=torch.int64)


def test_cli_finetunes_a_bfloat16_checkpoint(tmp_path, capsys):
    # The records are float32 and AdamW's updates would vanish in bfloat16 weights: the
    # command fine-tunes in float32.
    from fastecg.cli import main

    _tiny("mae_1d", n_leads=12, seq_len=5000, patch_size=250).to(torch.bfloat16) \
        .save_pretrained(tmp_path / "pt")
    assert main(["finetune", "--checkpoint", str(tmp_path / "pt"), "--steps", "2",
                 "--records", "10", "--batch-size", "5", "--out", str(tmp_path / "ft"),
                 "--quiet"]) == 0
    assert "finetune (linear_probe): 2 steps" in capsys.readouterr().out
    # the classifier is saved, and loads as one (float32, the encoder's contract)
    clf = from_pretrained(tmp_path / "ft" / "finetuned", expect="ssl_classifier")
    assert clf.mode == "linear_probe" and clf.contract.siglen == 5000
    assert {p.dtype for p in clf.parameters()} == {torch.float32}


def test_a_contract_pipeline_is_checked_when_made():
    from fastecg.ssl import Contract

    with pytest.raises(ValueError, match="bandpas"):
        Contract(preprocess={"steps": [{"name": "bandpas", "lowcut": 0.5}]})


def test_a_list_of_steps_contract_round_trips(tmp_path):
    from fastecg.data.synthetic import synthetic_ecg
    from fastecg.preprocessors import PreprocManager

    steps = [{"name": "bandpass", "lowcut": 0.5, "highcut": 40.0},
             {"name": "resample", "dst_fs": 50.0}]
    model = _tiny("mae_1d", fs=50.0, preprocess=steps)
    save_pretrained(model, tmp_path)
    loaded = from_pretrained(tmp_path)
    assert loaded.contract == model.contract
    raw = torch.from_numpy(synthetic_ecg(2, n_leads=3, fs=100.0, duration_s=4.0, seed=1))
    expected, fs = PreprocManager.from_config(steps)(raw.clone(), 100.0)
    assert fs == 50.0
    assert torch.equal(loaded.preprocess(raw, 100.0), expected)


def test_an_override_of_the_input_gives_its_contract(tmp_path):
    from fastecg.ssl import STMEM, Contract

    args = dict(embed_dim=16, depth=1, num_heads=2, decoder_dim=8, decoder_depth=1,
                decoder_heads=2)
    STMEM(**args).save_pretrained(tmp_path / "st")
    loaded = STMEM.from_pretrained(tmp_path / "st", preprocess=None, fs=500.0)
    assert loaded.contract == STMEM(**args, preprocess=None, fs=500.0).contract
    assert loaded.contract.preprocess is None and loaded.contract.fs == 500.0
    # an override of something else keeps the saved contract, one given at saving too
    custom = Contract(fs=50.0, lead_names=["I", "II", "III"], siglen=200,
                      preprocess=[{"name": "normalize"}])
    save_pretrained(_tiny("mae_1d"), tmp_path / "mae", contract=custom)
    assert from_pretrained(tmp_path / "mae", mask_ratio=0.5).contract == custom


@pytest.mark.parametrize("name", ["mae_1d", "st_mem", "moco"])
def test_a_fine_tuned_classifier_saves_and_loads_with_its_contract(tmp_path, name):
    """A fine-tuned SSLClassifier had no registry config, so save_pretrained refused it:
    it is now the MODELS entry "ssl_classifier", rebuilt from its encoder's config, with
    the encoder's contract, its mode and its exact weights."""
    clf = finetune(_tiny(name), num_classes=3, mode="full", dropout=0.1)
    with torch.no_grad():
        for p in clf.parameters():  # as after training: not the weights a rebuild makes
            p.add_(0.01 * torch.randn_like(p))
    clf.set_mode("linear_probe")
    save_pretrained(clf, tmp_path)
    loaded = from_pretrained(tmp_path, expect="ssl_classifier")
    assert type(loaded) is type(clf) and loaded.mode == "linear_probe"
    assert loaded.contract.to_dict() == clf.contract.to_dict()
    for key, value in clf.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert [p.requires_grad for p in loaded.parameters()] == \
        [p.requires_grad for p in clf.parameters()]
    x = torch.randn(2, 3, clf.contract.siglen or 400)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), clf.eval()(x), rtol=0, atol=0)


def test_a_classifier_builds_from_an_encoder_config():
    clf = MODELS.build({"name": "ssl_classifier", "encoder": {"name": "mae_1d", **MAE},
                        "num_classes": 4})
    assert clf.head[1].out_features == 4 and clf.encoder.config["name"] == "mae_1d"
    with pytest.raises(TypeError, match="encoder must be an SSL method or its registry config"):
        MODELS.build({"name": "ssl_classifier", "encoder": nn.Linear(2, 2), "num_classes": 2})
