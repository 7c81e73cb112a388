"""The evaluation harness of SSL encoders: linear probe, kNN and fine-tuning at several
label fractions, always beside the same protocol on a randomly initialised encoder of the
same architecture, with bootstrap confidence intervals over the test records (or
patients).

A method whose encoder does not beat its random twin has learnt nothing the protocol can
use: random convolutional and transformer encoders with a linear probe come close to
pretrained ones on many ECG tasks, so the baseline is part of every result.
"""

from __future__ import annotations

import contextlib
import copy
import numbers
import os
import types
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from .base import SSLMethod

__all__ = ["PROTOCOLS", "evaluate", "bootstrap_scores", "label_subsample",
           "train_test_indices"]

PROTOCOLS = ("linear_probe", "knn", "finetune")
"""What :func:`evaluate` can run: an L2 logistic regression on frozen, standardised
embeddings; k-nearest neighbours (cosine) on them; full fine-tuning of a copy of the
encoder with a linear head (:func:`fastecg.ssl.finetune`)."""

COLUMNS = ("method", "encoder", "protocol", "label_fraction", "metric", "value", "ci_low",
           "ci_high", "seed_std", "n_seeds", "n_train", "n_test")


# ---- metrics and their bootstrap ------------------------------------------------------------

def _bootstrap_weights(n: int, n_bootstrap: int, seed: int,
                       groups: Optional[np.ndarray] = None) -> np.ndarray:
    """``(n_bootstrap, n)`` counts: how often each record is drawn in each resample. With
    `groups` (``(n,)`` cluster codes ``0 .. G - 1``) the G clusters are drawn instead,
    and each record counts as often as its cluster."""
    units = n if groups is None else int(groups.max()) + 1
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, units, size=(n_bootstrap, units))
    flat = (np.arange(n_bootstrap)[:, None] * units + draws).ravel()
    counts = np.bincount(flat, minlength=n_bootstrap * units).reshape(
        n_bootstrap, units).astype(np.float64)
    return counts if groups is None else counts[:, groups]


def _cluster_codes(groups, n: int) -> np.ndarray:
    """Codes ``0 .. G - 1`` of the records' patients (compared by value, as the split
    does); a missing id (None, NaN, "") makes the record its own patient."""
    from fastecg.data.datasets import patient_key

    keys = [patient_key(g) for g in groups]
    if len(keys) != n:
        raise ValueError(f"bootstrap_scores: {len(keys)} groups for {n} records")
    keys = [("id", k) if k is not None else ("record", i) for i, k in enumerate(keys)]
    codes: dict = {}
    return np.array([codes.setdefault(k, len(codes)) for k in keys], dtype=np.int64)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _macro_f1(t: np.ndarray, p: np.ndarray, w: np.ndarray, present_only: bool) -> np.ndarray:
    """Macro F1 of 0/1 matrices ``t`` (truth), ``p`` (prediction) ``(n, K)`` under record
    weights ``w (R, n)``. ``present_only``: average over the classes present in truth or
    prediction (scikit-learn's default labels), else over all K (zero_division=0)."""
    tp = w @ (t * p)
    fp = w @ ((1 - t) * p)
    fn = w @ (t * (1 - p))
    den = 2 * tp + fp + fn
    f1 = _safe_div(2 * tp, den)
    if not present_only:
        return f1.mean(1)
    present = den > 0
    return _safe_div((f1 * present).sum(1), present.sum(1).astype(np.float64))


def _macro_auroc(t: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Macro AUROC of columns of 0/1 ``t`` against scores ``s`` ``(n, K)`` under record
    weights ``w (R, n)``: the Mann-Whitney statistic (ties count one half) per column,
    NaN for a column without positives or negatives in a resample, averaged over the
    others."""
    out = np.empty((w.shape[0], t.shape[1]))
    for c in range(t.shape[1]):
        order = np.argsort(s[:, c], kind="stable")
        ss, pos = s[order, c], t[order, c]
        start = np.searchsorted(ss, ss, side="left")
        end = np.searchsorted(ss, ss, side="right")
        wo = w[:, order]
        cum_neg = np.concatenate([np.zeros((w.shape[0], 1)), np.cumsum(wo * (1 - pos), 1)], 1)
        below = cum_neg[:, start]
        tied = cum_neg[:, end] - below
        w_pos = wo * pos
        n_pairs = w_pos.sum(1) * cum_neg[:, -1]
        num = (w_pos * (below + 0.5 * tied)).sum(1)
        out[:, c] = np.where(n_pairs > 0, num / np.where(n_pairs > 0, n_pairs, 1), np.nan)
    valid = ~np.isnan(out)
    count = valid.sum(1)
    return np.where(count > 0, np.nansum(out, 1) / np.maximum(count, 1), np.nan)


def _metric_replicates(y: np.ndarray, out: np.ndarray, w: np.ndarray, n_classes: int
                       ) -> dict[str, np.ndarray]:
    """Every metric under each row of record weights ``w (R, n)``."""
    if y.ndim == 1:
        t = np.eye(n_classes)[y]
        p = np.eye(n_classes)[out]
        accuracy = (w @ (y == out).astype(np.float64)) / w.sum(1)
        return {"accuracy": accuracy, "macro_f1": _macro_f1(t, p, w, present_only=True)}
    t = y.astype(np.float64)
    return {"macro_auroc": _macro_auroc(t, out, w),
            "macro_f1": _macro_f1(t, (out >= 0.5).astype(np.float64), w, present_only=False)}


def _is_class_index(a: np.ndarray) -> bool:
    """Whether every entry of `a` is a whole number >= 0 (NaN is not)."""
    if a.dtype == bool:
        return True
    if not np.issubdtype(a.dtype, np.number):
        return False
    return bool(np.all(np.mod(a, 1) == 0) and np.all(a >= 0))


def _check_outputs(y_true: np.ndarray, outputs: list) -> list:
    checked = []
    for out in outputs:
        out = np.asarray(out)
        if y_true.ndim == 1:
            if out.shape != y_true.shape:
                raise ValueError(f"bootstrap_scores: single-label y_true {y_true.shape} needs "
                                 f"predicted labels of the same shape, got {out.shape}")
            # Probabilities (or -1 for "no class") cast to int would be scored silently.
            if not _is_class_index(out):
                raise ValueError("bootstrap_scores: single-label outputs must be predicted "
                                 "class indices (whole numbers >= 0), not probabilities, "
                                 "scores or NaN")
            out = out.astype(np.int64)
        elif out.shape != y_true.shape:
            raise ValueError(f"bootstrap_scores: multi-label y_true {y_true.shape} needs "
                             f"probabilities of the same shape, got {out.shape}")
        elif np.isnan(out.astype(np.float64)).any():
            raise ValueError(f"bootstrap_scores: the multi-label probabilities hold "
                             f"{int(np.isnan(out.astype(np.float64)).sum())} NaN values")
        checked.append(out)
    return checked


def bootstrap_scores(y_true, y_out, n_bootstrap: int = 1000, seed: int = 0,
                     level: float = 0.95, groups=None):
    """Metrics with percentile bootstrap confidence intervals over the records (or over
    the patients, with `groups`).

    Parameters
    ----------
    y_true : array, shape (n,) int or (n, K) 0/1
        Single-label classes, or multi-hot multi-label targets.
    y_out : array or list of arrays
        For single-label targets the predicted classes ``(n,)``; for multi-label the
        predicted probabilities ``(n, K)`` (F1 thresholds them at 0.5). A list holds one
        output per seed of the same test records: the value is the mean over seeds of
        each seed's metric, and each bootstrap resample of the records scores every
        seed on that same resample and takes the mean, so the interval covers the
        seed-averaged metric's sampling error over test records.
    n_bootstrap : int
        Resamples of the n records, with replacement (vectorised: one weight matrix).
    seed : int
        Seed of the resamples.
    level : float
        Coverage of the interval, in (0, 1).
    groups : sequence, optional
        The patient (any cluster) of each record, compared by value as in
        :func:`train_test_indices`; a missing one (None, NaN, "") makes the record
        its own patient. Given, each resample draws as many patients as there are, with
        replacement, and takes every record of each drawn patient (a cluster bootstrap):
        the interval then holds the correlation of a patient's records, which resampling
        records ignores (and narrows the interval for).

    Returns
    -------
    pandas.DataFrame
        One row per metric: ``metric``, ``value``, ``ci_low``, ``ci_high``, ``seed_std``
        (standard deviation of the per-seed values, 0 for one seed). Single-label:
        ``accuracy`` and ``macro_f1`` (over the classes present in truth or prediction,
        as ``sklearn.metrics.f1_score(average="macro")``). Multi-label: ``macro_auroc``
        (``sklearn.metrics.roc_auc_score(average="macro")``) and ``macro_f1``, both over
        the columns that have positives and negatives in `y_true`. In a resample that
        leaves a column without positives or negatives, AUROC averages the other
        columns, and F1 scores it as scikit-learn does on the resample (0 where it has
        no positives, ``zero_division=0``).

    Raises
    ------
    ValueError
        Outputs of the wrong shape, single-label targets or outputs that are not class
        indices (e.g. probabilities), multi-label probabilities with NaN, no column with
        both positives and negatives, `n_bootstrap` < 1, `level` outside (0, 1),
        `groups` of another length than `y_true`.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.array([0, 1, 1, 0, 1, 0, 0, 1])
    >>> df = bootstrap_scores(y, np.array([0, 1, 0, 0, 1, 0, 1, 1]), n_bootstrap=200)
    >>> df.set_index("metric").loc["accuracy", "value"]
    np.float64(0.75)
    """
    import pandas as pd

    if int(n_bootstrap) != n_bootstrap or n_bootstrap < 1:
        raise ValueError(f"bootstrap_scores: n_bootstrap must be a positive integer, got "
                         f"{n_bootstrap!r}")
    if not 0 < level < 1:
        raise ValueError(f"bootstrap_scores: level must be in (0, 1), got {level!r}")
    y_true = np.asarray(y_true)
    if y_true.ndim not in (1, 2) or len(y_true) == 0:
        raise ValueError(f"bootstrap_scores: y_true must be (n,) or (n, K) with n >= 1, got "
                         f"shape {y_true.shape}")
    if y_true.ndim == 1 and not _is_class_index(y_true):
        raise ValueError("bootstrap_scores: single-label y_true must be class indices "
                         "(whole numbers >= 0)")
    if y_true.ndim == 2 and not np.isin(y_true, (0, 1)).all():
        raise ValueError("bootstrap_scores: multi-label y_true must be 0/1 (multi-hot)")
    outputs = _check_outputs(y_true, list(y_out) if isinstance(y_out, (list, tuple))
                             else [y_out])
    if y_true.ndim == 2:
        keep = (y_true.min(0) == 0) & (y_true.max(0) == 1)
        if not keep.any():
            raise ValueError("bootstrap_scores: no target column has both positives and "
                             "negatives among the test records")
        y_true, outputs = y_true[:, keep], [o[:, keep] for o in outputs]
        n_classes = y_true.shape[1]
    else:
        y_true = y_true.astype(np.int64)
        n_classes = int(max(y_true.max(), *(o.max() for o in outputs))) + 1
    w_all = np.ones((1, len(y_true)))
    codes = None if groups is None else _cluster_codes(groups, len(y_true))
    w_boot = _bootstrap_weights(len(y_true), int(n_bootstrap), seed, codes)
    points = [_metric_replicates(y_true, o, w_all, n_classes) for o in outputs]
    boots = [_metric_replicates(y_true, o, w_boot, n_classes) for o in outputs]
    alpha = 100 * (1 - level) / 2
    rows = []
    for name in points[0]:
        per_seed = np.array([p[name][0] for p in points])
        pooled = np.mean([b[name] for b in boots], axis=0)
        lo, hi = np.nanpercentile(pooled, [alpha, 100 - alpha])
        rows.append({"metric": name, "value": float(per_seed.mean()), "ci_low": float(lo),
                     "ci_high": float(hi),
                     # exactly 0 when the seeds agree (mean-then-subtract would leave 1e-17)
                     "seed_std": float(per_seed.std(ddof=1)) if np.ptp(per_seed) > 0 else 0.0})
    return pd.DataFrame(rows)


# ---- splits and label fractions ---------------------------------------------------------------

def train_test_indices(targets, patient_ids=None, test_size: float = 0.3, seed: int = 0
                       ) -> tuple[np.ndarray, np.ndarray, str]:
    """A reproducible train/test split: by patient when patient ids are given (every
    record of a patient on one side), else by record; stratified by class (the first
    positive class of a multi-hot target) in both cases, through
    :func:`fastecg.data.split`.

    Parameters
    ----------
    targets : array, shape (n,) int or (n, K) 0/1
    patient_ids : sequence, optional
        One per record: strings, integers (Python or NumPy), floats..., compared by
        value through ``str``; a missing one (None, NaN, "") makes the record its own
        patient.
    test_size : float
        Fraction of the units (patients or records) in the test split, in (0, 1).
    seed : int

    Returns
    -------
    train, test : ndarray of int64
        Sorted record indices.
    by : {"patient", "record"}

    Examples
    --------
    >>> train, test, by = train_test_indices([0, 1] * 10, ["a", "a", "b", "b"] * 5,
    ...                                      test_size=0.5)
    >>> by, len(train) + len(test)
    ('patient', 20)
    """
    import pandas as pd

    from fastecg.data.datasets import patient_key, split

    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size!r}")
    targets = np.asarray(targets)
    n = len(targets)
    if targets.ndim == 1:
        labels = {"label": pd.Series(targets.astype(np.int64))}
    else:
        column = np.empty(n, dtype=object)
        column[:] = [list(np.flatnonzero(row)) for row in targets]
        labels = {"labels": pd.Series(column, dtype=object)}
    columns = {"record": pd.Series([str(i) for i in range(n)], dtype="str"), **labels}
    by = "record"
    if patient_ids is not None:
        ids = [patient_key(p) for p in patient_ids]
        if len(ids) != n:
            raise ValueError(f"{len(ids)} patient ids for {n} records")
        if any(p is not None for p in ids):
            columns["patient_id"] = pd.Series(ids, dtype="str")
            by = "patient"
    holder = types.SimpleNamespace(metadata=pd.DataFrame(columns))
    train, test = split(holder, by=by, fractions=(1 - test_size, test_size), seed=seed)
    return (np.asarray(train.indices, dtype=np.int64), np.asarray(test.indices, dtype=np.int64),
            by)


def label_subsample(targets, fraction: float, seed: int = 0) -> np.ndarray:
    """Indices of a labelled subset holding `fraction` of the records, with at least one
    example of each class where possible.

    The subsets of one `seed` are nested: each is a prefix of one random order of the
    records that depends on the seed only, so the subset at a smaller fraction is
    contained in the subset at a larger one (a learning curve over fractions adds labels,
    it does not redraw them).

    Single-label: the first ``max(1, round(fraction * n_c))`` records of each class ``c``
    in one random permutation of that class (a stratified draw). Multi-label: the first
    ``max(1, round(fraction * n))`` records (at least the covering ones) of an order that
    starts with one positive of each class (classes in random order, skipping those
    already covered) and goes on through one random permutation of the other records.

    Parameters
    ----------
    targets : array, shape (n,) int or (n, K) 0/1
    fraction : float
        In (0, 1]; 1 keeps every record.
    seed : int

    Returns
    -------
    ndarray of int64
        Sorted positions into `targets`.

    Examples
    --------
    >>> label_subsample([0] * 50 + [1] * 50, 0.1).size
    10
    >>> label_subsample([0] * 98 + [1, 2], 0.01).size  # one of each class
    3
    >>> small, large = label_subsample(range(100), 0.1), label_subsample(range(100), 0.5)
    >>> bool(np.isin(small, large).all())
    True
    """
    _check_fraction(fraction, "fraction")
    targets = np.asarray(targets)
    n = len(targets)
    if fraction == 1:
        return np.arange(n, dtype=np.int64)
    # The draws below do not depend on `fraction`: only how much of each order is kept.
    rng = np.random.default_rng(seed)
    if targets.ndim == 1:
        chosen = []
        for c in np.unique(targets):
            members = rng.permutation(np.flatnonzero(targets == c))
            k = min(len(members), max(1, int(round(fraction * len(members)))))
            chosen.append(members[:k])
        return np.sort(np.concatenate(chosen)).astype(np.int64)
    classes = rng.permutation(targets.shape[1])
    perm = rng.permutation(n)
    covered = np.zeros(targets.shape[1], dtype=bool)
    order = []
    for c in classes:
        if covered[c]:
            continue
        positives = perm[targets[perm, c] > 0]  # in the random order: its first is random
        if len(positives):
            order.append(positives[0])
            covered |= targets[positives[0]] > 0
    rest = perm[~np.isin(perm, order)]
    order = np.concatenate([np.asarray(order, dtype=np.int64), rest])
    want = max(1, int(round(fraction * n)), n - len(rest))
    return np.sort(order[:want]).astype(np.int64)


def _check_fraction(value: Any, name: str) -> None:
    try:
        ok = 0 < float(value) <= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")


# ---- data and encoders ------------------------------------------------------------------------

def _load(dataset, batch_size: int) -> tuple[Tensor, np.ndarray, Optional[list], int]:
    """(signals (N, C, L) float32, targets, patient ids or None, number of classes)."""
    if isinstance(dataset, (tuple, list)):
        if len(dataset) not in (2, 3):
            raise ValueError("dataset: expected a Dataset of (signal, target) items or a "
                             "(signals, targets[, patient_ids]) tuple")
        x = torch.as_tensor(dataset[0], dtype=torch.float32)
        y = np.asarray(dataset[1].cpu() if isinstance(dataset[1], Tensor) else dataset[1])
        groups = list(dataset[2]) if len(dataset) == 3 else None
        n_classes = None
    else:
        from torch.utils.data import DataLoader

        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False,
                            collate_fn=lambda items: items)
        signals, targets = [], []
        for items in loader:
            for item in items:
                if isinstance(item, Tensor) or len(item) < 2:
                    raise ValueError("dataset: items carry no target; evaluate needs "
                                     "(signal, target) items")
                signals.append(torch.as_tensor(item[0], dtype=torch.float32))
                targets.append(np.asarray(item[1]))
        if len({s.shape for s in signals}) > 1:
            raise ValueError("dataset: records differ in shape; crop or pad them to one "
                             "length (e.g. WFDBDataset(siglen=...))")
        x = torch.stack(signals) if signals else torch.zeros(0)
        y = np.stack(targets) if targets else np.zeros(0)
        meta = getattr(dataset, "metadata", None)
        groups = None
        if meta is not None and "patient_id" in meta and len(meta) == len(x):
            groups = meta["patient_id"].tolist()
        n_classes = getattr(dataset, "num_classes", None)
    if len(x) == 0:
        raise ValueError("dataset: it holds no records; evaluate needs labelled records to "
                         "split into train and test")
    if x.dim() != 3 or len(x) != len(y):
        raise ValueError(f"dataset: expected signals (N, n_leads, n_samples) and N targets, "
                         f"got {tuple(x.shape)} and {len(y)}")
    if y.ndim == 1:
        if not np.all(np.equal(np.mod(y, 1), 0)) or (y.size and y.min() < 0):
            raise ValueError("dataset: single-label targets must be class indices >= 0")
        y = y.astype(np.int64)
        n_classes = max(int(n_classes or 0), int(y.max()) + 1)
    elif y.ndim == 2:
        if not np.isin(y, (0, 1)).all():
            raise ValueError("dataset: multi-label targets must be 0/1 (multi-hot)")
        y = y.astype(np.int64)
        n_classes = y.shape[1]
    else:
        raise ValueError(f"dataset: targets must be class indices (N,) or multi-hot (N, K), "
                         f"got shape {y.shape}")
    return x, y, groups, n_classes


def _as_encoder(encoder_or_dir) -> SSLMethod:
    if isinstance(encoder_or_dir, (str, os.PathLike)):
        from .pretrained import from_pretrained

        encoder = from_pretrained(encoder_or_dir)
    else:
        encoder = encoder_or_dir
    if not isinstance(encoder, SSLMethod):
        raise TypeError(f"encoder_or_dir: expected an SSL method or its save_pretrained "
                        f"folder, got {type(encoder).__name__}")
    if "name" not in (encoder.config or {}):
        raise ValueError("encoder_or_dir: the SSL method has no registry config, so its "
                         "random twin cannot be built")
    return encoder


def _on_other_device(t: Tensor, device: torch.device) -> bool:
    """Whether `t` is not on `device` (``cuda`` means the current GPU)."""
    if t.device.type != device.type:
        return True
    if device.type == "cuda" and device.index is None:
        return t.device.index != torch.cuda.current_device()
    return device.index is not None and t.device.index != device.index


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device):
    """torch's CPU generator, and the CUDA generator of `device` when it is a GPU, seeded
    with `seed` inside the block and restored after it. The other GPUs' generators are
    left alone: ``torch.manual_seed`` would reseed every one of them (or queue that
    reseeding until CUDA starts), which ``fork_rng`` restores only for the devices it
    is given."""
    gpus = []
    if device.type == "cuda":
        gpus = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=gpus, device_type="cuda"):
        torch.random.default_generator.manual_seed(seed)
        for index in gpus:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


def _random_twin(encoder: SSLMethod, seed: int) -> SSLMethod:
    """The same architecture, freshly initialised from the method's config (built on
    the CPU, then on the encoder's device and in its dtype), seeded without touching the
    caller's generators."""
    from fastecg.registry import SSL

    with _seeded(seed, torch.device("cpu")):
        twin = SSL.build(encoder.config)
    twin.contract = encoder.contract
    ref = next(p for p in encoder.parameters() if p.is_floating_point())
    return twin.to(ref.device, ref.dtype)  # the encoder's device and precision


def _embed(encoder: SSLMethod, x: Tensor, batch_size: int, device: torch.device,
           transform: Optional[Callable]) -> np.ndarray:
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            parts = []
            for i in range(0, len(x), batch_size):
                xb = x[i:i + batch_size].to(device)
                if transform is not None:
                    xb = transform(xb)
                parts.append(encoder.embed(xb).float().cpu())
    finally:
        encoder.train(was_training)
    feats = torch.cat(parts).numpy().astype(np.float64)
    bad = ~np.isfinite(feats).all(1)
    if bad.any():
        raise ValueError(f"the {type(encoder).__name__} encoder gave NaN or infinite "
                         f"embeddings for {int(bad.sum())} of {len(feats)} records (first: "
                         f"record {int(np.flatnonzero(bad)[0])}): check the signals (NaN "
                         f"samples) and the encoder's weights")
    return feats


# ---- protocols -----------------------------------------------------------------------------

def _linear_probe(f_tr, y_tr, f_te, n_classes: int, c: float) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def model():
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))

    if y_tr.ndim == 1:
        if len(np.unique(y_tr)) == 1:
            return np.full(len(f_te), y_tr[0], dtype=np.int64)
        return model().fit(f_tr, y_tr).predict(f_te).astype(np.int64)
    probs = np.empty((len(f_te), y_tr.shape[1]))
    for k in range(y_tr.shape[1]):
        if y_tr[:, k].min() == y_tr[:, k].max():  # one class only: its frequency
            probs[:, k] = float(y_tr[0, k])
        else:
            probs[:, k] = model().fit(f_tr, y_tr[:, k]).predict_proba(f_te)[:, 1]
    return probs


def _knn(f_tr, y_tr, f_te, k: int) -> np.ndarray:
    from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(f_tr)
    a, b = scaler.transform(f_tr), scaler.transform(f_te)
    if y_tr.ndim == 1:
        # At most the smallest class's count: with one example per class, 1-NN, never
        # a vote that the biggest class wins by size alone.
        k = max(1, min(k, np.bincount(y_tr)[np.unique(y_tr)].min()))
        clf = KNeighborsClassifier(n_neighbors=k, metric="cosine").fit(a, y_tr)
        return clf.predict(b).astype(np.int64)
    k = max(1, min(k, len(a)))
    idx = NearestNeighbors(n_neighbors=k, metric="cosine").fit(a).kneighbors(
        b, return_distance=False)
    return y_tr[idx].mean(1)


def _finetune(encoder: SSLMethod, x_tr: Tensor, y_tr: np.ndarray, x_te: Tensor,
              n_classes: int, seed: int, steps: int, lr: float, batch_size: int,
              device: torch.device, transform: Optional[Callable]) -> np.ndarray:
    from torch.utils.data import TensorDataset

    from fastecg.train import Trainer

    from .finetune import finetune

    multilabel = y_tr.ndim == 2
    # The head's initialisation (CPU) and the dropout of training (on `device`) draw from
    # generators seeded here and restored after.
    with _seeded(seed, device):
        # finetune copies the encoder: the caller's stays as it is
        model, opt = finetune(encoder, num_classes=n_classes, mode="full", lr=lr,
                              optimizer=True)
        if multilabel:
            target = torch.as_tensor(y_tr, dtype=torch.float32)
            loss_fn = nn.functional.binary_cross_entropy_with_logits
        else:
            target = torch.as_tensor(y_tr, dtype=torch.int64)
            loss_fn = nn.functional.cross_entropy
        trainer = Trainer(model, opt, loss_fn=loss_fn, batch_size=min(batch_size, len(x_tr)),
                          max_steps=steps, seed=seed, device=device, transform=transform,
                          progress=False)
        trainer.fit(TensorDataset(x_tr, target))
        trainer.close()
    model.eval()
    with torch.no_grad():
        logits = []
        for i in range(0, len(x_te), batch_size):
            xb = x_te[i:i + batch_size].to(device)
            logits.append(model(transform(xb) if transform is not None else xb).float().cpu())
    logits = torch.cat(logits)
    if multilabel:
        return torch.sigmoid(logits).numpy().astype(np.float64)
    return logits.argmax(1).numpy().astype(np.int64)


# ---- the harness ------------------------------------------------------------------------------

def _protocols(protocol) -> tuple[str, ...]:
    from fastecg.registry import did_you_mean

    names = (protocol,) if isinstance(protocol, str) else tuple(protocol)
    if not names:
        raise ValueError("protocol: give at least one of " + ", ".join(PROTOCOLS))
    for name in names:
        if name not in PROTOCOLS:
            raise ValueError(f"protocol: unknown {name!r}{did_you_mean(name, PROTOCOLS)} "
                             f"(protocols: {', '.join(PROTOCOLS)})")
    return tuple(dict.fromkeys(names))


def _check_evaluation(protocol, label_fractions, seeds, split_seed: int, random_seed: int,
                      n_bootstrap: int, level: float) -> tuple[tuple, list, list]:
    """evaluate()'s protocols, label fractions, seeds and bootstrap settings checked
    (ValueError naming the argument), before any work; returns (protocols, fractions as
    floats, seeds as ints). :func:`fastecg.ssl.compare.compare` checks its own with it,
    before it pretrains."""
    protocols = _protocols(protocol)
    fractions = list(label_fractions) if not isinstance(label_fractions, str) else None
    if not fractions:
        raise ValueError(f"label_fractions: expected a non-empty sequence of fractions in "
                         f"(0, 1], got {label_fractions!r}")
    for f in fractions:
        _check_fraction(f, "label_fractions")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds: give at least one seed")
    for name, values in (("seeds", seeds), ("split_seed", [split_seed]),
                         ("random_seed", [random_seed])):
        for v in values:
            # (0.5 was taken as seed 0, and a negative one failed deep in NumPy)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
                raise ValueError(f"{name}: seeds must be integers >= 0, got {v!r}")
    if isinstance(n_bootstrap, bool) or int(n_bootstrap) != n_bootstrap or n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be a positive integer, got {n_bootstrap!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return protocols, [float(f) for f in fractions], [int(v) for v in seeds]


def evaluate(encoder_or_dir: Union[SSLMethod, str, os.PathLike], dataset,
             protocol: Union[str, Sequence[str]] = "linear_probe",
             label_fractions: Sequence[float] = (0.01, 0.1, 1.0),
             seeds: Sequence[int] = (0, 1, 2), *, test_size: float = 0.3, split_seed: int = 0,
             n_bootstrap: int = 1000, level: float = 0.95, bootstrap_by: str = "record",
             random_seed: int = 0,
             probe_c: float = 1.0, knn_k: int = 10, finetune_steps: int = 30,
             finetune_lr: float = 1e-3, batch_size: int = 64,
             transform: Optional[Callable] = None, device: Union[str, torch.device, None] = None,
             progress: bool = False):
    """Score an SSL encoder, and a randomly initialised one of the same architecture, on a
    labelled dataset.

    The dataset is split once into train and test (by patient when it has patient ids,
    else by record; stratified by class; :func:`train_test_indices`). For each encoder
    (the given one, ``encoder="pretrained"``, and its random twin, ``encoder="random"``:
    rebuilt from the method's config under ``torch.manual_seed(random_seed)``), the frozen
    embeddings (``encoder.embed`` in eval mode, no gradients, in batches) are computed once;
    then for each protocol, label fraction and seed, a classifier is trained on the
    seed's label subsample of the training split (:func:`label_subsample`) and scored on
    the whole test split.

    Parameters
    ----------
    encoder_or_dir : SSLMethod or path
        An SSL method (any registered one) or its ``save_pretrained`` folder.
    dataset : Dataset or tuple
        A Dataset of ``(signal (n_leads, n_samples), target, ...)`` items (a
        ``metadata`` DataFrame with ``patient_id`` gives patient splits), or a tuple
        ``(signals (N, n_leads, n_samples), targets[, patient_ids])``. Targets are class
        indices ``(N,)`` (single-label) or multi-hot ``(N, K)`` (multi-label). Signals
        must already be the encoder's input, unless `transform` makes them so.
    protocol : str or sequence of str
        ``"linear_probe"`` (L2 logistic regression, inverse strength `probe_c`, on
        standardised embeddings; one per class for multi-label), ``"knn"`` (`knn_k`
        nearest neighbours, cosine distance on standardised embeddings, a majority vote
        whose ties go to the lowest class index (scikit-learn's); for single-label at
        most the smallest class count of the subsample) or ``"finetune"`` (a copy of
        the encoder in :class:`fastecg.ssl.SSLClassifier`, ``mode="full"``, trained
        `finetune_steps` AdamW steps at `finetune_lr` with the
        :class:`fastecg.train.Trainer`), or several of them.
    label_fractions : sequence of float
        Fractions of the training split that are labelled, each in (0, 1].
    seeds : sequence of int
        One label subsample (and, for fine-tuning, one head initialisation and data
        order) per seed.
    test_size : float
        Fraction of patients (records) in the test split.
    split_seed, random_seed : int
        Seeds of the split (and of the bootstrap resamples) and of the random encoder.
    n_bootstrap, level : int, float
        Bootstrap resamples of the test records and the interval's coverage.
    bootstrap_by : {"record", "patient"}
        What the bootstrap resamples: the test records, or the test patients (every
        record of a drawn patient; :func:`bootstrap_scores` with ``groups``), which
        holds the correlation of a patient's records and needs patient ids.
    batch_size : int
        Records per forward pass (embeddings, fine-tuning batches).
    transform : callable, optional
        Applied to each batch of signals on the device before the encoder (e.g. the
        encoder's ``contract.apply`` with a fixed rate).
    device : str or torch.device, optional
        Where the encoders run; that of the encoder's parameters by default.
    progress : bool
        A tqdm bar over the fits.

    Returns
    -------
    pandas.DataFrame
        Tidy: one row per encoder x protocol x label fraction x metric, with columns
        ``method`` (the SSL method's registry name), ``encoder`` (``"pretrained"`` or
        ``"random"``), ``protocol``, ``label_fraction``, ``metric`` (``accuracy`` and
        ``macro_f1`` for single-label targets, ``macro_auroc`` and ``macro_f1`` for
        multi-label), ``value`` (the mean over seeds of the metric on the test split),
        ``ci_low``, ``ci_high`` (percentile bootstrap interval of that seed mean:
        every seed is scored on the same resamples of the test records, the same for
        both encoders, so the intervals are paired), ``seed_std`` (spread over seeds,
        which the interval does not include), ``n_seeds``, ``n_train`` (labelled
        records, mean over seeds), ``n_test``. ``df.attrs["split"]`` says whether the
        split was by ``"patient"`` or ``"record"``, ``df.attrs["bootstrap"]`` what the
        bootstrap resampled.

    Raises
    ------
    ValueError
        An unknown protocol, a label fraction outside (0, 1], no seeds, an empty
        dataset, a dataset without targets or with records of different shapes, an
        empty training or test split, a single-label training split without two
        classes or a multi-label one without any positive label, NaN or infinite
        embeddings (of the linear probe and kNN), `bootstrap_by` neither
        ``"record"`` nor ``"patient"``, or ``"patient"`` without patient ids.
    TypeError
        `encoder_or_dir` is neither an SSL method nor a folder.

    Examples
    --------
    >>> import torch
    >>> from fastecg.registry import SSL
    >>> model = SSL.build("mae_1d", n_leads=2, seq_len=100, patch_size=25, embed_dim=16,
    ...                   depth=1, num_heads=2, decoder_dim=8, decoder_depth=1,
    ...                   decoder_heads=2)
    >>> x, y = torch.randn(40, 2, 100), torch.arange(40) % 2
    >>> df = evaluate(model, (x, y), "knn", label_fractions=[1.0], seeds=[0],
    ...               n_bootstrap=100)
    >>> sorted(df["encoder"].unique()), sorted(df["metric"].unique())
    (['pretrained', 'random'], ['accuracy', 'macro_f1'])
    """
    import pandas as pd

    protocols, fractions, seeds = _check_evaluation(protocol, label_fractions, seeds,
                                                    split_seed, random_seed, n_bootstrap,
                                                    level)
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size!r}")
    if int(knn_k) != knn_k or knn_k < 1:
        raise ValueError(f"knn_k must be a positive integer, got {knn_k!r}")
    if int(finetune_steps) != finetune_steps or finetune_steps < 1:
        raise ValueError(f"finetune_steps must be a positive integer, got {finetune_steps!r}")
    if not probe_c > 0:
        raise ValueError(f"probe_c must be > 0, got {probe_c!r}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if bootstrap_by not in ("record", "patient"):
        raise ValueError(f"bootstrap_by must be 'record' or 'patient', got {bootstrap_by!r}")
    encoder = _as_encoder(encoder_or_dir)
    device = torch.device(device) if device is not None else next(encoder.parameters()).device
    if any(_on_other_device(t, device) for t in (*encoder.parameters(), *encoder.buffers())):
        # A copy on `device`: Module.to moves in place, and the caller's model stays where
        # it was.
        encoder = copy.deepcopy(encoder).to(device)

    x, y, groups, n_classes = _load(dataset, batch_size)
    dtype = next((p.dtype for p in encoder.parameters() if p.is_floating_point()), x.dtype)
    x = x.to(dtype)  # the signals in the encoder's precision (a float64 model refused float32)
    train, test, by = train_test_indices(y, groups, test_size, split_seed)
    if bootstrap_by == "patient" and by != "patient":
        raise ValueError("bootstrap_by='patient' needs patient ids: the dataset has none "
                         "(a patient_id metadata column, or a third item of the tuple)")
    test_groups = [groups[i] for i in test] if bootstrap_by == "patient" else None
    if len(train) == 0 or len(test) == 0:
        raise ValueError(f"dataset: {len(y)} records split into {len(train)} for training "
                         f"and {len(test)} for testing at test_size={test_size}; both need "
                         f"records: give more records or another test_size")
    if y.ndim == 1 and len(np.unique(y[train])) < 2:
        raise ValueError("dataset: the training split needs at least two classes")
    if y.ndim == 2 and not (y[train] > 0).any():
        raise ValueError(f"dataset: the multi-label training split needs at least one "
                         f"positive label; all {y.shape[1]} labels of its {len(train)} "
                         f"records are 0")
    subsets = {(f, s): train[label_subsample(y[train], f, s)] for f in fractions for s in seeds}
    y_test = y[test]

    encoders = {"pretrained": encoder, "random": _random_twin(encoder, random_seed)}
    method = encoder.config["name"]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(encoders) * len(protocols) * len(fractions) * len(seeds),
                   desc=f"evaluate {method}", dynamic_ncols=True)
    rows = []
    try:
        for enc_name, enc in encoders.items():
            feats = None
            if set(protocols) & {"linear_probe", "knn"}:
                feats = _embed(enc, x, batch_size, device, transform)
            for proto in protocols:
                for f in fractions:
                    outputs, sizes = [], []
                    for s in seeds:
                        idx = subsets[f, s]
                        if proto == "linear_probe":
                            out = _linear_probe(feats[idx], y[idx], feats[test], n_classes,
                                                probe_c)
                        elif proto == "knn":
                            out = _knn(feats[idx], y[idx], feats[test], int(knn_k))
                        else:
                            out = _finetune(enc, x[idx], y[idx], x[test], n_classes, s,
                                            int(finetune_steps), finetune_lr, int(batch_size),
                                            device, transform)
                        outputs.append(out)
                        sizes.append(len(idx))
                        if bar is not None:
                            bar.update(1)
                    scores = bootstrap_scores(y_test, outputs, n_bootstrap, split_seed, level,
                                              test_groups)
                    for rec in scores.to_dict("records"):
                        rows.append({"method": method, "encoder": enc_name, "protocol": proto,
                                     "label_fraction": f, **rec, "n_seeds": len(seeds),
                                     "n_train": float(np.mean(sizes)), "n_test": len(test)})
    finally:
        if bar is not None:
            bar.close()
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df.attrs["split"] = by
    df.attrs["bootstrap"] = bootstrap_by
    return df
