"""AugmenterManager (the augmentation subclass of the one TransformManager base),
DeviceAugmentLoader and IndexedDataset.

Reproducibility recipe (workers, ranks)
---------------------------------------
A sample's augmentation depends on ``(seed, epoch, global sample index)`` only, so give
the manager the dataset index of every sample, wherever the batch was built::

    ds = IndexedDataset(dataset)                      # items become (index, sig, label)
    sampler = DistributedSampler(ds, num_replicas=world, rank=rank)   # or any sampler
    loader = DataLoader(ds, batch_size=16, sampler=sampler, num_workers=4)
    aug = DeviceAugmentLoader(loader, am, device, seed=1234, indexed=True)
    for epoch in range(n_epochs):
        sampler.set_epoch(epoch); aug.set_epoch(epoch)
        for sig, label in aug:                        # augmented on `device`
            ...

Sample 17 of epoch 3 is augmented identically on one GPU with batches of 64 or on 8
ranks with batches of 4. Mixup and CutMix pair samples inside a batch and are the
exception (their per-sample lambda is still reproducible); so is ``random=True``, whose
step order is drawn per batch.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from .._rows import set_dataset_epoch, to_device
from ..registry import AUGMENTERS
from ..transforms.config import SignalInfo, check_backend_name
from ..transforms.manager import TransformManager
from ..ops._dispatch import has_tangent
from ..ops.augment import fused_backend
from ._random import Keys
from .base import Augmenter, Batch, check_int, make_keys
from .classic import CutMix, Mixup
from .fused import FusedPlan

__all__ = ["AugmenterManager", "DeviceAugmentLoader", "IndexedDataset"]

# The manager's own draws (random order, probabilities of plain modules) use this slot.
_MANAGER_SLOT = 0xFFFF
# Backends that run the augmenters: "torch" runs each augmenter's own torch code (the
# reference), "cpu", "cuda" and "triton" the fused pass (fastecg.augmenters.fused) with
# that kernel. Asking for one that cannot run on the signal is an error rather than a
# silent fallback (the backend names are transforms.config.BACKEND_NAMES).


class AugmenterManager(TransformManager):
    """An ordered pipeline of augmenters (registry :data:`fastecg.registry.AUGMENTERS`).

    Parameters
    ----------
    *steps : Augmenter, nn.Module, str or dict
        Augmenters in order, or registry names / ``{"name": ..., **kwargs}`` dicts.
    fs : float, optional
        Sampling rate in Hz, for the augmenters that need it (wander, masking, noises).
    lead_names : sequence of str, optional
        The input's leads (reduced lead sets, VCG rotation); else the standard 12-lead
        order is assumed for 12-lead input.
    random : bool, optional
        Apply the steps in a random order, drawn per batch.

    Calling
    -------
    ``sig, label, *masks = am(sig, label=None, *masks, seed=None, indices=None, epoch=0,
    backend="auto")`` (torch_ecg's call). `backend`: ``"torch"`` runs every augmenter's
    own torch code; ``"cpu"`` the fused pass (the steps' parameters drawn as by
    ``"torch"``, their signal work compiled into one C++ pass over the batch: see
    :mod:`fastecg.augmenters.fused`; results equal within 1e-6 of the peak);
    ``"cuda"`` and ``"triton"`` the same pass with the CUDA or Triton kernel (CUDA
    tensors; Triton also on CPU tensors under ``TRITON_INTERPRET=1``); ``"auto"`` picks
    ``"cpu"`` for float32/float64 CPU signals when the extension is built, and
    ``"cuda"``, else ``"triton"``, for CUDA signals. When `sig` requires grad, all run
    the torch code, so gradients flow through torch's autograd. The fused pass keeps
    two work buffers (the size of the batch) between calls, for its intermediate results (per calling thread; not pickled). Shapes: ``sig (..., n_leads, n_samples)``,
    ``label (..., n_classes)``, masks ``(..., n_samples)`` or ``(..., n_samples, k)``.
    `indices` are the samples' global indices, integers in ``[0, 2**48)`` (default
    ``arange(batch)``); `seed` (default: drawn from `generator` or torch's generator) and
    `epoch` key the random numbers. ``return_params=True`` appends the drawn parameters, which
    :meth:`apply` replays bit for bit. (Those parameters are absolute, such as the
    wander's amplitudes in signal units, where a call without them lets the fused pass
    scale by each lead's range as it reads it: the two calls agree to float rounding,
    ~1e-7 of the peak, not bit for bit.) The caller's tensors are never written to (the steps'
    ``inplace`` applies when they are called on their own).

    A fastecg step that is not an augmenter (a preprocessor such as ``BandPass`` or
    ``Resample``) runs as in any pipeline, through its ``run`` with the signal's rate and
    leads, and, where it draws (``draws``: a random ``CropOrPad``), a ``torch.Generator``
    seeded per batch from the keys (as the manager's own draws; one host sync on a GPU).
    One that changes the rate or the length is refused with masks, which it cannot
    transform. After a Mixup or CutMix with ``label_pair=True`` the label is the pair
    ``(y_a, y_b, lam)`` (in the caller's shapes: ``y_a``, ``y_b`` as the label, ``lam``
    the batch's); LabelSmooth then smooths both, and another Mixup or CutMix, which
    cannot mix a pair, is refused (when built, and at a call after ``random`` is set).

    Config: registry names as keys (torch_ecg's form, ``None`` leaves a step out), or
    :meth:`to_config`'s ``{"fs", "lead_names", "random", "steps"}``; round-trips.
    """

    registry = AUGMENTERS
    kind = "augmenter"

    @property
    def augmenters(self):
        """The steps (an ``nn.ModuleList``), under torch_ecg's name."""
        return self.steps

    def add_(self, step: Any, pos: int = -1, prob: Optional[float] = None, *,
             manager_prob: Optional[float] = None, check: bool = True, **kwargs):
        """Insert `step` at `pos` (``-1``: append) and return ``self``, as torch_ecg's
        ``add_(aug, pos=-1, **kwargs)``: for a registry name or a ``{"name": ...}`` dict,
        `prob` and `kwargs` are the augmenter's own arguments (``add_("mixup", prob=0.3,
        alpha=0.2)`` builds ``Mixup(prob=0.3, alpha=0.2)``, drawn per sample).
        `manager_prob` is the manager's probability of running the step at a call (one
        draw per batch; a config dict may carry it as ``"manager_prob"``). A step given
        built keeps its own arguments: `prob` or `kwargs` with it are refused."""
        what = type(self).__name__
        if isinstance(step, (str, dict)):
            spec = {"name": step} if isinstance(step, str) else dict(step)
            if prob is not None:
                kwargs["prob"] = prob
            twice = sorted(set(kwargs) & set(spec))
            if twice:
                raise ValueError(f"{what}.add_: {twice[0]!r} given twice (argument and "
                                 f"config)")
            step = {**spec, **kwargs}
        elif kwargs or prob is not None:
            given = sorted([*kwargs, *(["prob"] if prob is not None else [])])
            raise ValueError(f"{what}.add_: {type(step).__name__} is built already and keeps "
                             f"its own arguments ({', '.join(given)} given); pass "
                             f"manager_prob= for the manager's per-call probability")
        return super().add_(step, pos, 1.0 if manager_prob is None else manager_prob,
                            check=check)

    def forward(self, sig: Tensor, label: Optional[Tensor] = None, *masks: Tensor,
                seed: Optional[int] = None, indices: Any = None, epoch: int = 0,
                backend: str = "auto", generator: Optional[torch.Generator] = None,
                fs: Optional[float] = None, lead_names: Optional[Sequence[str]] = None,
                return_params: bool = False):
        fused = self._fused(sig, backend)
        batch = Batch(sig, label, masks, type(self).__name__)
        info = self._input_info(sig, fs, lead_names)
        keys = make_keys(batch.n, sig.device, seed, epoch, indices, generator)
        x, new_label, new_masks, params = self._augment(batch, info, keys, fused,
                                                        not return_params)
        out_sig, out_label, out_masks = batch.restore(x, new_label, new_masks)
        result = (out_sig, out_label, *out_masks)
        return (*result, params) if return_params else result

    def apply(self, sig: Tensor, params: dict, label: Optional[Tensor] = None, *masks: Tensor,
              fs: Optional[float] = None, lead_names: Optional[Sequence[str]] = None,
              backend: str = "auto"):
        """Replay `params` (from ``return_params=True``) on `sig`: ``(sig, label, *masks)``."""
        fused = self._fused(sig, backend)
        batch = Batch(sig, label, masks, type(self).__name__)
        info = self._input_info(sig, fs, lead_names)
        order = [i for i, _ in params["steps"]]
        infos = self._checked_plan(order, info, batch)
        x, lab, ms, _ = self._run(batch, order, infos, None, dict(params["steps"]), fused)
        out_sig, out_label, out_masks = batch.restore(x, lab, ms)
        return (out_sig, out_label, *out_masks)

    def views(self, sig: Tensor, n: int = 2, *, seed: Optional[int] = None, indices: Any = None,
              epoch: int = 0, generator: Optional[torch.Generator] = None,
              fs: Optional[float] = None, lead_names: Optional[Sequence[str]] = None,
              backend: str = "auto") -> Tensor:
        """`n` independently augmented views of `sig` from one pass (SimCLR-style):
        ``(n, *sig.shape)`` (the last two dims as the pipeline makes them). View v of a
        sample is keyed by (seed, epoch, index, v); Mixup/CutMix partners may come from
        any view."""
        n = check_int(n, "views: n", 1, 2 ** 15 - 1)
        fused = self._fused(sig, backend)
        batch = Batch(sig, None, (), type(self).__name__)
        info = self._input_info(sig, fs, lead_names)
        keys = make_keys(batch.n, sig.device, seed, epoch, indices, generator)
        view = torch.arange(n, device=sig.device).repeat_interleave(batch.n)
        keys = Keys(keys.seed, keys.epoch, keys.index.repeat(n), view)
        stacked = Batch(batch.x.repeat(n, 1, 1), None, (), type(self).__name__)
        x = self._augment(stacked, info, keys, fused)[0]
        if sig.dim() == 1:
            return x.reshape(n, x.shape[-1])
        return x.reshape((n,) + batch.lead_dims + tuple(x.shape[1:]))

    # ---- internals -----------------------------------------------------------------------

    def _input_info(self, sig: Any, fs: Optional[float],
                    lead_names: Optional[Sequence[str]]) -> SignalInfo:
        info = super()._input_info(sig, fs, lead_names)
        # The steps work on (n, n_leads, n_samples): a 1-D signal is one lead, as for an
        # augmenter called on its own (not "unknown", which skips the lead checks).
        return info._replace(n_leads=1) if info.n_leads is None else info

    def _augment(self, batch: Batch, info: SignalInfo, keys: Keys, fused: bool = False,
                 internal: bool = True):
        order = self._draw(keys)
        infos = self._checked_plan(order, info, batch)
        return self._run(batch, order, infos, keys, None, fused, internal)

    def _run(self, batch: Batch, order: list, infos: list, keys: Optional[Keys],
             params: Optional[dict], fused: bool, internal: bool = False):
        """The steps `order` on the batch: parameters drawn from `keys`, or replayed from
        `params` ({step: parameters}); each step run in torch, or compiled into the fused
        pass. `internal`: the drawn parameters stay inside the call (not returned)."""
        x, lab, ms = batch.x, batch.label, list(batch.masks)
        plan = FusedPlan(x, self._workspace(), fused, internal) if fused else None
        # The fused pass's draws are hundreds of small tensor ops whose dispatch is most
        # of their cost; inference mode skips their autograd bookkeeping. Only where no
        # parameter can meet autograd: the fused pass (no gradients) with labels and masks
        # that need none, and parameters that stay inside the call.
        fast = bool(fused) and internal and not any(
            t is not None and t.requires_grad for t in (lab, *ms))
        drawn = []
        steps = list(self.steps)  # (a ModuleList's indexing costs microseconds a time)
        for i, step_info in zip(order, infos):
            step = steps[i]
            if params is not None:
                p = params[i]
            elif not isinstance(step, Augmenter):
                # (a seed only for a step that draws: computing it syncs with a GPU)
                p = self._step_seed(keys, i) if getattr(step, "draws", False) else None
            else:
                # (entering inference mode costs more than a single C++ draw saves by it)
                quick = fast and not (fused == "cpu" and step.native_draw)
                with torch.inference_mode() if quick else contextlib.nullcontext():
                    p = step.draw(keys.for_slot(i + 1), plan.view() if fused else x, step_info)
            if isinstance(step, Augmenter):
                if fused:
                    lab, ms = step.fuse(plan, p, lab, ms, step_info)
                else:
                    x, lab, ms = step.transform(x, p, lab, ms, step_info)
            else:
                gen = None if p is None else torch.Generator().manual_seed(p["seed"])
                if fused:
                    plan.replace(self._run_step(step, plan.materialize(), step_info, gen))
                else:
                    x = self._run_step(step, x, step_info, gen)
            drawn.append((i, p))
        if fused:
            x = plan.materialize(final=True)
        return x, lab, ms, {"steps": drawn}

    def _step_seed(self, keys: Keys, i: int) -> dict:
        """The seed of step `i`'s torch.Generator (a Transform that is not an augmenter):
        per batch, as the manager's own draws (streams 3 and up; 0-2 are theirs)."""
        return {"seed": int(self._batch_keys(keys).bits(3 + i, 1)[0, 0])}

    def _checked_plan(self, order: list, info: SignalInfo, batch: Batch) -> list:
        """:meth:`_plan` of `order`, with every step's check of the batch: all before any
        work."""
        infos = self._plan(order, info)
        self._check_label_pairs()
        steps = list(self.steps)
        for i, step_info, out_info in zip(order, infos, infos[1:]):
            self._check_step_batch(i, batch, step_info, out_info, steps[i])
        return infos

    def _check_step_batch(self, i: int, batch: Batch, info: SignalInfo, out_info: SignalInfo,
                          step: torch.nn.Module) -> None:
        try:
            if isinstance(step, Augmenter):
                step.check_batch(batch, info)
            elif batch.masks and (out_info.fs, out_info.n_samples) != (info.fs, info.n_samples):
                # (augmenters that crop or warp move the masks with the signal)
                raise ValueError(f"{type(step).__name__} changes the signal from "
                                 f"{info.n_samples} samples at {info.fs} Hz to "
                                 f"{out_info.n_samples} at {out_info.fs} Hz, which the masks "
                                 "cannot follow: run it before augmenting, or without masks")
        except ValueError as err:
            raise ValueError(f"{type(self).__name__} step {i} ({self._label(i)}): {err}") \
                from None

    def _check(self) -> None:
        super()._check()
        self._check_label_pairs()

    def _check_label_pairs(self) -> None:
        """A label_pair step returns (y_a, y_b, lam), which a later Mixup or CutMix
        cannot mix again: refused when built, and at a call (`random` may have been set
        since), rather than failing (or mixing wrongly) inside the pipeline."""
        steps = list(self.steps)
        pairs = [i for i, s in enumerate(steps) if getattr(s, "label_pair", False)]
        if not pairs:
            return
        later = [i for i, s in enumerate(steps) if isinstance(s, (Mixup, CutMix))
                 and i != pairs[0] and (self.random or i > pairs[0])]
        if later:
            raise ValueError(f"{type(self).__name__}: step {later[0]} ({self._label(later[0])}) "
                             f"would mix the label pair (y_a, y_b, lam) that step {pairs[0]} "
                             f"({self._label(pairs[0])}, label_pair=True) returns"
                             f"{', in a random order' if self.random else ''}; only the "
                             "last step that mixes labels may take label_pair=True")

    # Threads that keep work buffers at a time (a thread that has not called recently
    # gives its buffers up to a new one).
    _WORKSPACE_THREADS = 8

    def _workspace(self) -> list:
        """This thread's work buffers of the fused pass (a list FusedPlan fills): per
        thread, so that threads sharing a manager never write into each other's."""
        spaces = self.__dict__.setdefault("_workspaces", {})
        key = threading.get_ident()
        space = spaces.pop(key, None)
        if space is None:
            space = []
            while len(spaces) >= self._WORKSPACE_THREADS:
                spaces.pop(next(iter(spaces)))
        spaces[key] = space  # most recent last
        return space

    def __getstate__(self):
        # Work buffers are scratch: not pickled (DataLoader workers) nor deep-copied.
        state = super().__getstate__() if hasattr(super(), "__getstate__") else dict(self.__dict__)
        state = dict(state)
        state.pop("_workspaces", None)
        return state

    def _fused(self, sig: Any, backend: str) -> Optional[str]:
        """The fused pass's backend for this call ("cpu", "cuda" or "triton"), or None
        for the torch code; ValueError for a backend that cannot run on `sig`, before any
        work. "auto" takes the device's fused kernel where one runs (cpu; cuda, else
        triton), else the torch code."""
        name = type(self).__name__
        check_backend_name(backend, name)
        if backend == "torch" or not isinstance(sig, Tensor):
            return None
        chosen, reason = fused_backend(sig, backend)
        if backend != "auto" and reason is not None:
            raise ValueError(f"{name}: backend {backend!r} cannot run here: {reason}")
        # The fused pass has no backward of its own: a signal that needs gradients takes
        # the torch code, whose autograd differentiates every step (a forward-mode tangent
        # too, which the kernel would drop).
        if (sig.requires_grad and torch.is_grad_enabled()) or has_tangent((sig,)):
            return None
        return chosen

    def _batch_keys(self, keys: Any) -> Keys:
        # The order and the manager's own draws are per batch: keyed by the batch's first
        # sample, so a given batch is reproducible (documented exception to per-sample).
        if not isinstance(keys, Keys):
            return make_keys(1, torch.device("cpu"), None, 0, None, keys)
        if keys.slot == _MANAGER_SLOT:
            return keys
        first = keys.index[:1].cpu() if keys.index.numel() else torch.zeros(1, dtype=torch.long)
        return Keys(keys.seed, keys.epoch, first, None, _MANAGER_SLOT)

    def _draw(self, keys: Any = None) -> list[int]:
        """This call's steps: all, shuffled if ``random``, less those whose manager-level
        probability (plain modules; augmenters take `prob` themselves, per sample) leaves
        them out. Drawn per batch from its keys: the same batch gives the same steps."""
        n = len(self.steps)
        if not self.random and all(p >= 1 for p in self._probs):
            return list(range(n))  # nothing to draw (and no host sync on a GPU)
        keys = self._batch_keys(keys)
        order = self._permutation(n, keys) if self.random else range(n)
        u = keys.uniform(1, max(n, 1))[0].tolist()
        return [i for i in order if self._probs[i] >= 1 or u[i] < self._probs[i]]

    def _permutation(self, n: int, keys: Any) -> list[int]:
        return torch.argsort(self._batch_keys(keys).uniform(0, n)[0]).tolist()

    def _uniform(self, keys: Any) -> float:
        return float(self._batch_keys(keys).uniform(2)[0, 0])


class IndexedDataset(torch.utils.data.Dataset):
    """``dataset`` whose items come with their index first: ``(index, *item)``, so that a
    DataLoader's batches carry the global sample indices through workers and ranks."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        item = self.dataset[index]
        return (index, *item) if isinstance(item, (tuple, list)) else (index, item)


class DeviceAugmentLoader:
    """Iterate `loader`, move each batch to `device` and augment it there with `am`
    (braindecode's AugmentedDataLoader, with reproducible keys).

    Batches are ``(sig, label, *masks, *extras)`` or dicts. In a tuple, the leading
    tensors are the signal, the label and masks, all augmented; the items from the first
    one that is not a tensor on (a ``return_meta=True`` dataset's metadata, collated by
    ``default_collate`` or :func:`~fastecg.data.collate_with_meta`) ride along unchanged,
    their tensors moved to `device`. A dict's ``"signal"`` (required) and ``"label"``
    (optional) are augmented, its other entries ride along, as the Trainer does.

    With ``indexed=True`` the batches are ``(indices, *batch)`` (as from an
    :class:`IndexedDataset`) and those indices key the random numbers. Otherwise a
    sample's key is its position in the epoch's order: reproducible for a fixed sample
    order only; under a ``DistributedSampler`` (any sampler of the loader with
    ``num_replicas`` and ``rank``) the position in the order of all ranks,
    ``k * num_replicas + rank`` for this rank's k-th sample, so that ranks do not give
    their different samples the same augmentation. Call :meth:`set_epoch` at each epoch.
    """

    def __init__(self, loader, am: AugmenterManager, device: Any = None, seed: int = 0,
                 epoch: int = 0, indexed: bool = False, non_blocking: bool = True):
        self.loader, self.am = loader, am
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.seed, self.epoch, self.indexed, self.non_blocking = seed, epoch, indexed, non_blocking

    def _samplers(self) -> list:
        """The loader's samplers (a DataLoader's ``sampler``, ``batch_sampler`` and the
        batch sampler's ``sampler``), each once."""
        batch_sampler = getattr(self.loader, "batch_sampler", None)
        found: list = []
        for s in (getattr(self.loader, "sampler", None), batch_sampler,
                  getattr(batch_sampler, "sampler", None)):
            if s is not None and all(s is not f for f in found):
                found.append(s)
        return found

    def set_epoch(self, epoch: int) -> None:
        """The epoch of the augmentation keys, also given to the loader's samplers that
        have ``set_epoch`` (a ``DistributedSampler`` shuffles by it) and to its datasets
        (through an :class:`IndexedDataset`, a ``Subset`` or a ``ConcatDataset``) that
        have one (an ``ECGStore`` with ``random_crop=True`` draws its windows by it). Call
        it before each epoch's ``iter``.

        DataLoader workers hold copies of the dataset. Workers started by ``iter`` (the
        default) copy it after this call and see the epoch; ``persistent_workers=True``
        ones were copied at the first ``iter`` and see it only if the dataset keeps its
        epoch in shared memory, as ``ECGStore`` does. A dataset of yours that keeps it
        in a plain attribute needs workers that are not persistent, or a shared tensor
        (``torch.zeros((), dtype=torch.int64).share_memory_()``) for the epoch.
        """
        self.epoch = epoch
        for sampler in self._samplers():
            if callable(getattr(sampler, "set_epoch", None)):
                sampler.set_epoch(epoch)
        set_dataset_epoch(getattr(self.loader, "dataset", None), epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def _to_device(self, item: Any) -> Any:
        return to_device(item, self.device, self.non_blocking)

    def _rank_and_world(self) -> tuple[int, int]:
        for sampler in self._samplers():
            world, rank = getattr(sampler, "num_replicas", None), getattr(sampler, "rank", None)
            if isinstance(world, int) and isinstance(rank, int):
                return rank, world
        return 0, 1

    def __iter__(self):
        rank, world = self._rank_and_world()
        seen = 0
        for batch in self.loader:
            items = [batch] if isinstance(batch, (Tensor, dict)) else list(batch)
            if self.indexed:
                if isinstance(batch, dict) or not items:
                    raise ValueError("DeviceAugmentLoader: indexed=True needs batches "
                                     "(indices, *batch), as from an IndexedDataset")
                indices = torch.as_tensor(items.pop(0))
            if len(items) == 1 and isinstance(items[0], dict):
                body = items[0]
                if "signal" not in body:
                    raise ValueError(f"DeviceAugmentLoader: a batch dict needs a 'signal' "
                                     f"key, got {sorted(body)}")
                tensors = [body["signal"], *([body["label"]] if "label" in body else [])]
                extras: list = []
            else:
                body = None
                n_tensors = next((i for i, v in enumerate(items) if not isinstance(v, Tensor)),
                                 len(items))
                tensors, extras = items[:n_tensors], items[n_tensors:]
                if not tensors:
                    got = type(items[0]).__name__ if items else "an empty batch"
                    raise TypeError(f"DeviceAugmentLoader: a batch must start with the signal "
                                    f"tensor, got {got}")
            if not self.indexed:
                n = tensors[0].shape[0]
                indices = torch.arange(seen, seen + n) * world + rank
                seen += n
            sig, *rest = [self._to_device(t) for t in tensors]
            label = rest[0] if rest else None
            out = self.am(sig, label, *rest[1:], seed=self.seed, epoch=self.epoch,
                          indices=indices.to(self.device))
            if body is not None:
                new = {"signal": out[0], "label": out[1]}
                yield {k: new[k] if k in new else self._to_device(v) for k, v in body.items()}
                continue
            out = out if label is not None else out[:1] + out[2:]
            yield (*out, *self._to_device(extras))
