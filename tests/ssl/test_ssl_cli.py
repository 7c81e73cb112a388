"""fastecg pretrain / finetune end to end on tiny synthetic runs."""

import json

import pytest
import torch

from fastecg.cli import main
from fastecg.ssl import MAE1D


pytestmark = pytest.mark.usefixtures("one_thread")


def test_pretrain_then_finetune(tmp_path, capsys):
    out = tmp_path / "pt"
    assert main(["pretrain", "--method", "mae_1d", "--preset", "tiny", "--steps", "2",
                 "--records", "8", "--batch-size", "4", "--out", str(out), "--quiet",
                 "--model-args", '{"n_leads": 12, "seq_len": 5000, "patch_size": 250}']) == 0
    model = MAE1D.from_pretrained(out / "pretrained")
    assert model.config["patch_size"] == 250 and model.contract.fs == 500.0
    assert (out / "train" / "metrics.csv").is_file()
    # --resume with the same settings has nothing left to do, and says so by not failing
    assert main(["pretrain", "--method", "mae_1d", "--preset", "tiny", "--steps", "2",
                 "--records", "8", "--batch-size", "4", "--out", str(out), "--quiet",
                 "--resume", "--model-args",
                 '{"n_leads": 12, "seq_len": 5000, "patch_size": 250}']) == 0
    assert main(["finetune", "--checkpoint", str(out / "pretrained"), "--steps", "2",
                 "--records", "10", "--batch-size", "5", "--out", str(tmp_path / "ft"),
                 "--quiet"]) == 0
    assert "finetune (linear_probe)" in capsys.readouterr().out


@pytest.mark.parametrize("argv,match", [
    (["pretrain", "--method", "stmem"], "unknown SSL method"),
    (["pretrain", "--model-args", "[1]"], "JSON object"),
    (["pretrain", "--data", "/nonexistent"], "neither 'synthetic'"),
    (["finetune", "--checkpoint", "/nonexistent"], "config.json"),
])
def test_bad_arguments_exit_2(argv, match, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv + ["--quiet"])
    assert exc.value.code == 2 and match in capsys.readouterr().err


def test_unknown_method_names_the_close_one(capsys):
    """A misspelt --method gets the same "did you mean" as the other commands' names."""
    from fastecg.registry import SSL

    with pytest.raises(SystemExit) as exc:
        main(["pretrain", "--method", "stmem", "--quiet"])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert "did you mean 'st_mem'?" in err and "Traceback" not in err
    assert all(name in err for name in SSL.list())


def test_pretrain_on_a_store(tmp_path, capsys):
    from fastecg.data import SyntheticECGDataset, write_store

    write_store(SyntheticECGDataset(8, fs=500.0, seconds=5.0), tmp_path / "store",
                progress=False)
    # st_mem's contract: 250 Hz, 750 samples here; the store's records are cut to the
    # 1500-sample windows (at 500 Hz) that the contract turns into them.
    assert main(["pretrain", "--data", str(tmp_path / "store"), "--preset", "tiny",
                 "--steps", "2", "--batch-size", "4", "--out", str(tmp_path / "pt"),
                 "--quiet", "--model-args", '{"seq_len": 750}']) == 0
    assert "st_mem: 2 steps" in capsys.readouterr().out


@pytest.mark.parametrize("method", ["simclr", "moco", "clocs"])
def test_pretrain_a_contrastive_method_with_the_default_preset(tmp_path, method):
    """The default preset sizes the ViT-style methods; a contrastive method, whose
    constructor takes none of its arguments, keeps its own defaults instead of failing."""
    from fastecg.registry import SSL

    out = tmp_path / method
    encoder = {"name": "resnet18", "stem_channels": 8, "widths": [8, 8, 8, 8]}
    assert main(["pretrain", "--method", method, "--steps", "1", "--records", "4",
                 "--batch-size", "2", "--out", str(out), "--quiet",
                 "--model-args", json.dumps({"encoder": encoder})]) == 0
    model = SSL.get(method).from_pretrained(out / "pretrained")
    assert model.config["encoder"] == encoder and "embed_dim" not in model.config


def test_a_store_at_another_rate_than_the_model_is_refused(tmp_path, capsys):
    """A store at 250 Hz and a model that takes 500 Hz with no resampling in its
    contract: a clear error before any training, not records fed at the wrong rate."""
    from fastecg.data import SyntheticECGDataset, write_store

    write_store(SyntheticECGDataset(4, fs=250.0, seconds=10.0), tmp_path / "store",
                progress=False)
    encoder = {"name": "resnet18", "stem_channels": 8, "widths": [8, 8, 8, 8]}
    with pytest.raises(SystemExit) as exc:
        main(["pretrain", "--method", "simclr", "--data", str(tmp_path / "store"),
              "--steps", "1", "--batch-size", "2", "--out", str(tmp_path / "pt"), "--quiet",
              "--model-args", json.dumps({"encoder": encoder})])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "250" in err and "500" in err and "resample" in err
    assert not (tmp_path / "pt" / "train").exists()


def test_finetune_on_a_store_of_multi_label_targets(tmp_path, capsys):
    """A store whose targets are a row of 0/1 per record (PhysioNet/CinC records carry
    several diagnoses): fine-tuned multi-label, one sigmoid per class."""
    from fastecg.data import SyntheticECGDataset, write_store

    class MultiLabel(SyntheticECGDataset):
        def target(self, i):
            hot = torch.zeros(5)
            hot[[i % 5, (2 * i + 1) % 5]] = 1.0
            return hot.numpy()

    write_store(MultiLabel(6, fs=500.0, seconds=5.0), tmp_path / "store", progress=False)
    out = tmp_path / "pt"
    assert main(["pretrain", "--method", "mae_1d", "--preset", "tiny", "--steps", "1",
                 "--records", "4", "--batch-size", "2", "--out", str(out), "--quiet",
                 "--model-args", '{"n_leads": 12, "seq_len": 2500, "patch_size": 250}']) == 0
    assert main(["finetune", "--checkpoint", str(out / "pretrained"), "--data",
                 str(tmp_path / "store"), "--steps", "2", "--batch-size", "3", "--out",
                 str(tmp_path / "ft"), "--quiet"]) == 0
    assert "finetune (linear_probe): 2 steps" in capsys.readouterr().out


def _lead_store(root, lead_names):
    """A store of 8 labelled 3-lead records whose lead named "I" holds 1.0, "II" 2.0 and
    so on: which lead the model sees is read off its values."""
    import numpy as np

    from fastecg.data import ArrayDataset, write_store

    value = {"I": 1.0, "II": 2.0, "III": 3.0, "V1": 7.0}
    signals = np.stack([np.stack([np.full(500, value[n], np.float32) for n in lead_names])
                        for _ in range(8)])
    write_store(ArrayDataset(signals, labels=[0, 1] * 4, fs=500.0, lead_names=lead_names),
                root, progress=False)


def test_finetune_reorders_a_store_of_the_models_leads(tmp_path, monkeypatch, capsys):
    """The contract says I, II, III; a store of III, II, I is put in that order (it was
    fed as it was), a store of other leads is refused before training."""
    from fastecg.data import ECGStore
    from fastecg.ssl import SSLClassifier
    from fastecg.ssl.cli import _input_transform

    torch.manual_seed(0)
    MAE1D(n_leads=3, seq_len=500, patch_size=50, embed_dim=16, depth=1, num_heads=2,
          decoder_dim=8, decoder_depth=1, decoder_heads=2).save_pretrained(tmp_path / "pt")
    _lead_store(tmp_path / "reversed", ["III", "II", "I"])
    seen = []
    forward = SSLClassifier.forward

    def spy(self, x):
        seen.append(x.detach().clone())
        return forward(self, x)

    monkeypatch.setattr(SSLClassifier, "forward", spy)
    assert main(["finetune", "--checkpoint", str(tmp_path / "pt"), "--data",
                 str(tmp_path / "reversed"), "--steps", "2", "--batch-size", "4", "--out",
                 str(tmp_path / "ft"), "--quiet"]) == 0
    assert len(seen) == 2
    for x in seen:
        assert x.shape == (4, 3, 500)
        assert x[:, 0].eq(1.0).all() and x[:, 1].eq(2.0).all() and x[:, 2].eq(3.0).all()
    store = ECGStore(tmp_path / "reversed")
    batch = torch.stack([store[i][0] for i in range(4)])
    contract = MAE1D.from_pretrained(tmp_path / "pt").contract
    assert torch.equal(_input_transform(contract, 500.0, store.lead_names)(batch),
                       batch.flip(1))

    _lead_store(tmp_path / "other", ["I", "II", "V1"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["finetune", "--checkpoint", str(tmp_path / "pt"), "--data",
              str(tmp_path / "other"), "--steps", "1", "--batch-size", "4", "--out",
              str(tmp_path / "ft2"), "--quiet"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "(I, II, V1)" in err and "(I, II, III)" in err
    assert not (tmp_path / "ft2" / "train").exists()


def test_unfinished_store_bad_model_values_and_another_models_checkpoint_exit_2(tmp_path,
                                                                               capsys):
    """A folder that is not a finished store (what a failed `fastecg preprocess` leaves),
    a model value torch refuses, and resuming a checkpoint of another method: each a
    usage error with a message, not a traceback."""
    half = tmp_path / "half"
    half.mkdir()
    (half / "settings.json").write_text("{}")
    for argv, match in (
            (["pretrain", "--data", str(half)], "not a complete ECG store"),
            (["finetune", "--checkpoint", "x", "--data", str(half)], None),
            (["ssl-compare", "--data", str(half)], "not a complete ECG store"),
            (["pretrain", "--preset", "tiny", "--model-args", '{"embed_dim": -5}'],
             "--model-args: cannot build")):
        with pytest.raises(SystemExit) as exc:
            main(argv + ["--quiet"])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and "Traceback" not in err, (argv, err)
        assert match is None or match in err, (argv, err)
    run = ["--preset", "tiny", "--steps", "2", "--batch-size", "2", "--records", "8",
           "--out", str(tmp_path / "run"), "--quiet"]
    assert main(["pretrain", "--method", "st_mem", *run]) == 0
    with pytest.raises(SystemExit) as exc:
        main(["pretrain", "--method", "mae_1d", *run[:3], "4", *run[4:], "--resume"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "checkpoint holds another model" in err, err


def test_pretrain_on_a_store_the_models_recipe_wrote_does_not_preprocess_twice(
        tmp_path, monkeypatch, capsys):
    """`fastecg preprocess --recipe st_mem` then `fastecg pretrain --method st_mem`: the
    store's records are the contract's output already; the pipeline ran on them a second
    time (band-pass filtered twice, 3.5% of the signal changed on CinC records), so the
    model trained on other input than ``contract.apply`` gives it afterwards."""
    from fastecg.data import ECGStore, SyntheticECGDataset, write_store
    from fastecg.preprocessors import PreprocManager
    from fastecg.ssl import STMEM

    write_store(SyntheticECGDataset(4, fs=500.0, seconds=10.0), tmp_path / "store",
                PreprocManager.from_recipe("st_mem"), progress=False)
    store = ECGStore(tmp_path / "store")
    records = torch.stack([store[i][0] for i in range(len(store))])
    seen = []
    forward = STMEM.forward

    def spy(self, batch):
        seen.append((batch[0] if isinstance(batch, (tuple, list)) else batch).detach().clone())
        return forward(self, batch)

    monkeypatch.setattr(STMEM, "forward", spy)
    assert main(["pretrain", "--data", str(tmp_path / "store"), "--preset", "tiny",
                 "--steps", "2", "--batch-size", "2", "--out", str(tmp_path / "pt"),
                 "--quiet"]) == 0
    assert "st_mem: 2 steps" in capsys.readouterr().out
    assert len(seen) == 2
    for x in seen:
        assert x.shape == (2, 12, 2250)
        for row in x:  # each one of the stored records, bit for bit
            assert any(torch.equal(row, r) for r in records)
    # the contract saved with the model still carries the pipeline, for raw records
    assert STMEM.from_pretrained(tmp_path / "pt" / "pretrained").contract.preprocess == \
        STMEM(embed_dim=32, depth=1, num_heads=2).contract.preprocess
