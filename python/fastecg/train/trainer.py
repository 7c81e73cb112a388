"""A training loop for SSL pretraining and fine-tuning that resumes exactly and scales with
``torchrun``.

* Exact resume: a checkpoint holds the model, optimizer, scheduler, AMP scaler, every
  RNG state (torch CPU and CUDA, NumPy, Python; per rank) and the data position (epoch,
  batch within it). The data order is a function of ``(seed, epoch)`` only, so a resumed
  run takes the same batches, and on the CPU gives bit-identical weights.
* DistributedDataParallel when launched by ``torchrun`` (``env://``; gloo on CPU, nccl on
  GPU): rank ``r`` takes every ``world``-th record of each global batch of
  ``batch_size * world`` records, so gradients equal those of one process on the global
  batch. Logging and checkpoints on rank 0 only.
* Checkpoints every ``ckpt_every`` steps, written atomically (temporary file + rename).
* AMP (``amp="bf16"`` on CPU or CUDA, ``"fp16"`` on CUDA with a GradScaler), gradient
  clipping and accumulation, a device-side ``transform`` (preprocessing, augmentation)
  inside the step, a tqdm bar (loss, samples/s), metrics to ``metrics.csv``.

The model is any ``nn.Module`` whose ``forward(batch)`` returns a dict with ``"loss"``
(every SSL method), or, with ``loss_fn``, a classifier called as ``model(x)`` on
``(x, y)`` batches. A model with an integer ``grad_accum`` attribute (every SSL method)
gets the Trainer's, so that MoCo moves its key encoder once per optimizer step.
"""

from __future__ import annotations

import csv
import gc
import math
import os
import pathlib
import random
import tempfile
import time
import warnings
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from .._rows import set_dataset_epoch, to_device
from .._spec import check_int

__all__ = ["Trainer", "EpochBatchSampler", "rng_state", "set_rng_state", "signal_of"]

CKPT_DIR = "checkpoints"
LATEST = "latest"
_UNRECORDED = object()  # a meta field that checkpoints of older versions lack


def saved_checkpoints(folder: Union[str, os.PathLike]) -> list[pathlib.Path]:
    """The checkpoint files (``step_<n>.pt``) in `folder` (a Trainer's
    ``out_dir / "checkpoints"``), oldest first; none where the folder does not exist."""
    return sorted(pathlib.Path(folder).glob("step_*.pt"))


# ---- data order -----------------------------------------------------------------------------


class EpochBatchSampler:
    """This rank's batches of an epoch, starting at a given batch.

    The epoch's order is ``randperm(n)`` from a generator seeded with ``seed + epoch``
    (``arange(n)`` without shuffling); global batches of ``batch_size * world`` records
    are cut from it (the incomplete last one dropped) and rank ``r`` takes positions
    ``r, r + world, ...`` of each.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, shuffle: bool = True,
                 rank: int = 0, world: int = 1):
        if n < batch_size * world:
            raise ValueError(f"dataset of {n} records is smaller than one global batch "
                             f"({batch_size} x {world} processes)")
        self.n, self.batch_size, self.seed, self.shuffle = n, batch_size, seed, shuffle
        self.rank, self.world = rank, world
        self.epoch, self.start = 0, 0

    def __len__(self) -> int:
        return self.n // (self.batch_size * self.world)

    def set_position(self, epoch: int, start: int) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(
                self.seed + self.epoch))
        else:
            order = torch.arange(self.n)
        g = self.batch_size * self.world
        for i in range(self.start, len(self)):
            yield order[i * g + self.rank:(i + 1) * g:self.world].tolist()


class _TensorRecords(Dataset):
    """A tensor of records as a dataset whose batches are tensors (not 1-tuples)."""

    def __init__(self, x: Tensor):
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


# ---- RNG state --------------------------------------------------------------------------------

def rng_state() -> dict:
    """Every global RNG state of this process, as tensors and plain values (loadable
    with ``torch.load(weights_only=True)``)."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                       int(np_state[2]), int(np_state[3]), float(np_state[4])]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def signal_of(batch: Any) -> Tensor:
    """The signal of a batch: ``x`` itself, or the first item of ``(signal, label, ...)``
    or the ``"signal"`` entry of a dict (whose other entries, such as CLOCS's
    ``"patient_id"``, ride along to the model).

    Examples
    --------
    >>> x = torch.zeros(4, 12, 500)
    >>> signal_of(x) is x, signal_of((x, None)) is x, signal_of({"signal": x}) is x
    (True, True, True)
    """
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, dict):
        if "signal" not in batch:
            raise ValueError(f"batch dict needs a 'signal' key, got {sorted(batch)}")
        return batch["signal"]
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    raise TypeError(f"expected a (B, n_leads, n_samples) tensor or (signal, label), got "
                    f"{type(batch).__name__}")


def _atomic_save(obj: Any, path: pathlib.Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _atomic_text(text: str, path: pathlib.Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _changed_hyperparameters(saved: list, mine: list) -> str:
    """The optimizer settings (``lr``, ``weight_decay``, ``betas``, ...) in which a
    checkpoint's parameter groups differ from this trainer's, as ``"group 0: lr 0.001
    (this trainer's: 0.01)"``, or ``""``. Under a scheduler the starting rate
    (``initial_lr``) is compared, not the current one."""
    out = []
    for g, (theirs, ours) in enumerate(zip(saved, mine)):
        for key in sorted(set(theirs) & set(ours) - {"params", "lr"}):
            if key not in ("initial_lr", "weight_decay", "momentum", "betas", "eps",
                           "dampening", "nesterov", "alpha", "lr_decay", "amsgrad"):
                continue
            a, b = theirs[key], ours[key]
            if isinstance(a, Tensor) or isinstance(b, Tensor):
                a, b = torch.as_tensor(a).tolist(), torch.as_tensor(b).tolist()
            if (list(a) if isinstance(a, (tuple, list)) else a) != \
                    (list(b) if isinstance(b, (tuple, list)) else b):
                out.append(f"group {g}: {key} {a} (this trainer's: {b})")
        if "initial_lr" not in ours and "lr" in theirs and "lr" in ours and \
                float(theirs["lr"]) != float(ours["lr"]):
            out.append(f"group {g}: lr {theirs['lr']} (this trainer's: {ours['lr']})")
    return "; ".join(out)


# ---- the trainer ------------------------------------------------------------------------------

class Trainer:
    """Train `model` on a dataset; see the module docstring.

    Parameters
    ----------
    model : nn.Module
        ``model(batch)`` returns ``{"loss": ...}``, or `loss_fn` is given.
    optimizer : torch.optim.Optimizer, optional
        By default AdamW(`lr`) over the trainable parameters, `weight_decay` on all but
        biases, normalisation parameters, tokens and position/lead embeddings
        (:func:`fastecg.train.optim.param_groups`).
    scheduler : LR scheduler, optional
        Stepped once per optimizer step (a ReduceLROnPlateau with that step's loss).
    loss_fn : callable, optional
        ``loss_fn(model(x), y)`` on ``(x, y, ...)`` batches, or on dict batches with
        ``x = batch["signal"]``, ``y = batch["label"]`` (fine-tuning).
    batch_size : int
        Records per process per micro-batch.
    max_steps : int, optional
        Optimizer steps; by default `epochs` epochs.
    grad_accum : int
        Micro-batches per optimizer step: each step takes ``batch_size * grad_accum *
        world`` records, its gradient the mean of its micro-batches'. As an incomplete
        last batch is, an epoch's last ``n_batches % grad_accum`` batches (too few for a
        step) are skipped, with a warning; shuffling makes them other records each
        epoch. (MAE's reference loop discards them too; a smaller last step would also
        break MoCo's once-per-step key update and the exact resume.)
    clip_grad_norm : float, optional
    amp : {None, "bf16", "fp16"}
        Autocast precision (``"fp16"`` with a GradScaler, CUDA only). Checkpoints
        record it, and a resume needs the same.
    device : str or torch.device, optional
        ``cuda:<local rank>`` when CUDA is available, else CPU.
    out_dir : path, optional
        Where checkpoints and ``metrics.csv`` go (none written without it). A row of
        ``metrics.csv`` per optimizer step: ``step``, ``epoch``, ``loss`` (the mean of the
        step's micro-batch losses), ``lr`` (the rate that step used, before the
        scheduler's step) and ``samples_per_s``.
    ckpt_every : int, optional
        Checkpoint period in optimizer steps (and always at the end, with `out_dir`).
        A resume (``fit(..., resume=...)``) needs the same seed, batch size, number of
        processes, accumulation, shuffling and dataset length, the optimizer's parameter
        groups, and a `scheduler` exactly when the checkpoint has one (ValueError
        otherwise).
    seed : int
        Seeds the data order.
    transform : callable, optional
        Applied on the device to the signal of each batch before the model (e.g. a
        PreprocManager); an AugmenterManager gets the label of ``(signal, label, ...)``
        batches (or a dict's ``"label"``) too and returns it mixed where a step mixes
        labels.
    callbacks : sequence of callables
        ``cb(trainer, metrics)`` after every optimizer step, before that step's
        checkpoint (which thus holds the RNG state after the callbacks' draws: a
        resumed run draws as an uninterrupted one). A callback that raises leaves no
        checkpoint of its step; a resume starts from the previous one. The model is put
        back in training mode after the callbacks (a validation callback's ``eval()``
        must not turn dropout off, or MoCo's key update, for the rest of the run).
    tensorboard : bool
        Also log to ``out_dir/tensorboard`` when TensorBoard is installed.
    keep_last : int, optional
        Keep only the newest `keep_last` checkpoints (all by default).
    lr, weight_decay : float
        Of the default optimizer (unused with `optimizer`).

    Examples
    --------
    >>> import tempfile
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from fastecg.train import Trainer
    >>> folder = tempfile.TemporaryDirectory()
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 50, 1))
    >>> data = TensorDataset(torch.randn(32, 2, 50), torch.randn(32, 1))   # (x, y) records
    >>> trainer = Trainer(model, loss_fn=torch.nn.functional.mse_loss, batch_size=8,
    ...                   epochs=2, out_dir=folder.name, progress=False)
    >>> history = trainer.fit(data)                     # 4 steps an epoch
    >>> len(history), sorted(history[-1])
    (8, ['epoch', 'loss', 'lr', 'samples_per_s', 'step'])

    A later run resumes from the last checkpoint in `out_dir`:

    >>> again = Trainer(model, loss_fn=torch.nn.functional.mse_loss, batch_size=8,
    ...                 epochs=3, out_dir=folder.name, progress=False)
    >>> again.fit(data, resume=True)[0]["step"]          # steps 9 to 12 only
    9
    >>> folder.cleanup()
    """

    def __init__(self, model: nn.Module, optimizer: Optional[torch.optim.Optimizer] = None,
                 scheduler: Any = None, *, loss_fn: Optional[Callable] = None, lr: float = 1e-3,
                 batch_size: int = 32, max_steps: Optional[int] = None, epochs: int = 1,
                 grad_accum: int = 1, clip_grad_norm: Optional[float] = None,
                 amp: Optional[str] = None, device: Union[str, torch.device, None] = None,
                 out_dir: Union[str, os.PathLike, None] = None, ckpt_every: Optional[int] = None,
                 seed: int = 0, shuffle: bool = True, num_workers: int = 0,
                 transform: Optional[Callable] = None, progress: bool = True,
                 callbacks: Sequence[Callable] = (), tensorboard: bool = False,
                 keep_last: Optional[int] = None, weight_decay: float = 0.01):
        if amp not in (None, "bf16", "fp16"):
            raise ValueError(f"amp must be None, 'bf16' or 'fp16', got {amp!r}")
        for name, value, low in (("grad_accum", grad_accum, 1), ("batch_size", batch_size, 1),
                                 ("epochs", epochs, 1), ("max_steps", max_steps, 0),
                                 ("ckpt_every", ckpt_every, 1)):
            # 0 or a negative number silently meant "no checkpoints" or "no steps"
            if value is not None or name not in ("max_steps", "ckpt_every"):
                check_int(value, name, low)
        if keep_last is not None and keep_last < 1:
            raise ValueError(f"keep_last must be >= 1 or None, got {keep_last}")
        self._init_distributed()
        if device is None:
            device = f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if amp == "fp16" and self.device.type != "cuda":
            raise ValueError("amp='fp16' needs CUDA; use amp='bf16' on the CPU")
        self.model = model.to(self.device)
        if optimizer is None:
            from .optim import param_groups

            optimizer = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr)
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.loss_fn = loss_fn
        self.batch_size, self.max_steps, self.epochs = batch_size, max_steps, epochs
        self.grad_accum, self.clip_grad_norm, self.amp = grad_accum, clip_grad_norm, amp
        if isinstance(getattr(model, "grad_accum", None), int):  # SSL methods (MoCo's update)
            model.grad_accum = grad_accum
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")
        self.out_dir = pathlib.Path(out_dir) if out_dir is not None else None
        self.ckpt_every, self.seed, self.shuffle = ckpt_every, seed, shuffle
        self.num_workers, self.transform, self.progress = num_workers, transform, progress
        self.callbacks = list(callbacks)
        self.tensorboard = tensorboard
        self.keep_last = keep_last
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self._n_records: Optional[int] = None  # the dataset's length, once fit has it
        self.history: list[dict] = []
        self.wrapped = self.model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.wrapped = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    # ---- distributed --------------------------------------------------------------------

    def _init_distributed(self) -> None:
        self._owns_group = False
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1 and not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            if torch.cuda.is_available():
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group(backend, init_method="env://")
            self._owns_group = True
        self.distributed = dist.is_initialized() and dist.get_world_size() > 1
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        """Release DDP and the process group (if this trainer created it). The DDP
        wrapper goes first, then a collection: destroying the group under a live DDP
        reducer makes a gloo rank abort at exit."""
        if self.wrapped is not self.model:
            self.wrapped = self.model
            gc.collect()
        if self._owns_group and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
            self._owns_group = False

    # ---- checkpoints ---------------------------------------------------------------------

    def state_dict(self) -> dict:
        states = rng_state()
        if self.distributed:
            gathered = [None] * self.world
            dist.all_gather_object(gathered, states)
            states = gathered
        else:
            states = [states]
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                "scaler": self.scaler.state_dict(), "rng": states, "step": self.step,
                "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "meta": {**self._meta(), "amp": self.amp}}

    def _meta(self) -> dict:
        """What the data order depends on."""
        return {"seed": self.seed, "batch_size": self.batch_size, "world": self.world,
                "grad_accum": self.grad_accum, "shuffle": self.shuffle,
                "records": self._n_records}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`.

        Raises
        ------
        ValueError
            The checkpoint's data order differs from this run's (seed, batch size,
            processes, accumulation, shuffling, dataset length), it holds another model
            or an optimizer of other parameter groups, or it has a scheduler state and
            this trainer no scheduler, or the reverse (the learning rates would silently
            part from the uninterrupted run's), or it was written with another `amp`
            (fp16's loss scale would be dropped, or missing; the precision would change).
            A checkpoint that does not record `amp` is refused only if its loss-scaler
            state says fp16 and this run is not, or the reverse. Nothing is loaded then.
        """
        meta, mine = dict(state["meta"]), self._meta()
        if meta.get("records") is None or mine["records"] is None:
            # a checkpoint of an older version, or a trainer that has not seen the data
            meta.pop("records", None), mine.pop("records")
        amp = meta.pop("amp", _UNRECORDED)
        if meta != mine:
            raise ValueError(f"checkpoint was written with {meta}, this run has {mine}: the "
                             f"data order would differ, so the resume would not be exact")
        if amp is not _UNRECORDED and amp != self.amp:
            raise ValueError(f"checkpoint was written with amp={amp!r}, this run has "
                             f"amp={self.amp!r}: resume with amp={amp!r}, or train in "
                             f"another folder")
        # An enabled GradScaler's state is never empty, a disabled one's always is.
        if amp is _UNRECORDED and bool(state["scaler"]) != (self.amp == "fp16"):
            held, hint = ("an", "amp='fp16'") if state["scaler"] else \
                ("no", "amp=None or amp='bf16'")
            raise ValueError(f"checkpoint holds {held} fp16 loss-scaler state, this run has "
                             f"amp={self.amp!r}: resume with {hint}")
        if (state["scheduler"] is None) != (self.scheduler is None):
            raise ValueError(
                "checkpoint has a scheduler state but this trainer no scheduler: pass the "
                "run's scheduler" if self.scheduler is None else
                "this trainer has a scheduler but the checkpoint no scheduler state: the "
                "schedule would restart at its first step, not at the checkpoint's")
        # The model and optimizer are compared before either is loaded, so that a
        # refused checkpoint leaves this trainer as it was.
        theirs, ours = state["model"], self.model.state_dict()
        shape = lambda t: getattr(t, "shape", None)  # noqa: E731  (extra states have none)
        differ = sorted(set(theirs) ^ set(ours)) or \
            [k for k in ours if shape(theirs[k]) != shape(ours[k])]
        if differ:
            raise ValueError(f"checkpoint holds another model than this run's ({differ[0]!r} "
                             f"differs): resume with the model it was written by, or train in "
                             f"another folder")
        saved = [len(g["params"]) for g in state["optimizer"]["param_groups"]]
        mine = [len(g["params"]) for g in self.optimizer.param_groups]
        if saved != mine:
            raise ValueError(f"checkpoint's optimizer has parameter groups of {saved} "
                             f"parameters, this trainer's {mine}: resume with the optimizer "
                             f"the run was written with")
        changed = _changed_hyperparameters(state["optimizer"]["param_groups"],
                                           self.optimizer.param_groups)
        self.model.load_state_dict(theirs)
        self.optimizer.load_state_dict(state["optimizer"])
        if changed:
            # PyTorch's optimizer loading takes the checkpoint's groups whole: a resume
            # that meant to change them would silently train on the old values.
            warnings.warn(f"resumed with the checkpoint's optimizer settings ({changed}), "
                          f"not this trainer's: to change them, set them in "
                          f"trainer.optimizer.param_groups after the resume, or train in "
                          f"another folder", stacklevel=3)
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"][self.rank])
        self.step, self.epoch = state["step"], state["epoch"]
        self.batch_in_epoch = state["batch_in_epoch"]

    def save_checkpoint(self) -> Optional[pathlib.Path]:
        """Write ``checkpoints/step_<n>.pt`` and point ``checkpoints/latest`` at it (rank 0;
        every rank takes part in gathering the RNG states)."""
        state = self.state_dict()
        if not self.is_main or self.out_dir is None:
            return None
        folder = self.out_dir / CKPT_DIR
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"step_{self.step:08d}.pt"
        _atomic_save(state, path)
        _atomic_text(path.name, folder / LATEST)
        if self.keep_last is not None:
            # Older ones go only after `latest` points at the new one: a crash in between
            # leaves an extra file, never a dangling pointer.
            # The one just written is never deleted, even when a former run in this
            # folder left checkpoints of higher step numbers.
            olds = [p for p in saved_checkpoints(folder) if p.name != path.name]
            for old in olds[:max(len(olds) - (self.keep_last - 1), 0)]:
                old.unlink()
        return path

    def latest_checkpoint(self) -> Optional[pathlib.Path]:
        """The checkpoint ``checkpoints/latest`` names (which may be missing), or None
        without `out_dir` or that pointer."""
        if self.out_dir is None:
            return None
        pointer = self.out_dir / CKPT_DIR / LATEST
        return pointer.parent / pointer.read_text().strip() if pointer.is_file() else None

    def resume(self, path: Union[str, os.PathLike, None] = None) -> bool:
        """Load `path`, or by default the latest checkpoint in `out_dir` (False if the
        folder has no checkpoint at all).

        Raises
        ------
        FileNotFoundError
            An explicit `path` that is not a file, or a ``latest`` pointer naming a
            missing file, or checkpoints without a ``latest`` pointer: training from
            scratch instead of the checkpoint asked for would go unnoticed. The message
            names the newest checkpoint there, to pass as `path`.
        ValueError
            No `path` and no `out_dir` to look in; or see :meth:`load_state_dict`.
        """
        if path is not None:
            path = pathlib.Path(path)
            if not path.is_file():
                raise FileNotFoundError(f"resume: no checkpoint file at {path}")
        else:
            if self.out_dir is None:
                raise ValueError("resume: no out_dir to find the latest checkpoint in; pass "
                                 "out_dir or the checkpoint's path")
            path = self.latest_checkpoint()
            folder = self.out_dir / CKPT_DIR
            saved = saved_checkpoints(folder)
            if path is None or not path.is_file():
                if not saved:
                    return False
                what = f"{folder / LATEST} names {path.name}, which is missing" \
                    if path is not None else f"{folder} has no '{LATEST}' pointer"
                raise FileNotFoundError(f"resume: {what}; the newest checkpoint there is "
                                        f"{saved[-1]}: pass it as resume=<path> to go on "
                                        f"from it")
        # On the CPU: RNG states must be CPU tensors; the model's and the optimizer's
        # load_state_dict copy theirs onto the parameters' device.
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self._truncate_metrics()
        return True

    def save_pretrained(self, directory: Union[str, os.PathLike], **kwargs):
        """:func:`fastecg.ssl.save_pretrained` of the (unwrapped) model, on rank 0."""
        from fastecg.ssl.pretrained import save_pretrained

        if self.is_main:
            return save_pretrained(self.model, directory, **kwargs)
        return None

    # ---- metrics -------------------------------------------------------------------------

    def _metrics_path(self) -> Optional[pathlib.Path]:
        return self.out_dir / "metrics.csv" if self.out_dir is not None and self.is_main \
            else None

    def _truncate_metrics(self) -> None:
        # Rows logged after the checkpoint (before a crash) are redone by the resumed run.
        path = self._metrics_path()
        if path is None or not path.is_file():
            return
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= self.step]
        self._write_rows(path, rows, "w")

    @staticmethod
    def _write_rows(path: pathlib.Path, rows: list[dict], mode: str) -> None:
        fields = ["step", "epoch", "loss", "lr", "samples_per_s"]
        new = mode == "w" or not path.is_file()
        with open(path, mode, newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerows(rows)

    # ---- the loop ------------------------------------------------------------------------

    def _loader(self, dataset) -> tuple[DataLoader, EpochBatchSampler]:
        if isinstance(dataset, Tensor):
            dataset = _TensorRecords(dataset)
        sampler = EpochBatchSampler(len(dataset), self.batch_size, self.seed, self.shuffle,
                                    self.rank, self.world)
        # A private generator: creating a loader iterator must not draw from the global
        # RNG, or a run resumed mid-epoch would draw differently.
        self._loader_gen = torch.Generator()
        loader = DataLoader(dataset, batch_sampler=sampler, num_workers=self.num_workers,
                            generator=self._loader_gen,
                            pin_memory=self.device.type == "cuda")
        return loader, sampler

    def _prepare(self, batch: Any) -> Any:
        batch = to_device(batch, self.device, non_blocking=True)
        if self.transform is None:
            return batch
        if isinstance(batch, Tensor):
            return self._transformed(batch, None)[0]
        if isinstance(batch, dict):
            sig, label = self._transformed(signal_of(batch), batch.get("label"))
            return {**batch, "signal": sig, **({"label": label} if "label" in batch else {})}
        label = batch[1] if len(batch) > 1 else None
        sig, label = self._transformed(batch[0], label)
        fields = [sig, *([label] if len(batch) > 1 else []), *batch[2:]]
        # a namedtuple (kept by default_collate) takes its fields as arguments
        return type(batch)(*fields) if hasattr(batch, "_fields") else type(batch)(fields)

    def _transformed(self, sig: Tensor, label: Any) -> tuple:
        """`transform` on a batch's signal; an AugmenterManager also takes and returns the
        label (Mixup and CutMix mix it), its ``(sig, label, *masks)`` unpacked."""
        from fastecg.augmenters import AugmenterManager

        if isinstance(self.transform, AugmenterManager):
            out = self.transform(sig, label)
            return out[0], out[1]
        return self.transform(sig), label

    def _loss(self, batch: Any) -> Tensor:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.amp)
        with torch.autocast(self.device.type, dtype=dtype, enabled=self.amp is not None):
            if self.loss_fn is not None:
                x, y = self._input_and_target(batch)
                return self.loss_fn(self.wrapped(x), y)
            out = self.wrapped(batch)
            return out["loss"] if isinstance(out, dict) else out

    @staticmethod
    def _input_and_target(batch: Any) -> tuple:
        """``(x, y)`` of a batch for `loss_fn`: ``(x, y, ...)`` or a dict's ``"signal"``
        and ``"label"``."""
        if isinstance(batch, dict):
            if "signal" not in batch or "label" not in batch:
                raise ValueError(f"loss_fn needs dict batches with 'signal' and 'label' keys, "
                                 f"got {sorted(batch)}")
            return batch["signal"], batch["label"]
        if isinstance(batch, (tuple, list)) and len(batch) >= 2:
            return batch[0], batch[1]
        raise TypeError(f"loss_fn needs (x, y) or {{'signal', 'label'}} batches, got "
                        f"{type(batch).__name__}" + (" (a dataset of bare tensors has no "
                                                      "labels)" if isinstance(batch, Tensor) else ""))

    def fit(self, dataset: Union[Dataset, Tensor], resume: Union[bool, str, os.PathLike] = False
            ) -> list[dict]:
        """Train until `max_steps` (or `epochs`); returns the per-step metrics.

        `resume`: True loads the latest checkpoint in `out_dir` (starts afresh only if
        the folder has no checkpoint at all; a ``latest`` pointer to a missing file is a
        FileNotFoundError); a path loads that checkpoint, and FileNotFoundError is raised
        if it does not exist. See :meth:`resume` and :meth:`load_state_dict`.

        A non-finite loss raises FloatingPointError before the optimizer step: the
        weights, optimizer, scheduler and step count stay those of the last good step.
        """
        loader, sampler = self._loader(dataset)
        self._n_records = sampler.n
        steps_per_epoch = len(sampler) // self.grad_accum
        if steps_per_epoch < 1:
            raise ValueError(f"an epoch has {len(sampler)} batches, fewer than grad_accum="
                             f"{self.grad_accum}")
        # (made once the data is known to fill a step: a refused run leaves no folder)
        if self.out_dir is not None and self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        skipped = len(sampler) % self.grad_accum
        if skipped and self.is_main:
            warnings.warn(
                f"grad_accum={self.grad_accum}: the last {skipped} of each epoch's "
                f"{len(sampler)} batches ({skipped * self.batch_size * self.world} records) "
                f"are too few for an optimizer step and are skipped; use a grad_accum that "
                f"divides {len(sampler)} to train on them", stacklevel=2)
        total = self.max_steps if self.max_steps is not None else self.epochs * steps_per_epoch
        if not resume and self.out_dir is not None and self.is_main:
            earlier = saved_checkpoints(self.out_dir / CKPT_DIR)
            if earlier:
                warnings.warn(
                    f"{self.out_dir / CKPT_DIR} holds an earlier run's checkpoints (newest "
                    f"{earlier[-1].name}): this fresh run writes its own beside them and "
                    f"points '{LATEST}' at them; pass resume=True to continue the earlier "
                    f"run, or use another out_dir", stacklevel=2)
        if resume:
            self.resume(None if resume is True else resume)
            if self.step > total:  # (equal: a finished run, nothing left to do)
                raise ValueError(f"resume: the checkpoint is at step {self.step}, past this "
                                 f"run's {total} steps; ask for at least {self.step}")
        # metrics.csv holds this run's steps 1..step only: a fresh run in a used folder
        # starts it anew rather than appending to a former run's rows.
        self._truncate_metrics()
        bar = None
        if self.progress and self.is_main:
            from tqdm.auto import tqdm
            bar = tqdm(total=total, initial=self.step, desc="train", dynamic_ncols=True)
        writer = self._tensorboard()
        self.model.train()
        try:
            while self.step < total:
                if self.batch_in_epoch >= steps_per_epoch * self.grad_accum:
                    self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                sampler.set_position(self.epoch, self.batch_in_epoch)
                # random crops drawn from (seed, epoch, index) (ECGStore), also inside
                # a Subset
                set_dataset_epoch(loader.dataset, self.epoch)
                self._loader_gen.manual_seed(self.seed + self.epoch)
                it = iter(loader)
                while self.step < total and \
                        self.batch_in_epoch < steps_per_epoch * self.grad_accum:
                    metrics = self._train_step(it)
                    self.history.append(metrics)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{metrics['loss']:.4f}",
                                        samples_s=f"{metrics['samples_per_s']:.0f}")
                    path = self._metrics_path()
                    if path is not None:
                        self._write_rows(path, [metrics], "a")
                    if writer is not None:
                        writer.add_scalar("loss", metrics["loss"], self.step)
                        writer.add_scalar("lr", metrics["lr"], self.step)
                    for cb in self.callbacks:
                        cb(self, metrics)
                    if self.callbacks:
                        self.model.train()  # a validation callback's eval() ends here
                    # After the callbacks: their draws (a validation callback's masks)
                    # belong in the saved RNG state, or a resumed run would draw
                    # differently from an uninterrupted one.
                    if self.ckpt_every and self.step % self.ckpt_every == 0:
                        self.save_checkpoint()
                del it
            if self.out_dir is not None and (not self.ckpt_every or self.step % self.ckpt_every):
                self.save_checkpoint()
        finally:
            if bar is not None:
                bar.close()
            if writer is not None:
                writer.close()
        return self.history

    def _train_step(self, it: Iterator) -> dict:
        t0 = time.perf_counter()
        self._step_first_batch = self.batch_in_epoch
        self.optimizer.zero_grad(set_to_none=True)
        total_loss, n_records = 0.0, 0
        for micro in range(self.grad_accum):
            batch = self._prepare(next(it))
            n_records += signal_of(batch).shape[0]  # also: a batch without a signal fails here
            self.batch_in_epoch += 1
            last = micro == self.grad_accum - 1
            sync = self.wrapped.no_sync() if (self.world > 1 and not last) else _nullcontext()
            with sync:
                loss = self._loss(batch)
                value = float(loss.detach())
                if not math.isfinite(value) and not self.distributed:
                    self._nonfinite_loss(f"loss is {value} (micro-batch {micro + 1} of "
                                         f"{self.grad_accum})")
                self.scaler.scale(loss / self.grad_accum).backward()
            total_loss += value
        if self.distributed:
            # Every rank holds the all-reduced gradients, poisoned by any rank's bad
            # loss: the ranks agree, and all raise before stepping (none is left waiting
            # in a collective).
            bad = torch.tensor(float(not math.isfinite(total_loss)), device=self.device)
            dist.all_reduce(bad)
            if bad.item():
                self._nonfinite_loss("a rank's loss is not finite")
        if self.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)
        lr = self.optimizer.param_groups[0]["lr"]  # the rate this step uses
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            mean = torch.tensor(total_loss / self.grad_accum, device=self.device)
            if self.distributed:  # one loss for all ranks, or their rates would part
                dist.all_reduce(mean)
                mean /= self.world
            self.scheduler.step(float(mean))
        elif self.scheduler is not None:
            self.scheduler.step()
        self.step += 1
        elapsed = time.perf_counter() - t0
        return {"step": self.step, "epoch": self.epoch, "loss": total_loss / self.grad_accum,
                "lr": lr,
                "samples_per_s": n_records * self.world / max(elapsed, 1e-9)}

    def _nonfinite_loss(self, what: str) -> None:
        """Raise FloatingPointError for a NaN/Inf loss, before any optimizer or scheduler
        step, so the weights stay those of the last good step (and the data position that
        of its end: a later ``fit`` retakes the failed step's batches)."""
        self.optimizer.zero_grad(set_to_none=True)
        self.batch_in_epoch = getattr(self, "_step_first_batch", self.batch_in_epoch)
        raise FloatingPointError(f"{what} at step {self.step + 1}; the weights, optimizer "
                                 f"and scheduler were not stepped")

    def _tensorboard(self):
        if not self.tensorboard or not self.is_main or self.out_dir is None:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return SummaryWriter(str(self.out_dir / "tensorboard"))


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
