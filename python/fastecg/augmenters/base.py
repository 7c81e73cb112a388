"""The base of every augmenter: the batch as ``(n, n_leads, n_samples)`` with its labels
and masks, the per-sample random source, and the call / replay forms.

An augmenter splits its work in two: :meth:`Augmenter.draw` makes every random choice
for the whole batch in one vectorised step (a dict of small per-sample tensors, from
:class:`~fastecg.augmenters._random.Keys`), and :meth:`Augmenter.transform` applies those
choices without drawing anything. So ``return_params=True`` / :meth:`Augmenter.apply`
replay a call exactly, and a pipeline checks everything before any work.
"""

from __future__ import annotations

import numbers
from typing import Any, ClassVar, Optional, Sequence

import torch
from torch import Tensor

from .._spec import check_int, check_lead_names
from ..transforms.config import MissingInfo, SignalInfo
from ..transforms.manager import Transform
from ._random import Keys

__all__ = ["Augmenter", "Batch", "make_keys", "check_range", "check_int", "STANDARD_LEADS",
           "MAX_INDEX"]

# Keys hold a sample's index in 48 bits of the Philox counter (fastecg.augmenters._random):
# a larger one would alias a smaller one.
MAX_INDEX = 2 ** 48 - 1

STANDARD_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def check_range(value: Any, what: str, low: float = 0.0, high: float = float("inf"),
                allow_scalar: bool = True) -> tuple[float, float]:
    """`value` (a number or a pair) as an ordered pair inside [low, high], else
    ValueError naming it."""
    if allow_scalar and isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = (value, value)
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a pair (low, high) of numbers, got {value!r}") from None
    if not low <= lo <= hi <= high:
        raise ValueError(f"{what} must satisfy {low:g} <= low <= high <= {high:g}, got "
                         f"{value!r}")
    return lo, hi


def make_keys(n: int, device: torch.device, seed: Optional[int], epoch: int,
              indices: Any, generator: Optional[torch.Generator] = None,
              view: Optional[Tensor] = None) -> Keys:
    """The call's :class:`Keys`; ValueError for a bad seed, epoch or index list.
    Without a seed one is drawn (from `generator`, else torch's global generator), so
    unseeded calls differ."""
    if seed is None:
        seed = int(torch.randint(0, 2 ** 32, (), generator=generator))
    for name, value in (("seed", seed), ("epoch", epoch)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not (
                0 <= value < 2 ** 32):
            raise ValueError(f"{name} must be an integer in [0, 2**32), got {value!r}")
    if indices is None:
        index = torch.arange(n, device=device)
    else:
        index = torch.as_tensor(indices, device=device)
        if index.dtype.is_floating_point or index.dtype == torch.bool or index.numel() != n:
            raise ValueError(f"indices must be {n} integers (one per sample), got "
                             f"{tuple(index.shape)} of {index.dtype}")
        index = index.reshape(n).long()
        if index.numel():
            low, high = torch.stack(torch.aminmax(index)).tolist()  # one sync, as before
            if low < 0 or high > MAX_INDEX:
                raise ValueError(f"indices must be integers in [0, 2**48), got values in "
                                 f"[{low}, {high}]")
    return Keys(int(seed), int(epoch), index, view)


class Batch:
    """A call's tensors in the shapes augmenters work on: ``x (n, n_leads, n_samples)``,
    ``label (n, n_classes)`` or None, masks ``(n, n_samples, k)``; :meth:`restore`
    gives them back in the caller's shapes."""

    def __init__(self, sig: Tensor, label: Optional[Tensor] = None,
                 masks: Sequence[Tensor] = (), what: str = "augmenter"):
        if not isinstance(sig, Tensor):
            raise TypeError(f"{what}: expected a torch.Tensor of shape (..., n_leads, "
                            f"n_samples), got {type(sig).__name__}")
        if sig.dim() < 1 or not sig.is_floating_point():
            raise ValueError(f"{what}: expected a floating-point signal of shape (..., "
                             f"n_leads, n_samples), got {tuple(sig.shape)} {sig.dtype}")
        self.shape = sig.shape
        self.lead_dims = tuple(sig.shape[:-2])
        n_leads = sig.shape[-2] if sig.dim() >= 2 else 1
        self.n = 1
        for d in self.lead_dims:
            self.n *= d
        self.x = sig.reshape(self.n, n_leads, sig.shape[-1])
        n_samples = sig.shape[-1]
        self.label_shape = None
        self.label = None
        if label is not None:
            if not isinstance(label, Tensor):
                raise ValueError(f"{what}: label must be a tensor, got {type(label).__name__}")
            if label.dim() == len(self.lead_dims) + 1 and tuple(label.shape[:-1]) == self.lead_dims:
                self.label = label.reshape(self.n, label.shape[-1])
            elif tuple(label.shape) == self.lead_dims:  # one value per sample (class index)
                self.label = label.reshape(self.n, 1)
            else:
                k = len(self.lead_dims)
                # torch_ecg takes a sequence label (..., n_samples, n_classes) as the
                # label; here it is a mask, which the steps that move samples follow.
                per_sample = (label.dim() == k + 2 and tuple(label.shape[:k]) == self.lead_dims
                              and label.shape[k] == n_samples)
                hint = ("; a per-sample label (..., n_samples, n_classes) goes after the "
                        "label, as a mask: (sig, None, seq_label) or (sig, label, seq_label)"
                        if per_sample else "")
                raise ValueError(f"{what}: label of shape {tuple(label.shape)} does not match "
                                 f"the signal's batch {self.lead_dims} (expected "
                                 f"{self.lead_dims + ('n_classes',)}){hint}")
            self.label_shape = label.shape
        self.mask_shapes, self.masks = [], []
        for i, mask in enumerate(masks):
            if not isinstance(mask, Tensor):
                raise ValueError(f"{what}: mask {i} must be a tensor, got {type(mask).__name__}")
            k = len(self.lead_dims)
            if tuple(mask.shape[:k]) != self.lead_dims or mask.dim() not in (k + 1, k + 2) or (
                    mask.shape[k] != n_samples):
                raise ValueError(f"{what}: mask {i} of shape {tuple(mask.shape)} does not match "
                                 f"the signal {tuple(sig.shape)} (expected {self.lead_dims} + "
                                 f"(n_samples={n_samples},) or (n_samples, k))")
            self.mask_shapes.append(mask.shape)
            self.masks.append(mask.reshape(self.n, n_samples, -1))

    def restore(self, x: Tensor, label: Any, masks: Sequence[Tensor]):
        k = len(self.lead_dims)
        if len(self.shape) == 1:
            sig = x.reshape(x.shape[-1])
        else:
            sig = x.reshape(self.lead_dims + tuple(x.shape[1:]))
        if isinstance(label, Tensor):
            label = label.reshape(self.lead_dims + tuple(self.label_shape[k:]))
        elif isinstance(label, tuple):  # (y_a, y_b, lam) of a label_pair Mixup / CutMix
            y_a, y_b, lam = label
            shape = self.lead_dims + tuple(self.label_shape[k:])
            label = (y_a.reshape(shape), y_b.reshape(shape), lam.reshape(self.lead_dims))
        out_masks = [mask.reshape(self.lead_dims + (mask.shape[1],) + tuple(shape[k + 1:]))
                     for mask, shape in zip(masks, self.mask_shapes)]
        return sig, label, out_masks


class Augmenter(Transform):
    """Base of fastecg's augmenters (an ``nn.Module``).

    Call ``sig, label, *masks = aug(sig, label=None, *masks, seed=None, epoch=0,
    indices=None)`` (torch_ecg's call, plus the random keys), or with
    ``return_params=True`` to get the drawn parameters last, which
    ``aug.apply(other, params, label, *masks)`` replays. Shapes: ``sig (..., n_leads,
    n_samples)``, ``label (..., n_classes)``, masks ``(..., n_samples)`` or ``(...,
    n_samples, k)`` with the signal's leading dims.

    Subclasses define :meth:`draw` (every random choice, vectorised over the batch) and
    :meth:`transform` (applies them), and set :attr:`stream`, a number no other
    augmenter uses, so that two augmenters in the same slot draw different numbers.
    """

    stream: ClassVar[int] = 0
    # Whether draw() on the CPU is one C++ call (:meth:`_native`), with no small torch
    # ops whose autograd bookkeeping inference mode would save.
    native_draw: ClassVar[bool] = False
    fs: Optional[float] = None
    inplace: bool = False

    def step_fs(self, info: SignalInfo) -> float:
        # An augmenter's call takes the rate by keyword (its second positional argument
        # is the label), so say so rather than the preprocessing pipelines' pm(sig, fs).
        if self.fs is None and info.fs is None:
            name = type(self).__name__
            raise MissingInfo(f"{name} needs the sampling rate: build it with fs=..., or "
                              "give it to the call by keyword (aug(sig, label, fs=...)) or "
                              "to the AugmenterManager (fs=... when built or called)")
        return super().step_fs(info)

    # ---- the two halves ------------------------------------------------------------------

    def draw(self, keys: Keys, x: Tensor, info: SignalInfo) -> dict:
        raise NotImplementedError

    def transform(self, x: Tensor, params: dict, label: Optional[Tensor],
                  masks: list, info: SignalInfo):
        raise NotImplementedError

    def fuse(self, plan, params: dict, label: Optional[Tensor], masks: list,
             info: SignalInfo):
        """The fused pass (the manager's ``cpu`` backend): add this step's signal work to
        `plan` (a :class:`~fastecg.augmenters.fused.FusedPlan`) as kernel ops, transform
        labels and masks in torch, return ``(label, masks)``. The default runs
        :meth:`transform` on the materialised signal (a step with no fused form)."""
        x, label, masks = self.transform(plan.materialize(), params, label, masks, info)
        plan.replace(x)
        return label, masks

    def check_batch(self, batch: Batch, info: SignalInfo) -> None:
        """Checks that need the call's tensors (labels, masks); before any work."""

    def _uniform(self, keys: Keys, k: int, n: int = 1) -> Tensor:
        """(n_samples, n) float64 uniforms from this augmenter's stream `k` (< 64)."""
        return keys.uniform((self.stream << 6) | k, n)

    def _normal(self, keys: Keys, k: int, n: int = 1) -> Tensor:
        return keys.normal((self.stream << 6) | k, n)

    def _bits(self, keys: Keys, k: int, n: int = 1) -> Tensor:
        return keys.bits((self.stream << 6) | k, n)

    def _native(self, keys: Keys, names: Sequence[str], ints=(), floats=(),
                tensors=()) -> Optional[dict]:
        """This augmenter's draw by the C++ kernel (the params `names` in order: the same
        values as the torch form, which stays the reference), or None where it cannot run."""
        out = keys.native_draw(self.stream, ints, floats, tensors)
        return None if out is None else dict(zip(names, out))

    def _applied(self, keys: Keys, prob: float, k: int = 0) -> Tensor:
        """(n,) bool: which samples this call augments (one uniform each)."""
        return self._uniform(keys, k)[:, 0] < prob

    # ---- calls ---------------------------------------------------------------------------

    def _info(self, batch: Batch, fs: Optional[float], lead_names) -> SignalInfo:
        names = None if lead_names is None else check_lead_names(
            lead_names, f"{type(self).__name__}: lead_names", distinct=False)
        info = SignalInfo(fs, batch.x.shape[1], batch.x.shape[2], names)
        self.infer(info)  # checks; the steps work with the description of their input
        return info

    def forward(self, sig: Tensor, label: Optional[Tensor] = None, *masks: Tensor,
                seed: Optional[int] = None, epoch: int = 0, indices: Any = None,
                fs: Optional[float] = None, lead_names: Optional[Sequence[str]] = None,
                generator: Optional[torch.Generator] = None, return_params: bool = False):
        """``(sig, label, *masks)``, and the parameters last if `return_params`."""
        what = type(self).__name__
        batch = Batch(sig, label, masks, what)
        info = self._info(batch, fs, lead_names)
        self.check_batch(batch, info)
        keys = make_keys(batch.n, sig.device, seed, epoch, indices, generator)
        params = self.draw(keys, batch.x, info)
        out = self._finish(sig, label, masks, batch, params, info)
        return (*out, params) if return_params else out

    def apply(self, sig: Tensor, params: dict, label: Optional[Tensor] = None, *masks: Tensor,
              fs: Optional[float] = None, lead_names: Optional[Sequence[str]] = None):
        """Replay `params` (from ``return_params=True``) on `sig`: ``(sig, label,
        *masks)``."""
        batch = Batch(sig, label, masks, type(self).__name__)
        info = self._info(batch, fs, lead_names)
        self.check_batch(batch, info)
        return self._finish(sig, label, masks, batch, params, info)

    def _finish(self, sig, label, masks, batch: Batch, params: dict, info: SignalInfo):
        x, new_label, new_masks = self.transform(batch.x, params, batch.label,
                                                 list(batch.masks), info)
        out_sig, out_label, out_masks = batch.restore(x, new_label, new_masks)
        if self.inplace:
            out_sig = _write_back(sig, out_sig)
            if label is not None and not isinstance(out_label, tuple):
                out_label = _write_back(label, out_label)
            out_masks = [_write_back(m, o) for m, o in zip(masks, out_masks)]
        return (out_sig, label if label is None else out_label, *out_masks)

    def run(self, sig: Tensor, info: SignalInfo, generator: Any = None) -> Tensor:
        """As a plain pipeline step (signal only)."""
        batch = Batch(sig, None, (), type(self).__name__)
        keys = generator if isinstance(generator, Keys) else make_keys(
            batch.n, sig.device, None, 0, None, generator)
        params = self.draw(keys, batch.x, info)
        return self._finish(sig, None, (), batch, params, info)[0]


def _write_back(target: Tensor, value: Tensor) -> Tensor:
    if value is target:
        return target
    if value.shape != target.shape:
        return value  # a step that changes the shape cannot work in place
    if (value.data_ptr() == target.data_ptr() and value.stride() == target.stride()
            and value.dtype == target.dtype):
        return target  # the step left it alone: `value` is a view of `target` itself
    # Recorded by autograd (as torch_ecg's in-place ops): a tensor that requires grad
    # gets the copy's backward, and a leaf that requires grad refuses the write, rather
    # than keeping a graph that no longer matches its values.
    target.copy_(value)
    return target
