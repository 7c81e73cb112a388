"""``fastecg ssl-compare``: pretrain every registered SSL method for the same budget on the
same data, score each with the evaluation harness (beside its random-encoder twin), and
write the table and the plots.

What it shows: on the data given, which methods' encoders a linear probe or kNN (or
fine-tuning) separates the classes with better than the same architecture at random
initialisation, at each label fraction, with bootstrap intervals over the test records.
What it does not: a ranking of the methods at their published scale (``--quick`` trains
small encoders for a few hundred steps on synthetic ECG).
"""

from __future__ import annotations

import argparse
import inspect
import math
import pathlib
import shutil
import time
from typing import Optional, Sequence

import numpy as np
import torch

__all__ = ["QUICK", "FULL", "compare", "model_config", "write_markdown", "plot_losses",
           "plot_scores", "run_ssl_compare"]

SYNTHETIC_FS = 100.0
SYNTHETIC_SECONDS = 10.0
_PATCH = 50

QUICK = dict(records=400, steps=300, batch_size=32, lr=1e-3, protocols=("linear_probe", "knn"),
             model=dict(embed_dim=64, depth=2, num_heads=4, decoder_dim=32, decoder_depth=1,
                        decoder_heads=4, patch_size=_PATCH,
                        encoder={"name": "resnet", "layers": [1, 1, 1, 1],
                                 "widths": [16, 32, 64, 64], "stem_channels": 16}))
"""``--quick``: 400 synthetic records of 12 leads x 1000 samples (100 Hz), 300 steps of
batch 32 per method, small encoders (a 2-block ViT of width 64; a 4-stage ResNet of width
16-64 for methods that take a backbone), linear probe and kNN."""

FULL = dict(records=2000, steps=1000, batch_size=64, lr=5e-4,
            protocols=("linear_probe", "knn", "finetune"),
            model=dict(embed_dim=192, depth=4, num_heads=4, decoder_dim=128, decoder_depth=2,
                       decoder_heads=4, patch_size=_PATCH))
"""The default budget: 2000 synthetic records, 1000 steps of batch 64, the ``small``
ViT of ``fastecg pretrain`` (backbones at their defaults), all three protocols."""


def model_config(name: str, n_leads: int, seq_len: int, fs: float,
                 sizes: Optional[dict] = None) -> dict:
    """The registry config of SSL method `name` for ``(n_leads, seq_len)`` input at `fs`
    that is already preprocessed (no contract pipeline), with those of `sizes` that its
    constructor takes (so any registered method fits, each at its own defaults for the
    rest).

    Examples
    --------
    >>> model_config("mae_1d", 12, 1000, 100.0, {"depth": 2, "encoder": "resnet"})["depth"]
    2
    """
    from fastecg.registry import SSL

    params = inspect.signature(SSL.get(name)).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    wanted = {"n_leads": n_leads, "seq_len": seq_len, "fs": fs, "preprocess": None,
              **(sizes or {})}
    config = {k: v for k, v in wanted.items() if k in params or
              (takes_any and k in ("n_leads", "seq_len"))}
    return {"name": name, **config}


# ---- data -------------------------------------------------------------------------------------

# How compare()'s checks name its arguments: as the Python API spells them, and as
# `fastecg ssl-compare` does (its options).
_ARG_NAMES = {"methods": "methods", "protocols": "protocols", "data": "data",
              "seq_len": "seq_len"}
_CLI_NAMES = {"methods": "--methods", "protocols": "--protocols", "data": "--data",
              "seq_len": "--seq-len"}


def _check_arguments(methods, protocols, data: str, seq_len: Optional[int],
                     names: dict) -> tuple[list, Optional[tuple]]:
    """compare()'s methods, protocols, data and seq_len checked before any work, each
    error naming its argument as `names` does; returns the methods (all registered by
    default; a string is one name) and the protocols (None stays None)."""
    from fastecg.registry import SSL, did_you_mean

    from .evaluate import _protocols

    if methods is None:
        methods = SSL.list()
    methods = [methods] if isinstance(methods, str) else list(methods)
    if not methods:
        raise ValueError(f"{names['methods']}: no SSL method to compare")
    for name in methods:
        if name not in SSL:
            raise ValueError(f"{names['methods']}: unknown SSL method {name!r}"
                             f"{did_you_mean(name, SSL.list())} (registered: "
                             f"{', '.join(SSL.list())})")
    if protocols is not None:
        try:
            protocols = _protocols(protocols)
        except ValueError as err:  # "protocol: ...", evaluate's argument
            raise ValueError(f"{names['protocols']}: {str(err).partition(': ')[2]}") \
                from None
    if seq_len is not None and (seq_len < _PATCH or seq_len % _PATCH):
        raise ValueError(f"{names['seq_len']} must be a positive multiple of {_PATCH}, "
                         f"got {seq_len}")
    _store_length(data, seq_len, names["data"])
    return methods, protocols


def _store_length(data: str, seq_len: Optional[int], name: str) -> Optional[int]:
    """Samples per record of the store `data` (None for synthetic data): `seq_len` or its
    shortest record's, cut to whole patches; ValueError naming `name` where it is no
    labelled store with a sampling rate."""
    from fastecg.data import ECGStore

    if data == "synthetic":
        return None
    if not pathlib.Path(data).is_dir():
        raise ValueError(f"{name} {data}: neither 'synthetic' nor a store folder")
    try:
        probe = ECGStore(data)
    except FileNotFoundError as err:  # a folder a failed `fastecg preprocess` left
        raise ValueError(f"{name} {data}: {err}; write the store with `fastecg "
                         "preprocess`") from None
    if probe.targets is None:
        raise ValueError(f"{name} {data}: the store has no targets to evaluate on")
    if probe.fs is None:
        raise ValueError(f"{name} {data}: the store does not record its sampling rate")
    length = seq_len or int(probe.index[:, 3].min())
    length -= length % _PATCH
    if length < _PATCH:
        raise ValueError(f"{name} {data}: records shorter than one {_PATCH}-sample patch")
    return length


def _data(data: str, records: int, seed: int, seq_len: Optional[int]):
    """(signals (N, C, L) standardised per record, targets, patient ids, fs)."""
    from fastecg.data import ECGStore, SyntheticECGDataset

    from .evaluate import _load

    if data == "synthetic":
        dataset = SyntheticECGDataset(records, fs=SYNTHETIC_FS, seconds=SYNTHETIC_SECONDS,
                                      n_leads=12, seed=seed)
        fs = SYNTHETIC_FS
    else:
        dataset = ECGStore(data, crop=_store_length(data, seq_len, _ARG_NAMES["data"]))
        fs = float(dataset.fs)
        if records < len(dataset):
            from torch.utils.data import Subset

            meta = dataset.metadata
            dataset = Subset(dataset, range(records))
            dataset.metadata = meta.iloc[:records].reset_index(drop=True)
    x, y, groups, _ = _load(dataset, 64)
    if seq_len is not None and data == "synthetic":
        x = x[..., :seq_len]
    x = (x - x.mean((-1, -2), keepdim=True)) / (x.std((-1, -2), keepdim=True) + 1e-6)
    return x, y, groups, fs


# ---- outputs ----------------------------------------------------------------------------------

def write_markdown(df, path) -> pathlib.Path:
    """The tidy table as a Markdown table (value and 95% interval in one cell), one row
    per method x encoder x protocol x metric and one column per label fraction.

    Examples
    --------
    >>> import pandas as pd, tempfile, pathlib
    >>> df = pd.DataFrame({"method": ["m"], "encoder": ["random"], "protocol": ["knn"],
    ...                    "label_fraction": [1.0], "metric": ["accuracy"], "value": [0.5],
    ...                    "ci_low": [0.4], "ci_high": [0.6]})
    >>> p = write_markdown(df, pathlib.Path(tempfile.mkdtemp()) / "r.md")
    >>> p.read_text().splitlines()[2]
    '| m | random | knn | accuracy | 0.500 [0.400, 0.600] |'
    """
    path = pathlib.Path(path)
    keys = ["method", "encoder", "protocol", "metric"]
    fractions = sorted(df["label_fraction"].unique())
    head = keys + [f"{f:g} labels" for f in fractions]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, group in df.groupby(keys, sort=False):
        cells = {r.label_fraction: f"{r.value:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]"
                 for r in group.itertuples()}
        lines.append("| " + " | ".join([*map(str, key), *(cells.get(f, "") for f in fractions)])
                     + " |")
    path.write_text("\n".join(lines) + "\n")
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_losses(histories: dict, path) -> pathlib.Path:
    """Pretraining loss against optimizer step, one panel per method (each method's loss
    has its own scale), raw per-step values faint, a moving average bold.

    Parameters
    ----------
    histories : dict
        Method name -> list of ``{"step", "loss"}`` dicts (:meth:`Trainer.fit`'s history).
    path : path
        The PNG written.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> h = {"m": [{"step": i + 1, "loss": 1 / (i + 1)} for i in range(20)]}
    >>> plot_losses(h, pathlib.Path(tempfile.mkdtemp()) / "loss.png").is_file()
    True
    """
    plt = _pyplot()
    names = list(histories)
    cols = min(3, max(1, len(names)))
    rows = math.ceil(len(names) / cols) if names else 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, ax in enumerate(axes.flat):
        if i >= len(names):
            ax.set_visible(False)
            continue
        hist = histories[names[i]]
        steps = np.array([h["step"] for h in hist])
        loss = np.array([h["loss"] for h in hist])
        color = colors[i % len(colors)]
        k = max(1, len(loss) // 20)
        ax.plot(steps, loss, color=color, alpha=0.3 if k > 1 else 1.0, lw=0.8,
                label="per step")
        if len(loss) >= k > 1:
            smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
            ax.plot(steps[k - 1:], smooth, color=color, lw=2, label=f"mean of {k} steps")
        ax.set_title(names[i])
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("pretraining loss (method's own units)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("SSL pretraining loss")
    fig.tight_layout()
    path = pathlib.Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_scores(df, path, metric: Optional[str] = None) -> pathlib.Path:
    """Score against label fraction (log x) with the 95% bootstrap intervals as error
    bars: one panel per protocol (row) and method (column), each with the pretrained
    encoder (solid) and its random-init twin (dashed, grey), on one shared y axis.

    Parameters
    ----------
    df : pandas.DataFrame
        :func:`fastecg.ssl.evaluate.evaluate`'s table (several methods concatenated).
    path : path
        The PNG written.
    metric : str, optional
        ``accuracy`` (single-label) or ``macro_auroc`` (multi-label) by default.

    Examples
    --------
    >>> import pandas as pd, tempfile, pathlib
    >>> df = pd.DataFrame({"method": "m", "encoder": ["pretrained", "random"],
    ...                    "protocol": "knn", "label_fraction": 1.0, "metric": "accuracy",
    ...                    "value": [0.6, 0.5], "ci_low": [0.5, 0.4], "ci_high": [0.7, 0.6]})
    >>> plot_scores(df, pathlib.Path(tempfile.mkdtemp()) / "s.png").is_file()
    True
    """
    plt = _pyplot()
    if metric is None:
        metric = "accuracy" if "accuracy" in set(df["metric"]) else "macro_auroc"
    sub = df[df["metric"] == metric]
    protocols = list(dict.fromkeys(sub["protocol"]))
    methods = list(dict.fromkeys(sub["method"]))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fractions = sorted(sub["label_fraction"].unique())
    fig, axes = plt.subplots(len(protocols), len(methods),
                             figsize=(2.9 * len(methods) + 0.8, 2.7 * len(protocols) + 0.9),
                             squeeze=False, sharex=True, sharey=True)
    styles = {"pretrained": dict(ls="-", marker="o", alpha=1.0, offset=-0.03),
              "random": dict(ls="--", marker="s", alpha=0.8, offset=0.03)}
    for r, proto in enumerate(protocols):
        for c, method in enumerate(methods):
            ax = axes[r, c]
            for enc, st in styles.items():
                rows = sub[(sub["protocol"] == proto) & (sub["method"] == method) &
                           (sub["encoder"] == enc)].sort_values("label_fraction")
                if rows.empty:
                    continue
                # A small offset keeps the two encoders' error bars apart.
                fx = rows["label_fraction"].to_numpy() * 10 ** st["offset"]
                v = rows["value"].to_numpy()
                err = np.vstack([v - rows["ci_low"].to_numpy(), rows["ci_high"].to_numpy() - v])
                color = colors[c % len(colors)] if enc == "pretrained" else "0.45"
                ax.errorbar(fx, v, yerr=np.clip(err, 0, None), color=color, ls=st["ls"],
                            marker=st["marker"], ms=4, capsize=3, lw=1.6, alpha=st["alpha"],
                            label="pretrained" if enc == "pretrained" else "random init")
            ax.set_xscale("log")
            ax.set_xticks(fractions)
            ax.set_xticklabels([f"{100 * f:g}%" for f in fractions])
            ax.minorticks_off()
            ax.grid(alpha=0.3)
            if r == 0:
                ax.set_title(method)
            if c == 0:
                ax.set_ylabel(f"{proto.replace('_', ' ')}\ntest {metric.replace('_', ' ')}")
            if r == len(protocols) - 1:
                ax.set_xlabel("labelled fraction (log)")
            ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Test {metric.replace('_', ' ')} (95% bootstrap CI over test records) "
                 f"against the labelled fraction of the training split")
    fig.tight_layout()
    path = pathlib.Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---- the comparison ---------------------------------------------------------------------------

def compare(methods: Optional[Sequence[str]] = None, data: str = "synthetic",
            out="ssl_compare", quick: bool = False, steps: Optional[int] = None,
            records: Optional[int] = None, batch_size: Optional[int] = None,
            protocols: Optional[Sequence[str]] = None,
            label_fractions: Sequence[float] = (0.01, 0.1, 1.0),
            seeds: Sequence[int] = (0, 1, 2), seed: int = 0, seq_len: Optional[int] = None,
            n_bootstrap: int = 1000, progress: bool = True):
    """Pretrain each SSL method for the same budget on the same records, score it with
    :func:`fastecg.ssl.evaluate.evaluate` (its random twin included), write the results.

    The records are split once by patient (by record without patient ids); every method
    pretrains on the training split only (labels unused), with the
    :class:`fastecg.train.Trainer` (AdamW, same steps, batch and data order), and is
    evaluated on the same split. Signals are standardised per record (zero mean, unit
    variance over leads and time).

    Parameters
    ----------
    methods : str or sequence of str, optional
        Registered SSL methods (a string is one); all of ``SSL.list()`` by default.
    data : str
        ``"synthetic"`` (labelled synthetic 12-lead ECG at 100 Hz, 10 s) or the folder of
        a store with targets (``fastecg preprocess``; records cut to their first
        `seq_len` samples, by default the shortest record's length).
    out : path
        Folder of ``results.csv`` (the tidy table), ``results.md``, ``pretraining.csv``
        (per method: steps, first and last loss, seconds), ``loss_curves.png``,
        ``scores.png``, and ``pretrain/<method>/`` (metrics, the saved model).
    quick : bool
        The :data:`QUICK` budget instead of :data:`FULL`.
    steps, records, batch_size, protocols
        Override the budget's.
    label_fractions, seeds, n_bootstrap
        Passed to ``evaluate``.
    seed : int
        Seeds the data, the split, the models' initialisation and the data order.
    seq_len : int, optional
        Samples per record fed to the models (a multiple of 50).

    Returns
    -------
    pandas.DataFrame
        The tidy table of every method (``evaluate``'s columns).

    Raises
    ------
    ValueError
        An unknown method (with close names), bad data, or the bad values ``evaluate``
        refuses, before any pretraining.

    Examples
    --------
    >>> import tempfile
    >>> df = compare(["mae_1d"], out=tempfile.mkdtemp(), quick=True, steps=2, records=30,
    ...              batch_size=8, protocols=["knn"], label_fractions=[1.0], seeds=[0],
    ...              n_bootstrap=50, progress=False)
    >>> sorted(df["encoder"].unique())
    ['pretrained', 'random']
    """
    import pandas as pd

    from fastecg.registry import SSL
    from fastecg.train import Trainer
    from fastecg.train.trainer import CKPT_DIR

    from .evaluate import _check_evaluation, evaluate, train_test_indices

    budget = QUICK if quick else FULL
    methods, protocols = _check_arguments(methods, protocols, data, seq_len, _ARG_NAMES)
    if protocols is None:
        protocols = budget["protocols"]
    # evaluate()'s arguments, checked before any pretraining (split_seed and random_seed
    # are `seed`)
    _check_evaluation(protocols, label_fractions, seeds, seed, seed, n_bootstrap, 0.95)
    steps = int(steps if steps is not None else budget["steps"])
    records = int(records if records is not None else budget["records"])
    batch_size = int(batch_size if batch_size is not None else budget["batch_size"])
    if min(steps, records, batch_size) < 1:
        raise ValueError("steps, records and batch_size must be >= 1")
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)

    x, y, groups, fs = _data(data, records, seed, seq_len)
    train, _, _ = train_test_indices(y, groups, 0.3, seed)
    if len(train) < batch_size:
        raise ValueError(f"the training split has {len(train)} records, fewer than one batch "
                         f"of {batch_size}: give more records or a smaller batch")
    x_pre = x[train]
    tables, histories, summary = [], {}, []
    for name in methods:
        config = model_config(name, x.shape[1], x.shape[2], fs, budget["model"])
        folder = out / "pretrain" / name
        # Every method starts from the same RNG state (its masks and views draw from it),
        # so its result does not depend on which methods ran before it.
        with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
            torch.manual_seed(seed)
            model = SSL.build(config)
            # compare never resumes: an earlier comparison's checkpoints in the same `out`
            # go, and only this run's final one is kept
            shutil.rmtree(folder / "train" / CKPT_DIR, ignore_errors=True)
            trainer = Trainer(model, lr=budget["lr"], batch_size=batch_size, max_steps=steps,
                              out_dir=folder / "train", seed=seed, progress=progress,
                              keep_last=1)
            t0 = time.perf_counter()
            hist = trainer.fit(x_pre)
            seconds = time.perf_counter() - t0
        trainer.save_pretrained(folder / "pretrained")
        trainer.close()
        histories[name] = hist
        summary.append({"method": name, "steps": len(hist), "batch_size": batch_size,
                        "first_loss": hist[0]["loss"], "last_loss": hist[-1]["loss"],
                        "pretrain_s": seconds,
                        "parameters": sum(p.numel() for p in model.parameters())})
        t0 = time.perf_counter()
        tables.append(evaluate(model, (x, y, groups), protocols, label_fractions, seeds,
                               split_seed=seed, random_seed=seed, n_bootstrap=n_bootstrap,
                               progress=progress))
        summary[-1]["evaluate_s"] = time.perf_counter() - t0
    df = pd.concat(tables, ignore_index=True)
    df.attrs["split"] = tables[0].attrs.get("split")
    df.to_csv(out / "results.csv", index=False)
    write_markdown(df, out / "results.md")
    pd.DataFrame(summary).to_csv(out / "pretraining.csv", index=False)
    plot_losses(histories, out / "loss_curves.png")
    plot_scores(df, out / "scores.png")
    return df


def run_ssl_compare(args: argparse.Namespace) -> int:
    """What ``fastecg ssl-compare`` runs (its arguments are defined in
    :mod:`fastecg.cli`)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = None if args.methods is None else \
        [m.strip() for m in args.methods.split(",") if m.strip()]
    protocols = None if args.protocols is None else \
        [p.strip() for p in args.protocols.split(",") if p.strip()]
    # compare() checks these again, naming its Python arguments; here the options
    _check_arguments(methods, protocols, args.data, args.seq_len, _CLI_NAMES)
    t0 = time.perf_counter()
    df = compare(methods, data=args.data, out=args.out, quick=args.quick, steps=args.steps,
                 records=args.records, batch_size=args.batch_size, protocols=protocols,
                 seed=args.seed, seq_len=args.seq_len, progress=not args.quiet)
    elapsed = time.perf_counter() - t0
    metric = "accuracy" if "accuracy" in set(df["metric"]) else "macro_auroc"
    best = df[(df["metric"] == metric) & (df["label_fraction"] == df["label_fraction"].max())]
    print(best.pivot_table(index=["method", "protocol"], columns="encoder",
                           values="value").round(3).to_string())
    print(f"wrote {args.out}/results.csv, results.md, pretraining.csv, loss_curves.png, "
          f"scores.png in {elapsed:.0f} s")
    return 0
