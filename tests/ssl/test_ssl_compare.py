"""`fastecg ssl-compare` end to end on a tiny budget, its outputs, its argument errors, and
every registered SSL method fitting its model configs."""

import pandas as pd
import pytest
import torch

from fastecg.cli import main
from fastecg.registry import SSL
from fastecg.ssl.compare import FULL, QUICK, model_config
from fastecg.ssl.evaluate import COLUMNS
from helpers import assert_usage_error

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("one_thread")


def test_ssl_compare_writes_table_markdown_and_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "cmp"
    assert main(["ssl-compare", "--quick", "--methods", "mae_1d", "--steps", "3",
                 "--records", "40", "--batch-size", "8", "--protocols", "linear_probe,knn",
                 "--out", str(out), "--quiet"]) == 0
    assert "results.csv" in capsys.readouterr().out
    df = pd.read_csv(out / "results.csv")
    assert list(df.columns) == list(COLUMNS)
    assert set(df["encoder"]) == {"pretrained", "random"}
    assert set(df["protocol"]) == {"linear_probe", "knn"}
    assert set(df["label_fraction"]) == {0.01, 0.1, 1.0}
    assert set(df["metric"]) == {"accuracy", "macro_f1"} and set(df["method"]) == {"mae_1d"}
    assert len(df) == 2 * 2 * 3 * 2 and (df["n_seeds"] == 3).all()
    md = (out / "results.md").read_text().splitlines()
    assert md[0] == ("| method | encoder | protocol | metric | 0.01 labels | 0.1 labels | "
                     "1 labels |")
    assert len(md) == 2 + 2 * 2 * 2  # header, rule, method x encoder x protocol x metric
    summary = pd.read_csv(out / "pretraining.csv")
    assert summary["method"].tolist() == ["mae_1d"] and summary["steps"].tolist() == [3]
    for name in ("loss_curves.png", "scores.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 10_000
    assert (out / "pretrain" / "mae_1d" / "pretrained" / "config.json").is_file()


@pytest.mark.parametrize("argv,match", [
    (["--methods", "mae1d"], "did you mean 'mae_1d'"),
    (["--methods", ","], "no SSL method"),
    (["--protocols", "knnn"], "did you mean 'knn'"),
    (["--data", "/nonexistent/store"], "neither 'synthetic'"),
    (["--seq-len", "75"], "multiple of 50"),
    # the errors name the options, not compare()'s Python arguments
    (["--methods", "mae1d"], "error: --methods: unknown SSL method 'mae1d'"),
    (["--methods", ","], "error: --methods: no SSL method"),
    (["--protocols", "knnn"], "error: --protocols: unknown 'knnn'"),
    (["--seq-len", "75"], "error: --seq-len must be a positive multiple of 50, got 75"),
    (["--data", "/nonexistent/store"], "error: --data /nonexistent/store: neither"),
    (["--steps", "0"], "--steps"),
    (["--records", "4", "--batch-size", "8"], "fewer than one batch"),
])
def test_bad_arguments_exit_2(argv, match, capsys):
    err = assert_usage_error(capsys, ["ssl-compare", "--quick", "--quiet", "--out",
                                      "/tmp/unused_ssl_compare", *argv])
    assert match in err


@pytest.mark.parametrize("kwargs,match", [
    (dict(methods=["mae1d"]), r"^methods: unknown SSL method 'mae1d'"),
    (dict(methods="mae1d"), r"^methods: unknown SSL method 'mae1d'"),  # one name, not 5
    (dict(methods=[]), r"^methods: no SSL method"),
    (dict(protocols=["knnn"]), r"^protocols: unknown 'knnn'"),
    (dict(seq_len=75), r"^seq_len must be a positive multiple of 50, got 75"),
    (dict(data="/nonexistent/store"), r"^data /nonexistent/store: neither 'synthetic'"),
    # evaluate()'s arguments, refused before the first method pretrains
    (dict(seeds=[]), r"^seeds: give at least one seed"),
    (dict(seeds=[-1]), r"^seeds: seeds must be integers >= 0"),
    (dict(seed=0.5), r"^split_seed: seeds must be integers >= 0"),
    (dict(label_fractions=[]), r"^label_fractions: expected a non-empty sequence"),
    (dict(label_fractions=[1.5]), r"^label_fractions"),
    (dict(n_bootstrap=0), r"^n_bootstrap must be a positive integer, got 0"),
])
def test_compare_errors_name_its_python_arguments(kwargs, match, tmp_path):
    from fastecg.ssl.compare import compare

    with pytest.raises(ValueError, match=match):
        compare(**{"methods": ["mae_1d"], **kwargs}, out=tmp_path / "o", quick=True,
                progress=False)
    assert not (tmp_path / "o").exists()  # refused before any work


@pytest.mark.parametrize("name", SSL.list())
def test_every_method_builds_from_the_budgets(name):
    for budget in (QUICK, FULL):
        config = model_config(name, 12, 1000, 100.0, budget["model"])
        model = SSL.build(config)
        model.eval()
        with torch.no_grad():
            emb = model.embed(torch.randn(2, 12, 1000))
        assert emb.shape == (2, model.embed_dim)


def test_ssl_compare_on_a_store(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from fastecg.data import SyntheticECGDataset, write_store

    write_store(SyntheticECGDataset(40, fs=100.0, seconds=6.0, n_leads=12), tmp_path / "store",
                progress=False)
    out = tmp_path / "cmp"
    assert main(["ssl-compare", "--quick", "--data", str(tmp_path / "store"), "--methods",
                 "mae_1d", "--steps", "2", "--batch-size", "8", "--protocols", "knn",
                 "--out", str(out), "--quiet"]) == 0
    df = pd.read_csv(out / "results.csv")
    assert set(df["encoder"]) == {"pretrained", "random"} and set(df["protocol"]) == {"knn"}
    # 40 records of 20 patients (2 each, one class each): the stratified patient split
    # puts 1 or 2 patients of each of the 5 classes (30% of 4) in the test split, 6
    # patients in all (30% of 20) within one
    assert df["n_test"].nunique() == 1 and abs(int(df["n_test"].iloc[0]) // 2 - 6) <= 1


def test_a_methods_result_does_not_depend_on_the_methods_before_it(tmp_path):
    pytest.importorskip("matplotlib")
    from fastecg.ssl.compare import compare

    kw = dict(quick=True, steps=3, records=40, batch_size=8, protocols=["linear_probe"],
              label_fractions=[1.0], seeds=[0], n_bootstrap=50, progress=False)
    alone = compare(["mae_1d"], out=tmp_path / "a", **kw)
    torch.randn(7)  # the caller's RNG state must not matter either
    after = compare(["st_mem", "mae_1d"], out=tmp_path / "b", **kw)
    after = after[after["method"] == "mae_1d"].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone, after)
    # the pretrained weights themselves (the masks drawn in pretraining included)
    from safetensors.torch import load_file

    w_alone, w_after = (load_file(tmp_path / d / "pretrain" / "mae_1d" / "pretrained" /
                                  "model.safetensors") for d in ("a", "b"))
    assert w_alone.keys() == w_after.keys()
    assert all(torch.equal(w_alone[k], w_after[k]) for k in w_alone)


def test_a_rerun_into_the_same_out_keeps_only_its_own_checkpoints(tmp_path):
    """A second comparison in the same folder (fewer steps) left the first one's
    checkpoints beside its own."""
    pytest.importorskip("matplotlib")
    from fastecg.ssl.compare import compare

    kw = dict(quick=True, records=40, batch_size=8, protocols=["knn"], label_fractions=[1.0],
              seeds=[0], n_bootstrap=20, progress=False, out=tmp_path)
    compare(["mae_1d"], steps=3, **kw)
    compare(["mae_1d"], steps=2, **kw)
    ckpt = tmp_path / "pretrain" / "mae_1d" / "train" / "checkpoints"
    assert sorted(p.name for p in ckpt.glob("step_*.pt")) == ["step_00000002.pt"]
    assert (ckpt / "latest").read_text() == "step_00000002.pt"
