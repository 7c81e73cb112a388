"""The evaluation harness: metrics and their bootstrap against scikit-learn, splits, label
fractions, the random-encoder baseline, and an informative encoder beating it."""

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from fastecg.registry import SSL
from fastecg.ssl import MAE1D
from fastecg.ssl.evaluate import (COLUMNS, _bootstrap_weights, _cluster_codes,
                                  _metric_replicates, bootstrap_scores, evaluate,
                                  label_subsample, train_test_indices)

TINY = dict(n_leads=2, seq_len=100, patch_size=25, embed_dim=16, depth=1, num_heads=2,
            decoder_dim=8, decoder_depth=1, decoder_heads=2)


pytestmark = pytest.mark.usefixtures("one_thread")


def _single_label_case(n=200, k=4, p_correct=0.6, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    pred = np.where(rng.random(n) < p_correct, y, rng.integers(0, k, n))
    return y, pred


def _multi_label_case(n=150, k=5, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < 0.3).astype(int)
    score = np.round(0.3 * y + rng.random((n, k)), 1)  # rounded: ties in the scores
    return y, score


def _weights(draws, n):
    w = np.zeros((len(draws), n))
    for b, d in enumerate(draws):
        np.add.at(w[b], d, 1)
    return w


def test_single_label_metrics_and_resamples_equal_sklearn():
    y, pred = _single_label_case()
    df = bootstrap_scores(y, pred, n_bootstrap=200).set_index("metric")
    assert df.loc["accuracy", "value"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert df.loc["macro_f1", "value"] == pytest.approx(f1_score(y, pred, average="macro"),
                                                        abs=1e-12)
    # Each vectorised resample equals scikit-learn on the resampled records, including
    # small resamples in which some classes are missing.
    rng = np.random.default_rng(1)
    draws = [rng.integers(0, len(y), len(y)) for _ in range(5)] + \
            [rng.integers(0, 12, 6) for _ in range(5)]
    rep = _metric_replicates(y, pred, _weights(draws, len(y)), 4)
    for b, d in enumerate(draws):
        assert rep["accuracy"][b] == pytest.approx(accuracy_score(y[d], pred[d]), abs=1e-12)
        assert rep["macro_f1"][b] == pytest.approx(f1_score(y[d], pred[d], average="macro"),
                                                   abs=1e-12)


def test_multi_label_metrics_and_resamples_equal_sklearn():
    y, score = _multi_label_case()
    df = bootstrap_scores(y, score, n_bootstrap=200).set_index("metric")
    assert df.loc["macro_auroc", "value"] == pytest.approx(
        roc_auc_score(y, score, average="macro"), abs=1e-12)
    assert df.loc["macro_f1", "value"] == pytest.approx(
        f1_score(y, (score >= 0.5).astype(int), average="macro"), abs=1e-12)
    rng = np.random.default_rng(2)
    draws = [rng.integers(0, len(y), len(y)) for _ in range(8)]
    rep = _metric_replicates(y, score, _weights(draws, len(y)), y.shape[1])
    for b, d in enumerate(draws):
        assert rep["macro_auroc"][b] == pytest.approx(
            roc_auc_score(y[d], score[d], average="macro"), abs=1e-12)
        assert rep["macro_f1"][b] == pytest.approx(
            f1_score(y[d], (score[d] >= 0.5).astype(int), average="macro", zero_division=0),
            abs=1e-12)


def test_multi_label_columns_without_both_classes_are_left_out():
    y, score = _multi_label_case()
    y[:, 0] = 0  # no positive: AUROC undefined for it
    df = bootstrap_scores(y, score, n_bootstrap=50).set_index("metric")
    assert df.loc["macro_auroc", "value"] == pytest.approx(
        roc_auc_score(y[:, 1:], score[:, 1:], average="macro"), abs=1e-12)


def test_seeds_are_averaged_and_their_spread_reported():
    y, a = _single_label_case(seed=0)
    _, b = _single_label_case(seed=0, p_correct=0.8)
    df = bootstrap_scores(y, [a, b], n_bootstrap=300).set_index("metric")
    per_seed = [accuracy_score(y, a), accuracy_score(y, b)]
    assert df.loc["accuracy", "value"] == pytest.approx(np.mean(per_seed), abs=1e-12)
    assert df.loc["accuracy", "seed_std"] == pytest.approx(np.std(per_seed, ddof=1), abs=1e-12)


def test_outputs_that_are_not_class_indices_or_hold_nan_are_refused():
    """Probabilities given as single-label predictions were cast to int (all 0: the
    accuracy became the share of class 0), a -1 prediction indexed the last class in the
    F1 (0.94 where scikit-learn says 0.63), and NaN multi-label probabilities gave an
    AUROC: each was a number without a warning."""
    y, pred = _single_label_case(n=100, k=2)
    with pytest.raises(ValueError, match="class indices"):
        bootstrap_scores(y, np.clip(0.6 * y + 0.5 * np.random.default_rng(0).random(100),
                                    0, 1), n_bootstrap=10)
    with pytest.raises(ValueError, match="class indices"):
        bootstrap_scores(y, np.where(np.arange(100) < 10, -1, pred), n_bootstrap=10)
    with pytest.raises(ValueError, match="class indices"):
        bootstrap_scores(y, [pred, np.full(100, np.nan)], n_bootstrap=10)
    with pytest.raises(ValueError, match="class indices"):
        bootstrap_scores(y + 0.5, pred, n_bootstrap=10)
    # whole numbers as floats are classes
    df = bootstrap_scores(y.astype(float), pred.astype(float), n_bootstrap=10)
    assert df.set_index("metric").loc["accuracy", "value"] == accuracy_score(y, pred)
    ym, score = _multi_label_case()
    score[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_scores(ym, score, n_bootstrap=10)
    with pytest.raises(ValueError, match="0/1"):
        bootstrap_scores(2 * ym, np.nan_to_num(score), n_bootstrap=10)


def test_bootstrap_interval_contains_the_value_and_narrows_like_the_binomial():
    widths = {}
    for n in (100, 1600):
        y, pred = _single_label_case(n=n, k=2, p_correct=0.5, seed=3)
        row = bootstrap_scores(y, pred, n_bootstrap=2000, seed=0).set_index("metric")
        acc = row.loc["accuracy"]
        assert acc.ci_low < acc.value < acc.ci_high
        widths[n] = acc.ci_high - acc.ci_low
        # the normal approximation of the binomial proportion's 95% interval
        expected = 2 * 1.96 * np.sqrt(acc.value * (1 - acc.value) / n)
        assert widths[n] == pytest.approx(expected, rel=0.15)
    assert widths[1600] < 0.35 * widths[100]  # ~ 1/sqrt(16)


def test_patient_split_keeps_each_patient_on_one_side():
    rng = np.random.default_rng(0)
    patients = [f"p{i // 3}" for i in range(150)]  # 50 patients of 3 records
    y = np.array([int(p[1:]) % 5 for p in patients])
    train, test, by = train_test_indices(y, patients, test_size=0.3, seed=0)
    assert by == "patient"
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(150))
    assert not {patients[i] for i in train} & {patients[i] for i in test}
    assert 0.2 < len(test) / 150 < 0.4
    assert set(y[test]) == set(y[train]) == set(range(5))  # stratified
    ids = [None if rng.random() < 0.5 else p for p in patients]  # some missing
    train2, test2, by2 = train_test_indices(y, ids, seed=0)
    known = {ids[i] for i in train2} & {ids[i] for i in test2}
    assert by2 == "patient" and known <= {None}
    _, _, by3 = train_test_indices(y, None)
    assert by3 == "record"


@pytest.mark.parametrize("kind", ["int", "numpy", "tensor", "float"])
def test_patient_ids_that_are_not_strings_are_patients(kind):
    """Numbers are patient ids too (they were taken for missing ones: a record split,
    one patient's records on both sides); None, NaN and "" stay missing."""
    patient = [i // 3 for i in range(60)]  # 20 patients of 3 records
    ids = {"int": patient, "numpy": np.array(patient), "tensor": torch.tensor(patient),
           "float": [float(p) for p in patient]}[kind]
    y = np.array([p % 2 for p in patient])
    train, test, by = train_test_indices(y, ids, test_size=0.3, seed=0)
    assert by == "patient"
    assert not {patient[i] for i in train} & {patient[i] for i in test}
    if kind != "float":  # compared by value: the split of the same ids as strings
        ref = train_test_indices(y, [str(p) for p in patient], test_size=0.3, seed=0)
        assert np.array_equal(train, ref[0]) and np.array_equal(test, ref[1])
    df = evaluate(SSL.build("mae_1d", **TINY), (torch.randn(60, 2, 100), y, ids), "knn",
                  label_fractions=[1.0], seeds=[0], n_bootstrap=10)
    assert df.attrs["split"] == "patient"
    assert (df["n_test"] == len(train_test_indices(y, ids)[1])).all()
    missing = [None, float("nan"), np.nan, ""] + list(ids)[4:]
    train, test, by = train_test_indices(y, missing, seed=0)
    assert by == "patient"
    assert not {patient[i] for i in train if i >= 4} & {patient[i] for i in test if i >= 4}
    assert train_test_indices(y, [None, float("nan"), ""] * 20)[2] == "record"


def test_an_empty_dataset_is_a_clear_error():
    model = SSL.build("mae_1d", **TINY)
    with pytest.raises(ValueError, match="holds no records"):
        evaluate(model, (torch.zeros(0, 2, 100), np.zeros(0, dtype=np.int64)))
    with pytest.raises(ValueError, match="holds no records"):
        evaluate(model, torch.utils.data.TensorDataset(torch.zeros(0, 2, 100),
                                                       torch.zeros(0, dtype=torch.int64)))


def test_a_split_without_test_records_is_a_clear_error():
    """Two records put both in training: scikit-learn's StandardScaler then failed on
    a (0, D) test matrix, which did not say why."""
    model = SSL.build("mae_1d", **TINY)
    with pytest.raises(ValueError, match="0 for testing"):
        evaluate(model, (torch.randn(2, 2, 100), np.array([0, 1])), "knn",
                 label_fractions=[1.0], seeds=[0], n_bootstrap=10)


def test_a_training_split_without_labels_to_learn_says_what_it_lacks():
    """Single-label: fewer than two classes. Multi-label: not one positive label (the
    check made; its message spoke of two classes, which multi-hot targets need not have)."""
    model = SSL.build("mae_1d", **TINY)
    x = torch.randn(20, 2, 100)
    with pytest.raises(ValueError, match="needs at least two classes"):
        evaluate(model, (x, np.zeros(20, dtype=np.int64)), "knn", label_fractions=[1.0],
                 seeds=[0], n_bootstrap=10)
    with pytest.raises(ValueError, match=r"multi-label training split needs at least one "
                                         r"positive label; all 3 labels of its \d+ records "
                                         r"are 0"):
        evaluate(model, (x, np.zeros((20, 3), dtype=np.int64)), "knn",
                 label_fractions=[1.0], seeds=[0], n_bootstrap=10)


@pytest.mark.parametrize("protocol", ["linear_probe", "knn"])
def test_nan_embeddings_are_a_clear_error(protocol):
    """A record with NaN samples (or a diverged encoder) reached scikit-learn, whose
    error suggested a model that accepts missing values."""
    x = torch.randn(20, 2, 100)
    x[3, 1, 7] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite embeddings for 1 of 20 records "
                                         r"\(first: record 3\)"):
        evaluate(SSL.build("mae_1d", **TINY), (x, np.arange(20) % 2), protocol,
                 label_fractions=[1.0], seeds=[0], n_bootstrap=10)


def test_label_subsample():
    y = np.repeat(np.arange(5), [200, 100, 50, 30, 20])
    for fraction in (0.01, 0.1, 0.5):
        idx = label_subsample(y, fraction, seed=0)
        counts = np.bincount(y[idx], minlength=5)
        expected = np.maximum(1, np.round(fraction * np.bincount(y)))
        assert counts.tolist() == expected.astype(int).tolist()
        assert len(np.unique(idx)) == len(idx)
    assert not np.array_equal(label_subsample(y, 0.1, 0), label_subsample(y, 0.1, 1))
    assert np.array_equal(label_subsample(y, 0.1, 4), label_subsample(y, 0.1, 4))
    assert np.array_equal(label_subsample(y, 1.0), np.arange(len(y)))
    multi = np.zeros((300, 4), dtype=int)
    multi[:, 0] = 1
    multi[[5, 77], 1] = 1
    multi[200, 2] = 1  # class 3 has no positive: cannot be covered
    idx = label_subsample(multi, 0.01, seed=0)
    assert len(idx) == 3 and multi[idx, :3].max(0).tolist() == [1, 1, 1]


@pytest.mark.parametrize("kwargs,match", [
    ({"label_fractions": [0.0]}, r"label_fractions must be in \(0, 1\]"),
    ({"label_fractions": [1.5]}, r"label_fractions must be in \(0, 1\]"),
    ({"label_fractions": [-0.1, 0.5]}, r"label_fractions must be in \(0, 1\]"),
    ({"label_fractions": ["half"]}, "label_fractions"),
    ({"label_fractions": []}, "label_fractions"),
    ({"protocol": "linear_prob"}, "did you mean 'linear_probe'"),
    ({"protocol": ["knn", "fine_tune"]}, "did you mean 'finetune'"),
    ({"seeds": []}, "seeds"),
])
def test_bad_input(kwargs, match):
    model = SSL.build("mae_1d", **TINY)
    with pytest.raises(ValueError, match=match):
        evaluate(model, (torch.randn(20, 2, 100), np.arange(20) % 2), **kwargs)


def test_bad_encoder_and_dataset():
    with pytest.raises(TypeError, match="encoder_or_dir"):
        evaluate(torch.nn.Linear(2, 2), (torch.randn(20, 2, 100), np.arange(20) % 2))
    with pytest.raises(ValueError, match="carry no target"):
        evaluate(SSL.build("mae_1d", **TINY), torch.utils.data.TensorDataset(
            torch.randn(20, 2, 100)))


def test_random_baseline_rows_and_dataset_input(tmp_path):
    from fastecg.data import SyntheticECGDataset

    ds = SyntheticECGDataset(40, fs=50.0, seconds=2.0, n_leads=2, seed=0)
    model = SSL.build("mae_1d", **TINY)
    model.save_pretrained(tmp_path / "m")
    df = evaluate(tmp_path / "m", ds, ["linear_probe", "knn"], label_fractions=[0.5, 1.0],
                  seeds=[0, 1], n_bootstrap=100)
    assert list(df.columns) == list(COLUMNS)
    assert df.attrs["split"] == "patient"
    assert len(df) == 2 * 2 * 2 * 2  # encoders x protocols x fractions x metrics
    for enc in ("pretrained", "random"):
        part = df[df["encoder"] == enc]
        assert set(part["protocol"]) == {"linear_probe", "knn"}
        assert set(part["metric"]) == {"accuracy", "macro_f1"}
    assert (df["method"] == "mae_1d").all() and (df["n_test"] == df["n_test"].iloc[0]).all()
    assert (df["ci_low"] <= df["value"] + 1e-12).all()
    assert (df["value"] <= df["ci_high"] + 1e-12).all()
    # the random twin is seeded: the same rows again, whatever the global RNG did
    torch.manual_seed(123)
    again = evaluate(model, ds, ["linear_probe", "knn"], label_fractions=[0.5, 1.0],
                     seeds=[0, 1], n_bootstrap=100)
    rand = df[df["encoder"] == "random"].reset_index(drop=True)
    assert rand.equals(again[again["encoder"] == "random"].reset_index(drop=True))


def test_finetune_protocol_runs_through_the_classifier():
    x = torch.randn(30, 2, 100)
    y = np.arange(30) % 3
    x[y == 1] += 2.0
    df = evaluate(SSL.build("mae_1d", **TINY), (x, y), "finetune", label_fractions=[1.0],
                  seeds=[0], finetune_steps=2, batch_size=8, n_bootstrap=50)
    assert set(df["encoder"]) == {"pretrained", "random"} and set(df["protocol"]) == {
        "finetune"}
    assert df["value"].between(0, 1).all()


class _SpectralMAE(MAE1D):
    """An mae_1d whose embedding is fixed and informative: the log amplitude spectrum of
    the lead-averaged signal below 5 Hz, which carries the heart rate and its regularity
    (its random twin is a plain mae_1d of the same config)."""

    def embed(self, x):
        spec = torch.fft.rfft(x.mean(1), dim=-1).abs()
        return torch.log1p(spec[:, 1:60])


def _synthetic(n, seed=0):
    from fastecg.data import SyntheticECGDataset

    ds = SyntheticECGDataset(n, fs=50.0, seconds=12.0, n_leads=2, seed=seed)
    x = torch.stack([ds[i][0] for i in range(n)])
    x = (x - x.mean((-1, -2), keepdim=True)) / x.std((-1, -2), keepdim=True)
    y = np.array([int(ds[i][1]) for i in range(n)])
    return x, y, ds.metadata["patient_id"].tolist()


def test_informative_encoder_beats_its_random_twin():
    x, y, patients = _synthetic(200)
    config = dict(TINY, seq_len=600, patch_size=50)
    model = _SpectralMAE(**config)
    df = evaluate(model, (x, y, patients), ["linear_probe", "knn"],
                  label_fractions=[0.1, 1.0], seeds=[0, 1, 2], n_bootstrap=500)
    acc = df[df["metric"] == "accuracy"].set_index(["protocol", "label_fraction", "encoder"])
    for proto in ("linear_probe", "knn"):
        ours, rand = acc.loc[(proto, 1.0, "pretrained")], acc.loc[(proto, 1.0, "random")]
        assert ours.value >= rand.value + 0.2, (proto, ours.value, rand.value)
        assert ours.ci_low > rand.ci_high, (proto, ours.ci_low, rand.ci_high)
    assert acc.loc[("linear_probe", 0.1, "pretrained")].value > \
        acc.loc[("linear_probe", 0.1, "random")].value


def test_multi_label_targets():
    rng = np.random.default_rng(0)
    y = (rng.random((80, 3)) < 0.4).astype(int)
    x = torch.randn(80, 2, 100) * 0.1
    x[:, 0, :25] += torch.as_tensor(y[:, :1], dtype=torch.float32) * 2  # class 0 visible
    model = SSL.build("mae_1d", **TINY)
    df = evaluate(model, (x, y), ["linear_probe", "knn"], label_fractions=[0.1, 1.0],
                  seeds=[0, 1], n_bootstrap=100)
    assert set(df["metric"]) == {"macro_auroc", "macro_f1"}
    assert df["value"].between(0, 1).all()


def test_label_subsets_are_nested_across_fractions():
    """Each fraction's subset was drawn afresh, so the 1% subset was not inside the 10%
    one: a curve over label fractions compared other records as well as more of them."""
    y = np.repeat(np.arange(3), [500, 300, 200])
    rng = np.random.default_rng(0)
    multi = (rng.random((1000, 5)) < [0.5, 0.2, 0.05, 0.01, 0.002]).astype(int)
    fractions = (0.01, 0.05, 0.1, 0.5, 1.0)
    for seed in range(5):
        single = [label_subsample(y, f, seed) for f in fractions]
        many = [label_subsample(multi, f, seed) for f in fractions]
        for f, idx, midx in zip(fractions, single, many):
            assert np.bincount(y[idx]).tolist() == [max(1, round(f * n))
                                                     for n in (500, 300, 200)]
            assert len(midx) == round(f * 1000) and len(np.unique(midx)) == len(midx)
            assert (multi[midx].max(0) == multi.max(0)).all()  # every class covered
        for subsets in (single, many):
            for small, large in zip(subsets, subsets[1:]):
                assert np.isin(small, large).all()
    # Still a uniform draw within a class: over 400 seeds each of class 2's 200 records
    # is in its 20-record subset ~ Binomial(400, 0.1) times (mean 40, sd 6).
    counts = np.zeros(1000)
    for seed in range(400):
        np.add.at(counts, label_subsample(y, 0.1, seed), 1)
    assert np.abs(counts[800:] - 40).max() < 6 * 6


def test_patient_bootstrap_resamples_patients():
    """Patient A: three records, all right; patient B: one record, wrong. Drawing two
    patients gives accuracy 1 (AA, p 1/4), 3/4 (AB, p 1/2) or 0 (BB, p 1/4); drawing
    four records never gives 0 but with p 1/256."""
    y, pred, groups = np.array([0, 1, 0, 1]), np.array([0, 1, 0, 0]), ["A", "A", "A", "B"]
    w = _bootstrap_weights(4, 4000, 0, _cluster_codes(groups, 4))
    assert (w[:, 0] == w[:, 1]).all() and (w[:, 0] == w[:, 2]).all()
    assert (w[:, 0] + w[:, 3] == 2).all()  # two patients drawn per resample
    acc = _metric_replicates(y, pred, w, 2)["accuracy"]
    assert set(np.round(acc, 12)) == {0.0, 0.75, 1.0}
    share = np.array([np.mean(acc == v) for v in (0.0, 0.75, 1.0)])
    assert np.abs(share - [0.25, 0.5, 0.25]).max() < 5 * np.sqrt(0.25 * 0.75 / 4000)
    # the percentiles of that distribution: 30 and 70 fall in the 3/4 mass, 5 and 95 at
    # the ends (resampling records gives [0.75, 1] and a 5th percentile above 0)
    narrow = bootstrap_scores(y, pred, 4000, level=0.4, groups=groups).set_index("metric")
    assert (narrow.loc["accuracy", "ci_low"], narrow.loc["accuracy", "ci_high"]) == (0.75, 0.75)
    wide = bootstrap_scores(y, pred, 4000, level=0.9, groups=groups).set_index("metric")
    assert (wide.loc["accuracy", "ci_low"], wide.loc["accuracy", "ci_high"]) == (0.0, 1.0)
    by_record = bootstrap_scores(y, pred, 4000, level=0.4).set_index("metric")
    assert by_record.loc["accuracy", "ci_high"] == 1.0
    # a missing id is the record's own patient; ids compare by value
    codes = _cluster_codes(["A", None, np.nan, "", 7, "7"], 6)
    assert len(set(codes[1:4])) == 3 and codes[4] == codes[5] != codes[0]
    with pytest.raises(ValueError, match="3 groups for 4 records"):
        bootstrap_scores(y, pred, 10, groups=["A", "A", "B"])


def test_evaluate_bootstraps_by_patient_on_request():
    x, y, patients = _synthetic(60)
    kw = dict(label_fractions=[1.0], seeds=[0], n_bootstrap=200)
    model = SSL.build("mae_1d", **dict(TINY, seq_len=600, patch_size=50))
    rec = evaluate(model, (x, y, patients), "knn", **kw)
    pat = evaluate(model, (x, y, patients), "knn", bootstrap_by="patient", **kw)
    assert rec.attrs["bootstrap"] == "record" and pat.attrs["bootstrap"] == "patient"
    assert np.array_equal(rec["value"], pat["value"])
    assert not rec[["ci_low", "ci_high"]].equals(pat[["ci_low", "ci_high"]])
    with pytest.raises(ValueError, match="needs patient ids"):
        evaluate(model, (x, y), "knn", bootstrap_by="patient", **kw)
    with pytest.raises(ValueError, match="bootstrap_by"):
        evaluate(model, (x, y, patients), "knn", bootstrap_by="patients", **kw)


def test_evaluate_reseeds_no_gpu_generator_and_restores_the_cpu_one(monkeypatch):
    """The random twin and fine-tuning were seeded with torch.manual_seed inside
    fork_rng(devices=[]): that reseeds every GPU's generator (or queues the reseeding
    until CUDA starts) and fork_rng restored none of them, so the caller's CUDA draws
    after evaluate depended on evaluate's seeds."""
    calls = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: calls.append(seed))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: calls.append(seed))
    x = torch.randn(30, 2, 100)
    y = np.arange(30) % 3
    model = SSL.build("mae_1d", **TINY)
    torch.manual_seed(5)  # (the patched CUDA seeding records this one)
    calls.clear()
    state = torch.get_rng_state()
    evaluate(model, (x, y), ["knn", "finetune"], label_fractions=[1.0], seeds=[0],
             finetune_steps=2, batch_size=8, n_bootstrap=10)
    assert calls == []
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.cuda
def test_evaluate_on_a_gpu_leaves_the_callers_model_and_cuda_generator_alone():
    model = SSL.build("mae_1d", **TINY)
    x, y = torch.randn(30, 2, 100), np.arange(30) % 3
    torch.cuda.manual_seed(11)
    state = torch.cuda.get_rng_state()
    evaluate(model, (x, y), ["knn", "finetune"], label_fractions=[1.0], seeds=[0],
             finetune_steps=2, batch_size=8, n_bootstrap=10, device="cuda")
    assert torch.equal(torch.cuda.get_rng_state(), state)
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_a_float64_encoder_is_evaluated_in_float64():
    """The signals went in as float32 and the random twin and fine-tuning head were
    float32: a float64 encoder failed with a dtype error in every protocol."""
    x = torch.randn(40, 2, 100)
    y = np.arange(40) % 2
    x[y == 1, :, :50] += 1.0
    model = SSL.build("mae_1d", **TINY)
    kw = dict(label_fractions=[1.0], seeds=[0], n_bootstrap=20)
    single = evaluate(model, (x, y), "knn", **kw)
    double = evaluate(model.double(), (x, y), ["knn", "finetune"], finetune_steps=2, **kw)
    knn = double[double["protocol"] == "knn"].reset_index(drop=True)
    # the embeddings agree to float32 precision: the same neighbours, the same scores
    np.testing.assert_allclose(knn["value"], single["value"], rtol=0, atol=1e-12)
    assert double["value"].between(0, 1).all()
    assert all(p.dtype == torch.float64 for p in model.parameters())


@pytest.mark.parametrize("kwargs", [{"seeds": [-1]}, {"seeds": [0.5]}, {"seeds": [True]},
                                    {"split_seed": -2}, {"random_seed": 1.5}])
def test_seeds_that_are_not_non_negative_integers_are_refused(kwargs):
    """0.5 was taken as seed 0 without a word, and a negative seed failed inside NumPy
    ("expected non-negative integer") without naming the argument."""
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=f"{name}: seeds must be integers >= 0"):
        evaluate(SSL.build("mae_1d", **TINY), (torch.randn(20, 2, 100), np.arange(20) % 2),
                 "knn", label_fractions=[0.5], **kwargs)
