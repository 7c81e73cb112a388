"""torch_ecg's eight augmenters, with its class names and keyword arguments, drawn per
sample in one vectorised step (torch_ecg loops over the batch in Python for masking,
stretching and cutmix, and draws baseline wander in NumPy)."""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor

from ..ops._cache import tensor_cache
from ..ops.augment import beta_from_variates, fuse_kernel
from ..registry import AUGMENTERS
from ..transforms.config import SignalInfo, check_prob
from ._random import Keys, add_hash_noise
from .base import Augmenter, check_int, check_range
from .fused import OpCode, SignalView, lead_ptp, var_mean

__all__ = ["BaselineWander", "RandomFlip", "RandomMasking", "RandomRenormalize",
           "StretchCompress", "Mixup", "CutMix", "LabelSmooth"]

# torch_ecg's defaults: candidate amplitude ratios (rows: low ... extremely high) of the
# wander at each frequency, and (mean, std) ratios of its Gaussian part, relative to each
# lead's amplitude.
_BW_FS = (0.33, 0.1, 0.05, 0.01)
_AMPL_RATIO = ((0.01, 0.01, 0.02, 0.03), (0.01, 0.02, 0.04, 0.05), (0.1, 0.06, 0.04, 0.02),
               (0.02, 0.04, 0.07, 0.1), (0.05, 0.1, 0.16, 0.25), (0.1, 0.15, 0.25, 0.3),
               (0.25, 0.25, 0.3, 0.35))
_GAUSSIAN = ((0.0, 0.001), (0.0, 0.003), (0.0, 0.01))


def _prob_pair(prob: Any, what: str) -> tuple[float, float]:
    if isinstance(prob, numbers.Real) and not isinstance(prob, bool):
        prob = (prob, prob)
    try:
        first, second = prob
    except (TypeError, ValueError):
        raise ValueError(f"{what}: prob must be a number or a pair of numbers in [0, 1], got "
                         f"{prob!r}") from None
    return check_prob(first, what), check_prob(second, what)


def _table(value: Any, what: str, width: Optional[int] = None) -> tuple:
    rows = torch.as_tensor(value, dtype=torch.float64)
    if rows.dim() != 2 or rows.shape[0] == 0 or (width is not None and rows.shape[1] != width):
        raise ValueError(f"{what} must be a non-empty table of {width or 'k'} columns, got "
                         f"shape {tuple(rows.shape)}")
    if bool((rows < 0).any()):
        raise ValueError(f"{what} must not be negative, got {value!r}")
    return tuple(tuple(r) for r in rows.tolist())


def _zero_padded(table: tuple, prob: float) -> tuple:
    """torch_ecg's BaselineWander `prob`: ``int((1 - prob) m / prob)`` zero rows before the
    table's m rows, of which each lead takes one at random (none for prob 0 or 1)."""
    if not 0 < prob < 1:
        return table
    return ((0.0,) * len(table[0]),) * int((1 - prob) * len(table) / prob) + table


@tensor_cache(maxsize=32)
def _tables(ampl_ratio: tuple, gaussian: tuple, device) -> tuple[Tensor, Tensor]:
    """BaselineWander's candidate tables as float64 tensors on `device`, made once (a
    training loop draws from the same ones every batch). Read-only; ordinary tensors even
    when first asked for inside inference mode (the fused pass's draws)."""
    return (torch.tensor(ampl_ratio, dtype=torch.float64, device=device),
            torch.tensor(gaussian, dtype=torch.float64, device=device))


def sine_basis(freqs_hz: Tensor, n_samples: int, fs: float, dtype, device) -> Tensor:
    """(2k, n_samples): sin then cos of each frequency at t = n / fs, so that a sum of
    sinusoids with per-row amplitudes and phases is one matmul with their (sin, cos)
    coefficients instead of a sin() per element."""
    t = torch.arange(n_samples, dtype=torch.float64, device=device) / fs
    arg = 2 * math.pi * freqs_hz.to(device=device, dtype=torch.float64)[:, None] * t
    return torch.cat([torch.sin(arg), torch.cos(arg)]).to(dtype)


@tensor_cache(maxsize=32)
def cached_sine_basis(freqs_hz: tuple, n_samples: int, fs: float, dtype, device,
                      ones: bool = False) -> Tensor:
    """:func:`sine_basis` of a tuple of frequencies, with a last row of ones if `ones`,
    kept for the next call with the same arguments (a training loop asks for the same
    basis every batch). Read-only: callers must not write to it."""
    basis = sine_basis(torch.tensor(freqs_hz, dtype=torch.float64), n_samples, fs, dtype,
                       device)
    return torch.cat([basis, torch.ones_like(basis[:1])]) if ones else basis


def sine_coefficients(amplitude: Tensor, phase: Tensor) -> Tensor:
    """(..., 2k): ``amplitude * cos(phase)`` then ``amplitude * sin(phase)``, the
    coefficients of a :func:`sine_basis` for ``amplitude * sin(2 pi f t + phase)``. By
    ``torch.polar``, whose element-wise kernel stays on the calling thread (float64
    ``cos``/``sin`` on a contiguous tensor of a few hundred values go to a multithreaded
    vector library, whose wake-up on a loaded machine costs far more than the values)."""
    pairs = torch.view_as_real(torch.polar(amplitude, phase))
    return torch.cat([pairs[..., 0], pairs[..., 1]], -1)


def sinusoids(amplitude: Tensor, phase: Tensor, basis: Tensor) -> Tensor:
    """sum_k amplitude[..., k] * sin(2 pi f_k t + phase[..., k]) -> (..., n_samples)."""
    return sine_coefficients(amplitude, phase).to(basis.dtype) @ basis


def beta(keys_u: Tensor, keys_z: Tensor, alpha: float, b: float) -> Tensor:
    """Beta(alpha, b) per row from uniforms (n, 2 * (tries + 1)) and normals (n, 2 * tries):
    two Gamma draws by Marsaglia-Tsang, each with `tries` vectorised proposals (the first
    accepted one; acceptance is above 95%, so 8 tries all fail with odds below 1e-10).
    On the CPU the C++ kernel computes the same (:func:`~fastecg.ops.augment.beta_from_variates`)."""
    native = beta_from_variates(keys_u, keys_z, alpha, b)
    if native is not None:
        return native
    tries = keys_z.shape[1] // 2
    gammas = []
    for i, shape in enumerate((alpha, b)):
        boost = shape < 1  # Gamma(a) = Gamma(a + 1) * U ** (1 / a)
        d = (shape + 1 if boost else shape) - 1.0 / 3
        c = 1.0 / math.sqrt(9 * d)
        z = keys_z[:, i * tries:(i + 1) * tries]
        u = keys_u[:, i * tries:(i + 1) * tries]
        v = (1 + c * z) ** 3
        ok = (v > 0) & (torch.log(u) < 0.5 * z ** 2 + d - d * v + d * torch.log(v.clamp_min(1e-30)))
        first = torch.argmax(ok.to(torch.int8), 1, keepdim=True)
        g = torch.where(ok.any(1), (d * v).gather(1, first)[:, 0], torch.full_like(z[:, 0], d))
        if boost:
            g = g * keys_u[:, 2 * tries + i] ** (1.0 / shape)
        gammas.append(g)
    return gammas[0] / (gammas[0] + gammas[1]).clamp_min(1e-300)


def pair_within_batch(selected: Tensor, u: Tensor) -> Tensor:
    """Partner of each sample: the selected samples in the random order of `u`, each
    paired with the next (a random cycle, so nobody is paired with itself unless alone);
    the others with themselves. Tensor ops only (no sync on the count)."""
    n = selected.shape[0]
    ar = torch.arange(n, device=selected.device)
    key = torch.where(selected, u, 2.0 + ar.double())
    order = torch.argsort(key, stable=True)
    pos = torch.empty_like(order)
    pos[order] = ar
    count = selected.sum().clamp_min(1)
    nxt = torch.remainder(pos + 1, count)
    return torch.where(selected, order[nxt], ar)


def _mix(a: Tensor, b: Tensor, lam: Tensor) -> Tensor:
    """``lam * a + (1 - lam) * b`` in one pass."""
    lam = lam.to(a.dtype).view(-1, *([1] * (a.dim() - 1)))
    return torch.lerp(b, a, lam)


def _pair_mix(a: Tensor, partner: Tensor, lam: Tensor) -> Tensor:
    """``lam * a + (1 - lam) * a[partner]`` per sample; a sample paired with itself (not
    mixed) is left as it is: ``lerp(v, v, 1)`` would turn its Inf into NaN."""
    own = partner == torch.arange(partner.shape[0], device=partner.device)
    return torch.where(own.view(-1, *([1] * (a.dim() - 1))), a, _mix(a, a[partner], lam))


@AUGMENTERS.register("baseline_wander")
class BaselineWander(Augmenter):
    """Baseline wander: a sum of sinusoids at `bw_fs` plus Gaussian noise, independent per
    lead, scaled to each lead's peak-to-peak amplitude.

    Parameters
    ----------
    fs : float, optional
        Sampling rate in Hz (else the pipeline's).
    bw_fs : sequence of float
        Wander frequencies in Hz (torch_ecg: 0.33, 0.1, 0.05, 0.01), each below fs/2.
    ampl_ratio : table (m, len(bw_fs)), optional
        Candidate amplitude ratios; each lead takes one row at random.
    gaussian : table (k, 2), optional
        Candidate (mean, std) ratios of the Gaussian part; each lead takes one row at
        random, independently of its amplitude row.
    prob : float
        torch_ecg's meaning: each table gets ``int((1 - prob) m / prob)`` zero rows (m its
        rows), so that each lead of each sample takes no wander, and independently no
        noise, with probability about ``1 - prob`` (at 0.5, about 3 leads in 4 get one
        or both); 0 leaves every sample alone, 1 pads nothing.
    inplace : bool
        Write the result into the caller's tensor.

    Notes
    -----
    A lead's amplitude is its peak-to-peak value over the whole record (torch_ecg takes
    the largest over half-overlapping 0.2 s windows, which is the same number whenever the
    extremes fall within 0.2 s of each other, as an R peak and its S wave do). Phases are
    uniform in [0, 2 pi); the sinusoids are one matmul with a (2 * len(bw_fs), n_samples)
    basis, the noise comes from :func:`~fastecg.augmenters._random.hash_normal`.
    torch_ecg calls the class ``BaselineWanderAugmenter``: that name is exported too.

    Examples
    --------
    >>> import torch
    >>> from fastecg.augmenters import BaselineWander
    >>> x = torch.sin(torch.linspace(0, 60, 5000)).repeat(2, 12, 1)    # (2, 12, 5000)
    >>> y, _ = BaselineWander(fs=500.0, prob=1.0)(x, seed=0)            # (sig, label)
    >>> y.shape, bool((y - x).abs().amax(-1).min() > 0)               # every lead moved
    (torch.Size([2, 12, 5000]), True)
    """

    stream = 1
    native_draw = True

    def __init__(self, fs: Optional[float] = None, bw_fs: Sequence[float] = _BW_FS,
                 ampl_ratio: Optional[Sequence] = None, gaussian: Optional[Sequence] = None,
                 prob: float = 0.5, inplace: bool = False):
        super().__init__()
        self.fs = fs
        freqs = torch.as_tensor(bw_fs, dtype=torch.float64).reshape(-1)
        if freqs.numel() == 0 or bool((freqs <= 0).any()):
            raise ValueError(f"BaselineWander: bw_fs must be positive frequencies, got {bw_fs!r}")
        self.bw_fs = tuple(freqs.tolist())
        self.ampl_ratio = _table(_AMPL_RATIO if ampl_ratio is None else ampl_ratio,
                                 "BaselineWander: ampl_ratio", len(self.bw_fs))
        self.gaussian = _table(_GAUSSIAN if gaussian is None else gaussian,
                               "BaselineWander: gaussian", 2)
        self.prob = check_prob(prob, "BaselineWander")
        self.inplace = inplace

    def infer(self, info: SignalInfo) -> SignalInfo:
        fs = self.step_fs(info)
        if max(self.bw_fs) >= fs / 2:
            raise ValueError(f"BaselineWander: bw_fs {max(self.bw_fs):g} Hz must lie below "
                             f"fs/2 = {fs / 2:g} Hz")
        return info

    def draw(self, keys: Keys, x: Tensor, info: SignalInfo) -> dict:
        n, n_leads, _ = x.shape
        # (n, L): the fused cpu pass, as the first op, scales by each lead's peak-to-peak
        # as it reads the sample (SINES_PTP): no read of the batch here for it.
        relative = isinstance(x, SignalView) and x.plan.source_relative()
        ampl = (torch.ones(n, n_leads, dtype=torch.float64, device=x.device) if relative
                else lead_ptp(x))
        rows, gauss = _tables(_zero_padded(self.ampl_ratio, self.prob),
                              _zero_padded(self.gaussian, self.prob), x.device)
        # The zero rows carry prob; a sample is then always drawn for (prob 0: never).
        applied = 1.0 if self.prob > 0 else 0.0
        params = self._native(keys, ("amplitude", "phase", "noise_mean", "noise_std",
                                     "noise_keys"), [n_leads], [applied],
                              [rows, gauss, ampl]) or self._draw_torch(keys, ampl, rows, gauss,
                                                                       applied)
        if relative:
            params["relative_to_ptp"] = True
        return params

    def _draw_torch(self, keys, ampl, rows, gauss, prob):
        (n, n_leads), k = ampl.shape, len(self.bw_fs)
        applied = self._applied(keys, prob)
        u = self._uniform(keys, 1, n_leads * (2 + k)).view(n, n_leads, 2 + k)
        row = (u[..., 0] * len(rows)).long().clamp_max(len(rows) - 1)
        g = (u[..., 1] * len(gauss)).long().clamp_max(len(gauss) - 1)
        scale = ampl * applied[:, None]
        return {"amplitude": rows[row] * scale[..., None],  # (n, L, k)
                "phase": 2 * math.pi * u[..., 2:],
                "noise_mean": gauss[g, 0] * scale, "noise_std": gauss[g, 1] * scale,
                "noise_keys": self._bits(keys, 2, 2 * n_leads).view(n, n_leads, 2)}

    def _coef_basis(self, params, n_samples, dtype, device, info):
        # The noise mean rides on the matmul as the coefficient of a row of ones.
        basis = cached_sine_basis(self.bw_fs, n_samples, float(self.step_fs(info)), dtype,
                                  torch.device(device), ones=True)
        amplitude, phase = params["amplitude"], params["phase"]
        if dtype in (torch.float32, torch.float64) and torch.device(device).type == "cpu":
            native = fuse_kernel(self.stream, [dtype == torch.float64],
                                 [amplitude, phase, params["noise_mean"]])
            if native is not None:
                return native[0], basis
        coef = torch.cat([sine_coefficients(amplitude, phase), params["noise_mean"][..., None]],
                         -1)
        return coef.to(device=device, dtype=dtype), basis

    def _noisy(self) -> bool:
        return any(row[1] > 0 for row in self.gaussian)  # static: no noise when all are 0

    def transform(self, x, params, label, masks, info):
        coef, basis = self._coef_basis(params, x.shape[-1], x.dtype, x.device, info)
        wander = coef @ basis
        if self._noisy():
            add_hash_noise(wander, params["noise_keys"], params["noise_std"])
        return wander.add_(x), label, masks

    def fuse(self, plan, params, label, masks, info):
        coef, basis = self._coef_basis(params, plan.shape[-1], plan.dtype, plan.device, info)
        keys = params["noise_keys"] if self._noisy() else torch.empty(0, dtype=torch.long)
        std = params["noise_std"].to(plan.dtype) if self._noisy() else torch.empty(0)
        code = OpCode.SINES_PTP if params.get("relative_to_ptp") else OpCode.SINES
        plan.add(code, [coef, basis, keys, std])
        return label, masks


@AUGMENTERS.register("random_flip")
class RandomFlip(Augmenter):
    """Multiply by -1: a sample is chosen with ``prob[0]``; then, with ``per_channel``,
    each of its leads with ``prob[1]``, else all of them (torch_ecg's RandomFlip)."""

    stream = 2
    native_draw = True

    def __init__(self, fs: Optional[float] = None, per_channel: bool = True,
                 prob: Union[Sequence[float], float] = (0.4, 0.2), inplace: bool = False):
        super().__init__()
        self.fs, self.per_channel, self.inplace = fs, bool(per_channel), inplace
        self.prob = _prob_pair(prob, "RandomFlip")

    def draw(self, keys, x, info):
        native = self._native(keys, ("sign",), [x.shape[1], self.per_channel], self.prob)
        if native is not None:
            return native
        applied = self._applied(keys, self.prob[0])
        flip = applied[:, None].expand(-1, x.shape[1])
        if self.per_channel:
            flip = flip & (self._uniform(keys, 1, x.shape[1]) < self.prob[1])
        return {"sign": 1.0 - 2.0 * flip.double()}

    def transform(self, x, params, label, masks, info):
        return x * params["sign"].to(x.dtype)[..., None], label, masks

    def fuse(self, plan, params, label, masks, info):
        plan.affine(params["sign"])
        return label, masks


@AUGMENTERS.register("random_masking")
class RandomMasking(Augmenter):
    """Set stretches of every lead to `mask_value` (torch_ecg multiplies them by it,
    which is the same for its default 0; we set them so that any value means itself).

    A sample is masked with ``prob[0]``; it then gets on average
    ``prob[1] * (n_samples - w_max) / w_max`` masks (torch_ecg's rate), each of a width
    drawn uniformly in ``mask_width`` (seconds) and centred uniformly. The masks are a
    fixed number of candidate slots, each kept with the matching probability, so the
    draw is one vectorised step; coverage is built with a scatter and a cumulative sum.
    """

    stream = 3
    native_draw = True

    def __init__(self, fs: Optional[float] = None, mask_value: float = 0.0,
                 mask_width: Sequence[float] = (0.08, 0.18),
                 prob: Union[Sequence[float], float] = (0.3, 0.15), inplace: bool = False):
        super().__init__()
        self.fs, self.mask_value, self.inplace = fs, float(mask_value), inplace
        self.mask_width = check_range(mask_width, "RandomMasking: mask_width", 0.0,
                                      allow_scalar=False)
        self.prob = _prob_pair(prob, "RandomMasking")

    def _widths(self, info):
        fs = self.step_fs(info)
        return round(self.mask_width[0] * fs), round(self.mask_width[1] * fs)

    def infer(self, info):
        w0, w1 = self._widths(info)
        if w1 < 1:
            raise ValueError(f"RandomMasking: mask_width {self.mask_width} s is under one sample")
        if info.n_samples is not None and w1 >= info.n_samples:
            raise ValueError(f"RandomMasking: mask width {w1} samples is not shorter than the "
                             f"signal ({info.n_samples} samples)")
        return info

    def draw(self, keys, x, info):
        n, _, n_samples = x.shape
        w0, w1 = self._widths(info)
        w0 = max(w0, 1)
        expected = self.prob[1] * (n_samples - w1) / w1
        slots = max(1, math.ceil(2 * expected))
        native = self._native(keys, ("start", "end"), [n_samples, w0, w1, slots],
                              [self.prob[0], expected / slots])
        if native is not None:
            return native
        applied = self._applied(keys, self.prob[0])
        u = self._uniform(keys, 1, 3 * slots).view(n, 3, slots)
        active = (u[:, 0] < expected / slots) & applied[:, None]
        width = w0 + (u[:, 1] * (w1 - w0 + 1)).long().clamp_max(w1 - w0)
        centre = w1 // 2 + (u[:, 2] * (n_samples - w1)).long()
        start = (centre - width // 2).clamp(0, n_samples)
        end = (centre + width // 2).clamp(0, n_samples)
        return {"start": torch.where(active, start, 0), "end": torch.where(active, end, 0)}

    def transform(self, x, params, label, masks, info):
        n, _, n_samples = x.shape
        edges = torch.zeros(n, n_samples + 1, dtype=torch.int32, device=x.device)
        start, end = params["start"].to(x.device), params["end"].to(x.device)
        edges.scatter_add_(1, start, torch.ones_like(start, dtype=torch.int32))
        edges.scatter_add_(1, end, torch.full_like(end, -1, dtype=torch.int32))
        covered = (edges.cumsum(1)[:, None, :n_samples] > 0)
        return torch.where(covered, torch.as_tensor(self.mask_value, dtype=x.dtype,
                                                    device=x.device), x), label, masks

    def fuse(self, plan, params, label, masks, info):
        plan.add(OpCode.TIME_MASK, [params["start"], params["end"]], floats=[self.mask_value])
        return label, masks


def _renorm_range(value: Any, what: str, low: float) -> tuple:
    """`value` as a ``(low, high)`` pair, or as one pair per lead (a table of shape
    ``(n_leads, 2)``, torch_ecg's per-lead form) as a tuple of pairs; ValueError naming
    `what` otherwise."""
    try:
        table = torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        table = None
    if table is None or table.dim() != 2:
        return check_range(value, what, low, allow_scalar=True)
    if table.shape[0] == 0 or table.shape[1] != 2:
        raise ValueError(f"{what} must be a pair (low, high) or one pair per lead, of shape "
                         f"(n_leads, 2), got shape {tuple(table.shape)}")
    return tuple(check_range(row, f"{what}[{i}]", low) for i, row in enumerate(table.tolist()))


@tensor_cache(maxsize=32)
def _lead_ranges(ranges: tuple, device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-lead ``(low, high)`` pairs as float64 (low, high, middle, half-range) rows on
    `device`, made once (a training loop maps every batch's draw with the same ones).
    Read-only."""
    lo, hi = torch.tensor(ranges, dtype=torch.float64, device=device).unbind(1)
    mid = (lo + hi) / 2
    return lo, hi, mid, hi - mid


@AUGMENTERS.register("random_renormalize")
class RandomRenormalize(Augmenter):
    """z-score each chosen sample (per lead with ``per_channel``) to a random mean and
    standard deviation: normal around the middle of `mean` / `std` with 0.3 of the
    half-range as scale (torch_ecg's draw), clipped to the range. The standard deviation
    is the sample one (``ddof=1``), as in torch_ecg's renormalisation and fastecg's
    :class:`~fastecg.preprocessors.Normalize`.

    Parameters
    ----------
    mean, std : array_like
        Range ``(low, high)`` of the new mean / standard deviation, shape ``(2,)``; or,
        with ``per_channel=True``, one range per lead, shape ``(n_leads, 2)`` (lead l's
        target drawn from its own range; the signal must have n_leads leads). `std`
        ranges must not be negative.
    per_channel : bool
        Renormalise each lead on its own statistics (else the whole sample's).
    prob : float
        Probability that a sample is renormalised.
    inplace : bool
        Write the result into the caller's tensor.
    fs : float, optional
        Accepted for torch_ecg's managers; unused.
    """

    stream = 4
    native_draw = True

    def __init__(self, mean: Sequence[float] = (-0.05, 0.1), std: Sequence[float] = (0.08, 0.32),
                 per_channel: bool = False, prob: float = 0.5, inplace: bool = False,
                 fs: Optional[float] = None):
        super().__init__()
        self.fs = fs  # (torch_ecg's managers pass fs to every step; this one needs none)
        self.mean = _renorm_range(mean, "RandomRenormalize: mean", -math.inf)
        self.std = _renorm_range(std, "RandomRenormalize: std", 0.0)
        self.per_channel, self.inplace = bool(per_channel), inplace
        self.prob = check_prob(prob, "RandomRenormalize")
        for name, value in (("mean", self.mean), ("std", self.std)):
            if self._per_lead(value) and not self.per_channel:
                raise ValueError(f"RandomRenormalize: {name} with one range per lead (shape "
                                 f"({len(value)}, 2)) needs per_channel=True")

    @staticmethod
    def _per_lead(ranges: tuple) -> bool:
        return isinstance(ranges[0], tuple)

    def infer(self, info: SignalInfo) -> SignalInfo:
        for name, value in (("mean", self.mean), ("std", self.std)):
            if (self._per_lead(value) and info.n_leads is not None
                    and len(value) != info.n_leads):
                raise ValueError(f"RandomRenormalize: {name} has {len(value)} per-lead ranges "
                                 f"but the signal has {info.n_leads} leads")
        return info

    def draw(self, keys, x, info):
        n, n_leads, _ = x.shape
        width = n_leads if self.per_channel else 1
        # A per-lead range is drawn on [-1, 1] (the same normal variates, scale 0.3,
        # clipped) and mapped onto each lead's range: the one draw, per lead.
        ranges = [(-1.0, 1.0) if self._per_lead(r) else r for r in (self.mean, self.std)]
        out = self._native(keys, ("applied", "mean", "std"), [width],
                           [self.prob, *ranges[0], *ranges[1]])
        if out is None:
            z = self._normal(keys, 1, 2 * width)
            out = {"applied": self._applied(keys, self.prob)}
            for name, (lo, hi), zz in (("mean", ranges[0], z[:, :width]),
                                       ("std", ranges[1], z[:, width:])):
                mid = (lo + hi) / 2
                out[name] = (mid + 0.3 * (hi - mid) * zz).clamp(lo, hi)
        for name in ("mean", "std"):
            per_lead = getattr(self, name)
            if self._per_lead(per_lead):
                lo, hi, mid, half = _lead_ranges(per_lead, out[name].device)
                out[name] = torch.addcmul(mid, half, out[name]).clamp(lo, hi)
        return out

    def _ddof1_std(self, std: Tensor, shape) -> Tensor:
        """The drawn sample (ddof=1) standard deviations as the target of a population
        (ddof=0) z-score, which the statistics and the kernel compute: scaled by
        ``sqrt((count - 1) / count)``, count the values each statistic covers."""
        count = shape[-1] * (1 if self.per_channel else shape[-2])
        return std * math.sqrt(max(count - 1, 0) / max(count, 1))

    def _gain_shift(self, var, mu, params, shape):
        n = var.shape[0]
        # (n, width) -> (n, width, 1): no view(n, -1, 1), ambiguous for an empty batch
        new_mean = params["mean"].to(device=var.device, dtype=var.dtype)[..., None]
        new_std = self._ddof1_std(params["std"], shape).to(device=var.device,
                                                           dtype=var.dtype)[..., None]
        applied = params["applied"].to(var.device).view(n, 1, 1)
        gain = torch.where(applied, new_std * torch.rsqrt(var.clamp_min(1e-12)), 1.0)
        shift = torch.where(applied, new_mean - mu * gain, 0.0)
        return gain, shift

    def transform(self, x, params, label, masks, info):
        dims = (-1,) if self.per_channel else (-2, -1)
        var, mu = torch.var_mean(x, dim=dims, keepdim=True, correction=0)
        gain, shift = self._gain_shift(var, mu, params, x.shape)
        return torch.addcmul(shift, x, gain), label, masks

    def fuse(self, plan, params, label, masks, info):
        std = self._ddof1_std(params["std"], plan.shape)
        if not plan.renorm(params["mean"], std, params["applied"], self.per_channel):
            gain, shift = self._gain_shift(*var_mean(plan, self.per_channel), params,
                                           plan.shape)
            plan.affine(gain[..., 0], shift[..., 0])
        return label, masks


def resample_gather(x: Tensor, src: Tensor, valid: Tensor) -> Tensor:
    """x (n, c, T) at fractional positions `src` (n, T_out), linear interpolation, zero
    where not `valid`: one gather per neighbour for all leads of a sample."""
    n_samples = x.shape[-1]
    i0 = src.floor().clamp(0, n_samples - 1)
    frac = (src - i0).to(x.dtype)[:, None, :]
    i0 = i0.long()
    i1 = (i0 + 1).clamp_max(n_samples - 1)
    shape = (x.shape[0], x.shape[1], src.shape[-1])
    a = x.gather(2, i0[:, None, :].expand(shape))
    b = x.gather(2, i1[:, None, :].expand(shape))
    return torch.lerp(a, b, frac) * valid[:, None, :].to(x.dtype)


@AUGMENTERS.register("stretch_compress")
class StretchCompress(Augmenter):
    """Stretch (then cut the middle) or compress (then zero-pad both sides) a chosen sample
    in time by ``1 +- r``, r normal around `ratio` (percent if above 1) with scale
    ``0.382 * ratio``, clipped to ``[0, 2 * ratio]`` (torch_ecg's draw); what
    ``F.interpolate(..., mode="linear", align_corners=True)`` gives, as one gather per
    sample. Segmentation masks ``(..., n_samples, k)`` follow the signal."""

    stream = 5
    native_draw = True

    def __init__(self, ratio: float = 6, prob: float = 0.5, inplace: bool = False,
                 fs: Optional[float] = None):
        super().__init__()
        self.fs = fs  # (torch_ecg's managers pass fs to every step; this one needs none)
        if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0 <= ratio <= 100:
            raise ValueError(f"StretchCompress: ratio must be in [0, 1], or a percentage in "
                             f"(1, 100], got {ratio!r}")
        self.ratio = float(ratio)
        self._r = self.ratio / 100 if self.ratio > 1 else self.ratio
        self.prob = check_prob(prob, "StretchCompress")
        self.inplace = inplace

    def draw(self, keys, x, info):
        n_samples = x.shape[-1]
        native = self._native(keys, ("new_len",), [n_samples], [self.prob, self._r])
        if native is not None:
            return native
        applied = self._applied(keys, self.prob)
        sign = torch.where(self._uniform(keys, 1)[:, 0] < 0.5, -1.0, 1.0)
        r = (self._r + 0.382 * self._r * self._normal(keys, 2)[:, 0]).clamp(0, 2 * self._r)
        new_len = torch.round((1 + sign * r) * n_samples).long().clamp_min(2)
        return {"new_len": torch.where(applied, new_len, n_samples)}

    @staticmethod
    def positions(new_len: Tensor, n_samples: int) -> tuple[Tensor, Tensor]:
        new_len = new_len[:, None]
        half = (new_len - n_samples).abs() // 2
        t = torch.arange(n_samples, device=new_len.device)
        m = torch.where(new_len >= n_samples, t + half, t - half)
        valid = (m >= 0) & (m < new_len)
        src = m.double() * ((n_samples - 1) / (new_len - 1).double())
        return src, valid

    def transform(self, x, params, label, masks, info):
        new_len = params["new_len"].to(x.device)
        if x.device.type == "cpu":
            # Resample only the rows that change (no host sync on the CPU): the others
            # are copied, one pass instead of two gathers and an interpolation.
            rows = (new_len != x.shape[-1]).nonzero().squeeze(1)
            src, valid = self.positions(new_len[rows], x.shape[-1])
            x = x.index_copy(0, rows, resample_gather(x[rows], src, valid))
            masks = [m.index_copy(0, rows, _resample_mask(m[rows], src, valid)) for m in masks]
            return x, label, masks
        src, valid = self.positions(new_len, x.shape[-1])
        return resample_gather(x, src, valid), label, [_resample_mask(m, src, valid)
                                                       for m in masks]

    def fuse(self, plan, params, label, masks, info):
        n_samples = plan.shape[-1]
        new_len = params["new_len"].to(plan.device)
        warp = fuse_kernel(self.stream, [n_samples], [new_len])
        if warp is None:
            half = (new_len - n_samples).abs() // 2
            warp = (torch.where(new_len >= n_samples, half, -half), new_len,
                    (n_samples - 1) / (new_len - 1).double())
        plan.warp(*warp, n_samples)
        if masks:
            src, valid = self.positions(new_len, n_samples)
            masks = [_resample_mask(m, src, valid) for m in masks]
        return label, masks


def _resample_mask(m: Tensor, src: Tensor, valid: Tensor) -> Tensor:
    """Masks (n, T, k): float ones interpolated as the signal, others by nearest sample."""
    if m.is_floating_point():
        return resample_gather(m.transpose(1, 2), src, valid).transpose(1, 2)
    return _nearest(m, src, valid)


def _nearest(mask: Tensor, src: Tensor, valid: Tensor) -> Tensor:
    """Integer / boolean masks (n, T, k) follow the signal by nearest sample."""
    idx = src.round().long().clamp(0, mask.shape[1] - 1)
    out = mask.gather(1, idx[..., None].expand(-1, -1, mask.shape[2]))
    if out.dtype == torch.bool:
        return out & valid[..., None]
    return out * valid[..., None].to(out.dtype)


def _check_soft_label(aug: Augmenter, batch) -> None:
    if batch.label is not None and not batch.label.is_floating_point():
        raise ValueError(f"{type(aug).__name__} mixes labels: give them one-hot or soft "
                         f"(floating point, (..., n_classes)), got {batch.label.dtype}")


class _PairMixer(Augmenter):
    """Shared by Mixup and CutMix: per-sample lambda ~ Beta(alpha, beta) and partners."""

    _TRIES = 8

    def _check_mix(self, alpha, beta_, prob):
        name = type(self).__name__
        for what, v in (("alpha", alpha), ("beta", beta_)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Real)
                                  or not v > 0):
                raise ValueError(f"{name}: {what} must be a positive number, got {v!r}")
        return float(alpha), float(beta_ or alpha), check_prob(prob, name)

    def check_batch(self, batch, info) -> None:
        _check_soft_label(self, batch)

    def _lam_partner(self, keys, k0: int, n: int, device) -> tuple:
        applied = self._applied(keys, self.prob, k0)
        tries = self._TRIES
        lam = beta(self._uniform(keys, k0 + 1, 2 * tries + 2),
                   self._normal(keys, k0 + 2, 2 * tries), self.alpha, self._beta)
        partner = pair_within_batch(applied, self._uniform(keys, k0 + 3)[:, 0])
        return applied, lam, partner


@AUGMENTERS.register("mixup")
class Mixup(_PairMixer):
    """``lam * x + (1 - lam) * x[partner]`` for each chosen sample, lam ~ Beta(alpha, beta)
    per sample (torch_ecg draws one for the batch), labels and float masks mixed alike;
    the other samples are left as they are.

    The partners pair samples inside the batch, so unlike every other augmenter the
    result depends on the batch (its lambda does not). With ``label_pair=True`` the label
    comes back as ``(y_a, y_b, lam)`` for hard-label losses
    (``lam * loss(p, y_a) + (1 - lam) * loss(p, y_b)``).
    """

    stream = 6
    native_draw = True

    def __init__(self, fs: Optional[float] = None, alpha: float = 0.5,
                 beta: Optional[float] = None, prob: float = 0.5, inplace: bool = False,
                 label_pair: bool = False):
        super().__init__()
        self.fs, self.inplace, self.label_pair = fs, inplace, bool(label_pair)
        self.alpha, self._beta, self.prob = self._check_mix(alpha, beta, prob)

    def draw(self, keys, x, info):
        native = self._native(keys, ("lam", "partner"), [self._TRIES],
                              [self.prob, self.alpha, self._beta])
        if native is not None:
            return native
        applied, lam, partner = self._lam_partner(keys, 0, x.shape[0], x.device)
        return {"lam": torch.where(applied, lam, 1.0), "partner": partner}

    def transform(self, x, params, label, masks, info):
        lam, partner = params["lam"].to(x.device), params["partner"].to(x.device)
        return (_pair_mix(x, partner, lam), *self._mix_rest(lam, partner, label, masks))

    def fuse(self, plan, params, label, masks, info):
        lam, partner = params["lam"].to(plan.device), params["partner"].to(plan.device)
        plan.pair(partner, lam)
        return self._mix_rest(lam, partner, label, masks)

    def _mix_rest(self, lam, partner, label, masks):
        # Labels and masks are finite, for which lerp(v, v, w) == v: a sample paired with
        # itself keeps them without _pair_mix's extra ops.
        if label is not None:
            label = (label, label[partner], lam.to(label.dtype)) if self.label_pair else \
                _mix(label, label[partner], lam)
        masks = [_mix(m, m[partner], lam) if m.is_floating_point() else m for m in masks]
        return label, masks


@AUGMENTERS.register("cutmix")
class CutMix(_PairMixer):
    """Replace a stretch of each chosen sample (all leads) with the same stretch of its
    partner: length ``round((1 - lam) * n_samples)``, lam ~ Beta(alpha, beta) per sample,
    start uniform; labels mixed by the fraction actually kept, segmentation masks cut
    with the signal. `num_mix` rounds, each with new partners. Depends on the batch,
    as Mixup."""

    stream = 7

    def __init__(self, fs: Optional[float] = None, num_mix: int = 1, alpha: float = 0.5,
                 beta: Optional[float] = None, prob: float = 0.5, inplace: bool = False,
                 label_pair: bool = False):
        super().__init__()
        num_mix = check_int(num_mix, "CutMix: num_mix", 1, 8)
        self.fs, self.num_mix, self.inplace = fs, num_mix, inplace
        self.label_pair = bool(label_pair)
        if self.label_pair and num_mix != 1:
            raise ValueError("CutMix: label_pair needs num_mix=1")
        self.alpha, self._beta, self.prob = self._check_mix(alpha, beta, prob)

    def draw(self, keys, x, info):
        n_samples = x.shape[-1]
        starts, ends, partners = [], [], []
        for r in range(self.num_mix):
            applied, lam, partner = self._lam_partner(keys, 8 * r, x.shape[0], x.device)
            cut = torch.round((1 - lam) * n_samples).long() * applied
            start = (self._uniform(keys, 8 * r + 4)[:, 0] * (n_samples - cut + 1)).long()
            start = torch.minimum(start, n_samples - cut)
            starts.append(start)
            ends.append(start + cut)
            partners.append(partner)
        return {"start": torch.stack(starts), "end": torch.stack(ends),
                "partner": torch.stack(partners)}

    def transform(self, x, params, label, masks, info):
        n_samples = x.shape[-1]
        t = torch.arange(n_samples, device=x.device)
        for start, end, partner in zip(params["start"], params["end"], params["partner"]):
            start, end, partner = start.to(x.device), end.to(x.device), partner.to(x.device)
            inside = (t >= start[:, None]) & (t < end[:, None])  # (n, T)
            x = torch.where(inside[:, None, :], x[partner], x)
            kept = 1 - (end - start).double() / n_samples
            if label is not None:
                label = (label, label[partner], kept.to(label.dtype)) if self.label_pair else \
                    _mix(label, label[partner], kept)
            masks = [torch.where(inside[..., None], m[partner], m) for m in masks]
        return x, label, masks


@AUGMENTERS.register("label_smooth")
class LabelSmooth(Augmenter):
    """``(1 - smoothing) * label + smoothing / n_classes`` for each chosen sample; the
    signal passes through. After a Mixup or CutMix with ``label_pair=True``, both labels
    of the pair ``(y_a, y_b, lam)`` (a loss linear in the target, as cross-entropy, then
    sees the smoothed mixed label)."""

    stream = 8
    native_draw = True

    def __init__(self, fs: Optional[float] = None, smoothing: float = 0.1, prob: float = 0.5,
                 inplace: bool = False):
        super().__init__()
        if isinstance(smoothing, bool) or not isinstance(smoothing, numbers.Real) or not (
                0 <= smoothing <= 1):
            raise ValueError(f"LabelSmooth: smoothing must be in [0, 1], got {smoothing!r}")
        self.fs, self.smoothing, self.inplace = fs, float(smoothing), inplace
        self.prob = check_prob(prob, "LabelSmooth")

    def check_batch(self, batch, info) -> None:
        _check_soft_label(self, batch)

    def draw(self, keys, x, info):
        return self._native(keys, ("applied",), (), [self.prob]) or {
            "applied": self._applied(keys, self.prob)}

    def transform(self, x, params, label, masks, info):
        if label is None:
            return x, label, masks
        if isinstance(label, tuple):
            y_a, y_b, lam = label
            return x, (self._smooth(params, y_a), self._smooth(params, y_b), lam), masks
        return x, self._smooth(params, label), masks

    def _smooth(self, params, label):
        applied = params["applied"].to(label.device)[:, None]
        smooth = (1 - self.smoothing) * label + self.smoothing / max(1, label.shape[-1])
        return torch.where(applied, smooth, label)

    def fuse(self, plan, params, label, masks, info):
        return self.transform(None, params, label, masks, info)[1:]
