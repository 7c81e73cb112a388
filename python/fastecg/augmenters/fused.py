"""The fused pass of an AugmenterManager (its ``cpu``, ``cuda`` and ``triton`` backends:
the kernels of :mod:`fastecg.ops.augment`, on the signal's device): the steps' parameters are
drawn exactly as the torch backend draws them (the same draw code; on the CPU the classic
augmenters' draws are one C++ call each), and each step adds its signal
work to a :class:`FusedPlan` as ops of the fused kernel (:mod:`fastecg.ops.augment`)
instead of running it. The kernel then runs the pending ops in one pass over the batch.

A plan runs its pending ops (one kernel call, whose output becomes the source of the
next ops) only where a step needs the signal itself (Mixup, which pairs
samples, does not: the kernel pairs them within the pass, see the ``PAIR`` op):

* a draw or transform that reads the signal's statistics (baseline wander's amplitude,
  unless it is the ``cpu`` pass's first op, ``SINES_PTP``; Gaussian noise's power; renormalisation's mean and variance on the GPU backends): the
  kernel returns the per-lead min, max, sum and sum of squares of its output with it. On
  the CPU the renormalisation is an op of its own (``RENORM``): the kernel takes each
  sample's statistics itself, from a per-thread copy of the sample, so the pass goes on;
* a step with no fused form (CutMix, plain ``nn.Module`` steps), which runs its torch
  code on the materialised signal.

Intermediate results go to two work buffers that the manager keeps between calls (a
fresh batch-sized allocation page-faults its way in: on a loaded machine that is a
visible part of a pass); the final output is a new tensor. So the fused pass needs at
most two batch-sized buffers beyond its input and output: every noise, band-limited EMG
noise included (the ``FIR_NOISE`` op), is made inside the kernel.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor

from ..ops.augment import OpCode, augment_pass, lead_stats

__all__ = ["FusedPlan", "SignalView", "lead_ptp", "lead_power", "OpCode"]


class FusedPlan:
    """The pending ops of a fused pass over ``source`` (n, n_leads, n_samples), run by
    `backend`'s kernel ("auto": the one :func:`fastecg.ops.augment.fused_backend` picks
    for the source's device)."""

    def __init__(self, source: Tensor, workspace: Optional[list] = None, backend: str = "auto",
                 internal: bool = False):
        self.dtype, self.device = source.dtype, source.device
        self.backend = backend
        # The steps' parameters stay inside the call (none is returned for a replay).
        self.internal = internal
        # Work buffers reused between calls (a list the caller keeps; at most two).
        self._workspace = workspace
        self._reset(source)

    def _reset(self, source: Tensor, stats: Optional[Tensor] = None) -> None:
        self.source = source
        self.codes: list[int] = []
        self.ints: list[int] = []
        self.floats: list[float] = []
        self.tensors: list[Tensor] = []
        self.shape = tuple(source.shape)
        self._stats = stats

    @property
    def pending(self) -> bool:
        return bool(self.codes)

    def source_relative(self) -> bool:
        """Whether the next op may take its amounts relative to each lead's peak-to-peak
        of the source (``SINES_PTP``: the kernel measures it as it reads the sample)
        instead of a read of the source for them now: the ``cpu`` kernel, no op pending
        (it is the pass's first), and parameters that stay inside the call (a relative
        amount would not replay on another signal)."""
        return self.internal and self.backend == "cpu" and not self.pending

    def add(self, code: OpCode, tensors: Sequence[Tensor], ints: Sequence[int] = (),
            floats: Sequence[float] = ()) -> None:
        """Append one op; its tensors are made contiguous tensors on the plan's device here
        (a step's empty placeholders are made on the CPU)."""
        self.codes.append(int(code))
        device = self.device
        for t in tensors:
            if t.device != device:
                t = t.to(device)
            self.tensors.append(t if t.is_contiguous() else t.contiguous())
        self.ints.extend(int(i) for i in ints)
        self.floats.extend(float(f) for f in floats)
        self._stats = None
        n, n_leads, n_samples = self.shape
        if code == OpCode.LEAD_MIX:
            self.shape = (n, tensors[0].shape[1], n_samples)
        elif code == OpCode.WARP:
            self.shape = (n, n_leads, int(ints[0]))

    def affine(self, gain: Tensor, shift: Optional[Tensor] = None) -> None:
        """``y * gain + shift`` per lead: gain and shift (n, n_leads) or (n, 1)."""
        n, n_leads, _ = self.shape
        gain = gain.to(device=self.device, dtype=self.dtype).expand(n, n_leads)
        shift = torch.zeros(n, n_leads, dtype=self.dtype, device=self.device) if shift is None \
            else shift.to(device=self.device, dtype=self.dtype).expand(n, n_leads)
        self.add(OpCode.LEAD_AFFINE, [gain, shift])

    def warp(self, offset: Tensor, limit: Tensor, ratio: Optional[Tensor], n_out: int) -> None:
        """Output sample t is the signal at ``(t + offset) * ratio`` (linear
        interpolation), zero unless ``0 <= t + offset < limit``; per-sample (n,) tensors,
        ratio None for 1."""
        n = self.shape[0]
        if ratio is None:
            ratio = torch.ones(n, dtype=torch.float64, device=self.device)
        self.add(OpCode.WARP, [offset.to(self.device, torch.long).expand(n),
                               limit.to(self.device, torch.long).expand(n),
                               ratio.to(self.device, torch.float64).expand(n)], ints=[n_out])

    # The largest sample (leads x samples x item size) RENORM holds whole per thread: an
    # ECG record is ~0.25 MB; a Holter recording takes the statistics route instead.
    RENORM_MAX_BYTES = 8 << 20

    def renorm(self, mean: Tensor, std: Tensor, applied: Tensor, per_lead: bool) -> bool:
        """Add a RENORM op (mean, std (n, n_leads or 1), applied (n,)) where the kernel
        can run it: the ``cpu`` backend, no other RENORM pending, a sample within
        :attr:`RENORM_MAX_BYTES`. False: the caller takes the statistics route."""
        n, n_leads, n_samples = self.shape
        if (self.backend != "cpu" or int(OpCode.RENORM) in self.codes
                or n_leads * n_samples * self.dtype.itemsize > self.RENORM_MAX_BYTES):
            return False
        width = n_leads if per_lead else 1
        self.add(OpCode.RENORM, [mean.to(self.dtype).reshape(n, width),
                                 std.to(self.dtype).reshape(n, width),
                                 applied.to(torch.long).reshape(n)], ints=[int(per_lead)])
        return True

    def pair(self, partner: Tensor, lam: Tensor) -> None:
        """``lerp(y[partner], y, lam)`` of the signal so far, y (Mixup); a sample paired
        with itself keeps y."""
        if int(OpCode.RENORM) in self.codes:
            self.materialize()  # the kernel holds only the sample's own signal whole
        self.add(OpCode.PAIR, [partner.to(device=self.device, dtype=torch.long),
                               lam.to(device=self.device, dtype=torch.float64)])

    def _shares(self, buf: Tensor, t: Tensor) -> bool:
        return buf.untyped_storage().data_ptr() == t.untyped_storage().data_ptr()

    def _work_buffer(self) -> Optional[Tensor]:
        """A work buffer of the pending ops' output shape that is not the source."""
        if self._workspace is None:
            return None
        ws = self._workspace
        free = [i for i, buf in enumerate(ws) if not self._shares(buf, self.source)]
        for i in free:
            if ws[i].shape == self.shape and ws[i].dtype == self.dtype:
                return ws[i]
        buf = torch.empty(self.shape, dtype=self.dtype, device=self.device)
        if len(ws) < 2:
            ws.append(buf)
        elif free:
            ws[free[0]] = buf
        return buf

    def materialize(self, stats: bool = False, final: bool = False) -> Tensor:
        """Run the pending ops (if any); the result is the new source. `final`: the
        result is the caller's (a new tensor, never a work buffer)."""
        if self.pending or (stats and self._stats is None):
            out, st = augment_pass(self.source, self.codes, self.ints, self.floats,
                                   self.tensors, stats,
                                   None if final else self._work_buffer(), self.backend)
            self._reset(out, st if stats else None)
        elif final and self._workspace and any(self._shares(b, self.source)
                                               for b in self._workspace):
            self._reset(self.source.clone())
        return self.source

    def replace(self, x: Tensor) -> None:
        """A step ran in torch on the materialised signal: `x` is the new source."""
        if self.pending:
            raise RuntimeError("FusedPlan.replace with pending ops")
        self._reset(x)

    def lead_stats(self) -> Tensor:
        """(n, n_leads, 4) float64 per-lead min, max, sum, sum of squares of the signal:
        from the pass that runs the pending ops, or one read of the source."""
        if not self.pending and self._stats is None:
            self._stats = lead_stats(self.source, self.backend)
        self.materialize(stats=True)
        return self._stats

    def view(self) -> "SignalView":
        return SignalView(self)


class SignalView:
    """What a step's ``draw`` sees of the signal in the fused pass: its shape, dtype and
    device, and statistics through :func:`lead_ptp` / :func:`lead_power` (from the
    kernel: with the pass that runs the pending ops, or one read of the source)."""

    def __init__(self, plan: FusedPlan):
        self._plan = plan
        self.shape = torch.Size(plan.shape)
        self.dtype, self.device = plan.dtype, plan.device

    def dim(self) -> int:
        return len(self.shape)

    @property
    def plan(self) -> FusedPlan:
        return self._plan


def lead_ptp(x) -> Tensor:
    """(n, n_leads) float64 peak-to-peak amplitude of each lead of `x` (a tensor or a
    :class:`SignalView`), the difference taken in the signal's dtype (min and max are
    exact, so both forms give the same numbers). NaN samples are left out, as the
    kernels' min and max leave them out: a NaN stays where it is instead of making the
    amounts of its whole lead NaN."""
    if isinstance(x, Tensor):
        with torch.no_grad():
            nan = x.isnan()
            return (x.masked_fill(nan, -math.inf).amax(-1)
                    - x.masked_fill(nan, math.inf).amin(-1)).double()
    s = x.plan.lead_stats()
    return (s[..., 1].to(x.dtype) - s[..., 0].to(x.dtype)).double()


def lead_power(x) -> Tensor:
    """(n, n_leads) float64 mean square of each lead of `x` (a tensor or a
    :class:`SignalView`; the kernel's sum runs in another order: ~1e-16 apart)."""
    if isinstance(x, Tensor):
        with torch.no_grad():
            return x.double().square().mean(-1)
    s = x.plan.lead_stats()
    return s[..., 3] / x.shape[-1]


def var_mean(plan: FusedPlan, per_channel: bool) -> tuple[Tensor, Tensor]:
    """(var, mean) of each lead (per_channel) or each sample of the plan's signal,
    (n, n_leads or 1, 1) in the signal's dtype, as ``torch.var_mean(correction=0)``."""
    dims = (-1,) if per_channel else (-2, -1)
    if not plan.pending and plan._stats is None:
        return torch.var_mean(plan.source, dim=dims, keepdim=True, correction=0)
    s = plan.lead_stats()
    count = plan.shape[-1]
    total, squares = s[..., 2], s[..., 3]
    if not per_channel:
        total, squares = total.sum(-1, keepdim=True), squares.sum(-1, keepdim=True)
        count *= plan.shape[1]
    mean = total / count
    var = (squares / count - mean * mean).clamp_min(0)
    return var[..., None].to(plan.dtype), mean[..., None].to(plan.dtype)
