"""``fastecg pretrain`` and ``fastecg finetune``: what the commands run (their arguments
are defined in :mod:`fastecg.cli`, which imports no torch to build its parser)."""

from __future__ import annotations

import argparse
import inspect
import json
import os
import pathlib
import time

import torch
import torch.nn.functional as F

__all__ = ["PRESETS", "run_pretrain", "run_finetune"]

# "small" trains on a laptop CPU in minutes; "paper" is each method's published size.
PRESETS = {
    "small": dict(embed_dim=192, depth=4, num_heads=4, decoder_dim=128, decoder_depth=2,
                  decoder_heads=4),
    "tiny": dict(embed_dim=32, depth=1, num_heads=2, decoder_dim=16, decoder_depth=1,
                 decoder_heads=2),
    "paper": {},
}
SYNTHETIC_FS = 500.0
SYNTHETIC_SECONDS = 10.0


def _model_args(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"--model-args: not JSON ({err})") from None
    if not isinstance(value, dict):
        raise ValueError("--model-args: expected a JSON object of constructor arguments")
    return value


def _dataset(data: str, n_records: int, model, labelled: bool, seed: int):
    """(dataset, fs of its records). Store records are cut to windows that the model's
    contract turns into exactly its input length (random windows, drawn per epoch)."""
    from fastecg.data import ECGStore, SyntheticECGDataset

    contract = model.contract

    def window(fs: float) -> int:
        return model.seq_len if contract is None or contract.fs is None else \
            int(round(model.seq_len * float(fs) / contract.fs))

    if data == "synthetic":
        # Ten seconds, or the model's own length where its contract does not cut records
        # to it (it takes them as they are).
        seconds = SYNTHETIC_SECONDS if contract is not None and contract.manager() is not None \
            else window(SYNTHETIC_FS) / SYNTHETIC_FS
        ds = SyntheticECGDataset(n_records, fs=SYNTHETIC_FS, seconds=seconds,
                                 n_leads=model.n_leads, seed=seed)
        return ds, SYNTHETIC_FS
    if not os.path.isdir(data):
        raise ValueError(f"--data {data}: neither 'synthetic' nor a store folder")
    try:
        fs = ECGStore(data).fs
    except FileNotFoundError as err:  # a folder a failed `fastecg preprocess` left
        raise ValueError(f"--data {data}: {err}; write the store with `fastecg "
                         "preprocess`") from None
    if fs is None:
        raise ValueError(f"--data {data}: the store does not record its sampling rate")
    store = ECGStore(data, crop=window(fs), random_crop=not labelled, seed=seed)
    if labelled and store.targets is None:
        raise ValueError(f"--data {data}: the store has no targets to fine-tune on")
    return store, float(store.fs)


def _input_contract(dataset, contract):
    """The contract the dataset's records still have to go through: `contract`, or, for a
    store that `contract`'s own pipeline wrote (``fastecg preprocess --recipe st_mem`` for
    an ``st_mem`` model), the contract without that pipeline: its records are the model's
    input already, and filtering them again would train the model on other input than
    ``contract.apply`` gives it afterwards."""
    from fastecg.ssl.pretrained import Contract, _preproc_config

    written_by = getattr(dataset, "preprocessing", None)
    if contract is None or contract.preprocess is None or written_by is None or \
            _preproc_config(written_by) != contract.preprocess:
        return contract
    return Contract(contract.fs, contract.lead_names, contract.siglen, None)


def _check_input(dataset, contract, fs: float, data: str) -> None:
    """ValueError before any training where the records cannot become the model's input:
    the contract takes one record at `fs` (its leads named by the dataset, when it names
    them) through its preprocessing and checks the leads, rate and length it comes out
    with (a store at another rate than the model's, whose contract does not resample,
    or of other leads, would otherwise be fed to it as it is)."""
    if contract is None or len(dataset) == 0:
        return
    item = dataset[0]
    sig = torch.as_tensor(item[0] if isinstance(item, (tuple, list)) else item)
    try:
        contract.apply(sig[None], fs, getattr(dataset, "lead_names", None))
    except ValueError as err:
        hint = ""
        if contract.fs is not None and contract.manager() is None and \
                abs(float(fs) - contract.fs) > 1e-9:
            hint = f" (write the store at {contract.fs:g} Hz: fastecg preprocess --fs " \
                   f"{contract.fs:g} ...)"
        raise ValueError(f"--data {data}: {err}{hint}") from None


def _input_transform(contract, fs: float, lead_names=None):
    """Device-side preparation inside the training step: the model's contract applied to
    records at `fs` whose leads are `lead_names` (put in the order its pipeline takes
    first, as Contract.apply); None when they already are the model's input."""
    if contract is None:
        return None
    pm = contract.manager()
    order = contract.input_order(lead_names)
    if pm is None and order is None:
        return None

    def transform(sig):
        if order is not None:
            sig = sig.index_select(-2, torch.tensor(order, device=sig.device))
        return sig if pm is None else pm(sig, fs)[0]

    return transform


def _check_earlier_run(args: argparse.Namespace) -> None:
    """ValueError, before any work, where ``--out`` holds the checkpoints of an earlier
    run and neither ``--resume`` nor ``--overwrite`` says what to do with them: a fresh
    run would write its own beside them, and a later ``--resume`` or a look at the
    folder would meet checkpoints of two runs."""
    from fastecg.train.trainer import CKPT_DIR, LATEST, saved_checkpoints

    if args.resume or args.overwrite:
        return
    folder = pathlib.Path(args.out) / "train" / CKPT_DIR
    saved = saved_checkpoints(folder)
    if saved or (folder / LATEST).is_file():
        newest = f", newest {saved[-1].name}" if saved else ""
        raise ValueError(f"--out {args.out}: holds the checkpoints of an earlier run "
                         f"({folder}{newest}); pass --resume to continue it, --overwrite "
                         f"to start afresh in its place, or choose another --out")


def _clear_earlier_run(trainer, out: pathlib.Path, result: str) -> None:
    """``--overwrite``: the earlier run's ``train/`` (checkpoints, metrics, logs) and its
    saved model `result` go (on the main process only) before training starts."""
    import shutil

    if trainer.is_main:
        for name in ("train", result):
            if (out / name).is_dir():
                shutil.rmtree(out / name)


def _print_finished(what: str, trainer, saved) -> None:
    """What a ``--resume`` of a run that had already reached ``--steps`` did."""
    print(f"{what}: the checkpoint in {trainer.out_dir} is at step {trainer.step} of "
          f"{trainer.max_steps} already; no step trained; saved {saved}")


def run_pretrain(args: argparse.Namespace) -> int:
    from fastecg.registry import SSL, did_you_mean
    from fastecg.train import Trainer

    _check_earlier_run(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.method not in SSL:
        raise ValueError(f"--method: unknown SSL method {args.method!r}"
                         f"{did_you_mean(args.method, SSL.list())} (registered: "
                         f"{', '.join(SSL.list())})")
    torch.manual_seed(args.seed)
    # A preset sizes the methods that take its arguments (the ViT-style ones); the others
    # keep their defaults. --model-args are passed as given (a wrong one is an error).
    preset = {k: v for k, v in PRESETS[args.preset].items()
              if k in inspect.signature(SSL.get(args.method)).parameters}
    config = {"name": args.method, **preset, **_model_args(args.model_args)}
    try:
        model = SSL.build(config)
    except RuntimeError as err:  # a value torch refuses (a negative width, ...)
        raise ValueError(f"--model-args: cannot build {args.method} with {config}: {err}") \
            from None
    dataset, fs = _dataset(args.data, args.records, model, False, args.seed)
    contract = _input_contract(dataset, model.contract)
    _check_input(dataset, contract, fs, args.data)
    out = pathlib.Path(args.out)
    trainer = Trainer(model, lr=args.lr, batch_size=args.batch_size, max_steps=args.steps,
                      amp=args.amp, out_dir=out / "train", ckpt_every=args.ckpt_every,
                      seed=args.seed,
                      transform=_input_transform(contract, fs,
                                                 getattr(dataset, "lead_names", None)),
                      progress=not args.quiet, num_workers=args.workers)
    if args.overwrite:
        _clear_earlier_run(trainer, out, "pretrained")
    t0 = time.perf_counter()
    hist = trainer.fit(dataset, resume=args.resume)
    elapsed = time.perf_counter() - t0
    saved = trainer.save_pretrained(out / "pretrained")
    if trainer.is_main and hist:
        n = sum(1 for _ in hist) * args.batch_size * trainer.world
        print(f"{args.method}: {len(hist)} steps, loss {hist[0]['loss']:.4f} -> "
              f"{hist[-1]['loss']:.4f}, {n / elapsed:.1f} samples/s; saved {saved}")
    elif trainer.is_main:
        _print_finished(args.method, trainer, saved)
    trainer.close()
    return 0


def run_finetune(args: argparse.Namespace) -> int:
    from fastecg.ssl import finetune
    from fastecg.ssl.pretrained import read_config
    from fastecg.train import Trainer

    _check_earlier_run(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        read_config(args.checkpoint)  # a clear error before any data is read
    except FileNotFoundError as err:
        raise ValueError(f"--checkpoint: {err}") from None
    torch.manual_seed(args.seed)
    # Trained in float32 (mixed precision is the Trainer's amp): the optimizer's
    # updates would be lost in a half-precision checkpoint's weights, and the
    # records come as float32.
    try:
        model = finetune(args.checkpoint, num_classes=1, mode=args.mode, dtype=torch.float32)
    except FileNotFoundError as err:  # config.json without its weights
        raise ValueError(f"--checkpoint: {err}") from None
    dataset, fs = _dataset(args.data, args.records, model.encoder, True, args.seed)
    contract = _input_contract(dataset, model.encoder.contract)
    _check_input(dataset, contract, fs, args.data)
    targets = getattr(dataset, "targets", None)
    if targets is not None and len(getattr(targets, "shape", ())) == 2:
        # One row of 0/1 per record (a store of PhysioNet/CinC records: several
        # diagnoses each): multi-label, a sigmoid per class.
        n_classes, loss_fn = int(targets.shape[1]), F.binary_cross_entropy_with_logits
    else:
        n_classes = len(dataset.classes) if hasattr(dataset, "classes") else \
            int(max(int(t) for t in dataset.targets)) + 1
        loss_fn = F.cross_entropy
    model = finetune(model.encoder, num_classes=n_classes, mode=args.mode)
    params = model.param_groups(args.lr, layer_decay=args.layer_decay)
    trainer = Trainer(model, torch.optim.AdamW(params, lr=args.lr),
                      loss_fn=loss_fn, batch_size=args.batch_size,
                      max_steps=args.steps, amp=args.amp,
                      out_dir=pathlib.Path(args.out) / "train", ckpt_every=args.ckpt_every,
                      seed=args.seed,
                      transform=_input_transform(contract, fs,
                                                 getattr(dataset, "lead_names", None)),
                      progress=not args.quiet, num_workers=args.workers)
    if args.overwrite:
        _clear_earlier_run(trainer, pathlib.Path(args.out), "finetuned")
    hist = trainer.fit(dataset, resume=args.resume)
    saved = trainer.save_pretrained(pathlib.Path(args.out) / "finetuned")
    if trainer.is_main:
        if hist:
            print(f"finetune ({args.mode}): {len(hist)} steps, loss {hist[0]['loss']:.4f} "
                  f"-> {hist[-1]['loss']:.4f}; saved {saved}")
        else:
            _print_finished(f"finetune ({args.mode})", trainer, saved)
    trainer.close()
    return 0
