"""ECG-physics augmenters: mains interference, muscle noise, white noise at a set SNR,
gain, time shift and crop, lead dropout, the PhysioNet/CinC 2021 reduced lead sets and
3KG's vectorcardiogram rotation."""

from __future__ import annotations

import functools
import math
import numbers
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from .._spec import check_lead_names
from ..registry import AUGMENTERS
from ..transforms.config import check_prob
from ._random import Keys, add_hash_noise
from .base import STANDARD_LEADS, Augmenter, check_int, check_range
from .classic import cached_sine_basis, sine_coefficients, sinusoids
from .fused import OpCode, lead_power

__all__ = ["PowerlineNoise", "EMGNoise", "emg_taps", "fir_hash_noise", "GaussianNoise", "AmplitudeScale", "TimeShift",
           "RandomCrop", "RandomLeadsMask", "ReducedLeadSet", "VCGRotation",
           "INVERSE_DOWER", "DOWER", "REDUCED_LEAD_SETS"]

# Inverse Dower matrix (Edenbrandt & Pahlm 1988): rows X, Y, Z; columns V1..V6, I, II.
INVERSE_DOWER = ((-0.172, -0.074, 0.122, 0.231, 0.239, 0.194, 0.156, -0.010),
                 (0.057, -0.019, -0.106, -0.022, 0.041, 0.048, -0.227, 0.887),
                 (-0.229, -0.310, -0.246, -0.063, 0.055, 0.108, 0.022, 0.102))
# Dower's transform (Dower et al. 1980) back from X, Y, Z: rows V1..V6, I, II.
DOWER = ((-0.515, 0.157, -0.917), (0.044, 0.164, -1.387), (0.882, 0.098, -1.277),
         (1.213, 0.127, -0.601), (1.125, 0.127, -0.086), (0.831, 0.076, 0.230),
         (0.632, -0.235, 0.059), (0.235, 1.066, -0.132))

# PhysioNet/CinC Challenge 2021 lead sets.
REDUCED_LEAD_SETS = {
    12: STANDARD_LEADS,
    6: ("I", "II", "III", "aVR", "aVL", "aVF"),
    4: ("I", "II", "III", "V2"),
    3: ("I", "II", "V2"),
    2: ("I", "II"),
}


def _row_keys(aug: Augmenter, keys: Keys, k: int, n_leads: int) -> Tensor:
    return aug._bits(keys, k, 2 * n_leads).view(-1, n_leads, 2)


@AUGMENTERS.register("powerline_noise")
class PowerlineNoise(Augmenter):
    """Mains interference: per sample one frequency from `freq` (50 or 60 Hz), per lead an
    amplitude uniform in `amplitude` (mV) and a phase, plus `harmonics - 1` harmonics at
    amplitude / h. All sinusoids are one matmul with a fixed basis."""

    stream = 9

    def __init__(self, fs: Optional[float] = None,
                 freq: Union[float, Sequence[float]] = (50.0, 60.0),
                 amplitude: Union[float, Sequence[float]] = (0.0, 0.05), harmonics: int = 1,
                 prob: float = 0.5, inplace: bool = False):
        super().__init__()
        freqs = (freq,) if isinstance(freq, numbers.Real) else tuple(freq)
        if not freqs or any(isinstance(f, bool) or not isinstance(f, numbers.Real) or f <= 0
                            for f in freqs):
            raise ValueError(f"PowerlineNoise: freq must be positive frequencies, got {freq!r}")
        harmonics = check_int(harmonics, "PowerlineNoise: harmonics", 1)
        self.fs, self.freq, self.harmonics = fs, tuple(float(f) for f in freqs), harmonics
        self.amplitude = check_range(amplitude, "PowerlineNoise: amplitude")
        self.prob, self.inplace = check_prob(prob, "PowerlineNoise"), inplace

    def infer(self, info):
        fs = self.step_fs(info)
        top = max(self.freq) * self.harmonics
        if top >= fs / 2:
            raise ValueError(f"PowerlineNoise: {top:g} Hz (freq x harmonics) must lie below "
                             f"fs/2 = {fs / 2:g} Hz")
        return info

    def draw(self, keys, x, info):
        n, n_leads, _ = x.shape
        c, h = len(self.freq), self.harmonics
        applied = self._applied(keys, self.prob)
        choice = (self._uniform(keys, 1)[:, 0] * c).long().clamp_max(c - 1)
        lo, hi = self.amplitude
        ampl = (lo + (hi - lo) * self._uniform(keys, 2, n_leads)) * applied[:, None]
        onehot = torch.nn.functional.one_hot(choice, c).double()  # (n, c)
        per_h = 1.0 / torch.arange(1, h + 1, dtype=torch.float64, device=x.device)
        amplitude = ampl[:, :, None, None] * onehot[:, None, :, None] * per_h  # (n, L, c, h)
        phase = 2 * math.pi * self._uniform(keys, 3, n_leads * c * h)
        return {"amplitude": amplitude.reshape(n, n_leads, c * h),
                "phase": phase.view(n, n_leads, c * h)}

    def _basis(self, n_samples, dtype, device, info):
        freqs = tuple(f * h for f in self.freq for h in range(1, self.harmonics + 1))
        return cached_sine_basis(freqs, n_samples, float(self.step_fs(info)), dtype,
                                 torch.device(device))

    def transform(self, x, params, label, masks, info):
        basis = self._basis(x.shape[-1], x.dtype, x.device, info)
        return sinusoids(params["amplitude"], params["phase"], basis).add_(x), label, masks

    def fuse(self, plan, params, label, masks, info):
        basis = self._basis(plan.shape[-1], plan.dtype, plan.device, info)
        coef = sine_coefficients(params["amplitude"], params["phase"])
        plan.add(OpCode.SINES, [coef.to(plan.dtype), basis, torch.empty(0, dtype=torch.long),
                                torch.empty(0)])
        return label, masks


# Stopband attenuation of EMGNoise's band-pass (Kaiser design, dB) and the narrowest
# transition it accepts as a fraction of fs (caps its taps at 931).
EMG_ATTENUATION_DB = 60.0
EMG_MIN_TRANSITION = 1.0 / 256


@functools.lru_cache(maxsize=32)
def emg_taps(band: tuple[float, float], fs: float) -> np.ndarray:
    """EMGNoise's band-pass FIR for `band` (Hz) at `fs` (Hz): float64 (K,), K odd, scaled
    to unit power gain on white noise (``sum(h**2) == 1``).

    A Kaiser-window design (``scipy.signal.firwin``, numtaps and beta from
    ``scipy.signal.kaiserord`` for :data:`EMG_ATTENUATION_DB` dB) whose *stopband edges
    are the band's edges*: the transitions, of width ``w = min(band[0] / 2, (band[1] -
    band[0]) / 4)`` (the lower edge's term left out when it is 0 Hz) but at least
    ``fs / 256``, lie inside the band, so everything outside it is at least ~59 dB down
    (kaiserord's estimate undershoots 60 by a fraction of a dB) and the passband
    ``[band[0] + w, band[1] - w]`` is flat within the design's ripple (~0.1 %). For the
    default (20, 150) Hz at 500 Hz: w = 10 Hz, 183 taps, ~4e-8 of the noise power
    outside the band. An edge at 0 Hz or fs/2 is no edge (a low- or high-pass); the
    whole (0, fs/2) is white noise (one tap).

    Raises
    ------
    ValueError
        If the band is narrower than two minimal transitions (``fs / 128``).

    Examples
    --------
    >>> h = emg_taps((20.0, 150.0), 500.0)
    >>> h.shape, round(float((h ** 2).sum()), 12)
    ((183,), 1.0)
    """
    import scipy.signal as ss

    lo, hi = band
    nyq = fs / 2
    width = (hi - lo) / 4
    if lo > 0:
        width = min(width, lo / 2)
    width = max(width, fs * EMG_MIN_TRANSITION)
    if hi - lo < 2 * width:
        raise ValueError(f"EMGNoise: band {band} Hz is narrower than {2 * width:g} Hz, the two "
                         f"transitions of its filter at fs = {fs:g} Hz")
    cutoffs = ([lo + width / 2] if lo > 0 else []) + ([hi - width / 2] if hi < nyq else [])
    if not cutoffs:
        return np.ones(1)
    numtaps, beta = ss.kaiserord(EMG_ATTENUATION_DB, width / nyq)
    h = ss.firwin(numtaps | 1, cutoffs, window=("kaiser", beta), pass_zero=lo == 0, fs=fs)
    return h / np.sqrt(np.sum(h * h))


def fir_hash_noise(row_keys: Tensor, std: Tensor, taps: Tensor, n_samples: int) -> Tensor:
    """``std[..., None] * sum_k taps[k] * z[..., t + K - 1 - k]`` for t < n_samples, with z
    :func:`~fastecg.augmenters._random.hash_normal` of `row_keys` (..., 2) over
    ``n_samples + K - 1`` samples: a "valid" FIR of the noise row (every output has its
    full K samples of context), by ``torch.nn.functional.conv1d``. The fused pass's
    ``FIR_NOISE`` op computes the same inside its kernels. std (...) and taps (K,) in the
    output's dtype; rows with std 0 are zero (on the CPU not computed)."""
    out = torch.zeros(*std.shape, n_samples, dtype=taps.dtype, device=taps.device)
    return add_hash_noise(out, row_keys, std, taps)


@AUGMENTERS.register("emg_noise")
class EMGNoise(Augmenter):
    """Muscle (EMG) noise: Gaussian noise band-limited to `band` (Hz), of RMS uniform in
    `amplitude` (mV) per sample, independent per lead.

    White hash noise (:func:`~fastecg.augmenters._random.hash_normal`, ``K - 1`` samples
    longer than the signal) through the band-pass FIR of :func:`emg_taps` (K taps, a
    "valid" convolution: no edge effects), scaled to the drawn RMS: its spectrum is the
    filter's, flat inside ``[band[0] + w, band[1] - w]`` within ~0.1 %, rolling off to
    the band's edges over a transition w (10 Hz for the defaults at 500 Hz) and at least
    ~59 dB down outside the band. The fused pass computes the same FIR inside its kernel
    (the ``FIR_NOISE`` op): no noise buffer, each block of output makes its own K - 1
    extra noise samples."""

    stream = 10

    def __init__(self, fs: Optional[float] = None, band: Sequence[float] = (20.0, 150.0),
                 amplitude: Union[float, Sequence[float]] = (0.0, 0.05), prob: float = 0.5,
                 inplace: bool = False):
        super().__init__()
        self.fs = fs
        self.band = check_range(band, "EMGNoise: band", allow_scalar=False)
        if self.band[0] >= self.band[1]:
            raise ValueError(f"EMGNoise: band must have low < high, got {band!r}")
        self.amplitude = check_range(amplitude, "EMGNoise: amplitude")
        self.prob, self.inplace = check_prob(prob, "EMGNoise"), inplace

    def infer(self, info):
        fs = self.step_fs(info)
        if self.band[1] > fs / 2:
            raise ValueError(f"EMGNoise: band {self.band} Hz must lie inside (0, fs/2) = "
                             f"(0, {fs / 2:g}) Hz")
        emg_taps(self.band, float(fs))  # a band too narrow for the filter: ValueError now
        return info

    def taps(self, dtype: torch.dtype, device, info) -> Tensor:
        """The band-pass FIR (:func:`emg_taps`) at the step's fs: (K,) in `dtype`."""
        h = emg_taps(self.band, float(self.step_fs(info)))
        return torch.tensor(h, dtype=dtype, device=device)  # a copy: h is the cache's

    def draw(self, keys, x, info):
        n, n_leads, _ = x.shape
        applied = self._applied(keys, self.prob)
        lo, hi = self.amplitude
        rms = (lo + (hi - lo) * self._uniform(keys, 1)[:, 0]) * applied
        return {"rms": rms, "noise_keys": _row_keys(self, keys, 2, n_leads)}

    def _std(self, params, shape, dtype, device) -> Tensor:
        return params["rms"].to(device=device, dtype=dtype)[:, None].expand(shape[0], shape[1])

    def transform(self, x, params, label, masks, info):
        return add_hash_noise(x.clone(), params["noise_keys"],
                              self._std(params, x.shape, x.dtype, x.device),
                              self.taps(x.dtype, x.device, info)), label, masks

    def fuse(self, plan, params, label, masks, info):
        plan.add(OpCode.FIR_NOISE, [params["noise_keys"],
                                    self._std(params, plan.shape, plan.dtype, plan.device),
                                    self.taps(plan.dtype, plan.device, info)])
        return label, masks


@AUGMENTERS.register("gaussian_noise")
class GaussianNoise(Augmenter):
    """White Gaussian noise at a signal-to-noise ratio `snr_db` (a number, or a range drawn
    uniformly per sample) relative to each lead's mean power."""

    stream = 11

    def __init__(self, snr_db: Union[float, Sequence[float]] = (10.0, 30.0), prob: float = 0.5,
                 inplace: bool = False):
        super().__init__()
        self.snr_db = check_range(snr_db, "GaussianNoise: snr_db", -math.inf)
        self.prob, self.inplace = check_prob(prob, "GaussianNoise"), inplace

    def draw(self, keys, x, info):
        n, n_leads, _ = x.shape
        applied = self._applied(keys, self.prob)
        lo, hi = self.snr_db
        snr = lo + (hi - lo) * self._uniform(keys, 1)[:, 0]
        power = lead_power(x)  # (n, L)
        std = torch.sqrt(power * 10.0 ** (-snr[:, None] / 10)) * applied[:, None]
        return {"std": std, "noise_keys": _row_keys(self, keys, 2, n_leads)}

    def transform(self, x, params, label, masks, info):
        return add_hash_noise(x.clone(), params["noise_keys"], params["std"]), label, masks

    def fuse(self, plan, params, label, masks, info):
        plan.add(OpCode.NOISE, [params["noise_keys"], params["std"].to(plan.dtype)])
        return label, masks


@AUGMENTERS.register("amplitude_scale")
class AmplitudeScale(Augmenter):
    """Multiply a chosen sample (each lead with ``per_channel``) by a gain uniform in
    `scale`."""

    stream = 12

    def __init__(self, scale: Union[float, Sequence[float]] = (0.8, 1.2),
                 per_channel: bool = False, prob: float = 0.5, inplace: bool = False):
        super().__init__()
        self.scale = check_range(scale, "AmplitudeScale: scale")
        self.per_channel, self.inplace = bool(per_channel), inplace
        self.prob = check_prob(prob, "AmplitudeScale")

    def draw(self, keys, x, info):
        applied = self._applied(keys, self.prob)
        lo, hi = self.scale
        gain = lo + (hi - lo) * self._uniform(keys, 1, x.shape[1] if self.per_channel else 1)
        return {"gain": torch.where(applied[:, None], gain, 1.0)}

    def transform(self, x, params, label, masks, info):
        return x * params["gain"].to(x.dtype)[..., None], label, masks

    def fuse(self, plan, params, label, masks, info):
        plan.affine(params["gain"])
        return label, masks


def _shift_gather(t: Tensor, offset: Tensor, n_out: int, dim: int) -> tuple[Tensor, Tensor]:
    """t's samples ``offset + arange(n_out)`` along `dim` (per row of dim 0), zero outside."""
    n_in = t.shape[dim]
    pos = offset[:, None] + torch.arange(n_out, device=t.device)
    valid = (pos >= 0) & (pos < n_in)
    pos = pos.clamp(0, n_in - 1)
    shape = [1] * t.dim()
    shape[0], shape[dim] = t.shape[0], n_out
    idx = pos.view(shape).expand(*[n_out if d == dim else s for d, s in enumerate(t.shape)])
    out = t.gather(dim, idx)
    keep = valid.view(shape)
    return (out & keep if out.dtype == torch.bool else out * keep.to(out.dtype)), valid


@AUGMENTERS.register("time_shift")
class TimeShift(Augmenter):
    """Shift a chosen sample (all leads, masks alike) by a whole number of samples uniform
    in ``[-max_shift_s, max_shift_s] * fs``; the samples shifted in are zero."""

    stream = 13

    def __init__(self, fs: Optional[float] = None, max_shift_s: float = 0.5, prob: float = 0.5,
                 inplace: bool = False):
        super().__init__()
        if isinstance(max_shift_s, bool) or not isinstance(max_shift_s, numbers.Real) or \
                max_shift_s < 0:
            raise ValueError(f"TimeShift: max_shift_s must be a number >= 0, got {max_shift_s!r}")
        self.fs, self.max_shift_s, self.inplace = fs, float(max_shift_s), inplace
        self.prob = check_prob(prob, "TimeShift")

    def draw(self, keys, x, info):
        s = round(self.max_shift_s * self.step_fs(info))
        applied = self._applied(keys, self.prob)
        shift = (self._uniform(keys, 1)[:, 0] * (2 * s + 1)).long().clamp_max(2 * s) - s
        return {"shift": shift * applied}

    def transform(self, x, params, label, masks, info):
        offset = -params["shift"].to(x.device)
        out, _ = _shift_gather(x, offset, x.shape[-1], 2)
        return out, label, [_shift_gather(m, offset, m.shape[1], 1)[0] for m in masks]

    def fuse(self, plan, params, label, masks, info):
        offset = -params["shift"].to(plan.device)
        n_samples = plan.shape[-1]
        plan.warp(offset, torch.tensor(n_samples), None, n_samples)
        return label, [_shift_gather(m, offset, m.shape[1], 1)[0] for m in masks]


@AUGMENTERS.register("random_crop")
class RandomCrop(Augmenter):
    """Crop every sample to `length` samples starting at a uniform position (chosen
    samples; the others are cropped at the centre, so the batch keeps one shape). Masks
    are cropped alike."""

    stream = 14

    def __init__(self, length: int, prob: float = 1.0, inplace: bool = False):
        super().__init__()
        self.length = check_int(length, "RandomCrop: length", 1)
        self.inplace = inplace
        self.prob = check_prob(prob, "RandomCrop")

    def infer(self, info):
        if info.n_samples is not None and self.length > info.n_samples:
            raise ValueError(f"RandomCrop: length {self.length} is longer than the signal "
                             f"({info.n_samples} samples)")
        return info._replace(n_samples=self.length)

    def draw(self, keys, x, info):
        room = x.shape[-1] - self.length
        applied = self._applied(keys, self.prob)
        start = (self._uniform(keys, 1)[:, 0] * (room + 1)).long().clamp_max(room)
        return {"start": torch.where(applied, start, room // 2)}

    def transform(self, x, params, label, masks, info):
        start = params["start"].to(x.device)
        out, _ = _shift_gather(x, start, self.length, 2)
        return out, label, [_shift_gather(m, start, self.length, 1)[0] for m in masks]

    def fuse(self, plan, params, label, masks, info):
        start = params["start"].to(plan.device)
        plan.warp(start, torch.tensor(plan.shape[-1]), None, self.length)
        return label, [_shift_gather(m, start, self.length, 1)[0] for m in masks]


def _lead_positions(names: Optional[tuple], n_leads: int, wanted: Sequence[str],
                    what: str) -> list[int]:
    """Positions of `wanted` leads: by name (distinct: a name given twice would leave
    which lead is meant to the first match), or the standard 12-lead order when the
    signal has 12 leads and no names."""
    if names is None:
        if n_leads != 12:
            raise ValueError(f"{what} needs the standard 12 leads or lead_names; the signal has "
                             f"{n_leads} leads and no lead names")
        names = STANDARD_LEADS
    names = check_lead_names(names, f"{what}: lead_names")
    missing = [w for w in wanted if w not in names]
    if missing:
        raise ValueError(f"{what}: leads {missing} are not among the signal's leads "
                         f"{list(names)}")
    return [list(names).index(w) for w in wanted]


@AUGMENTERS.register("random_leads_mask")
class RandomLeadsMask(Augmenter):
    """Zero each lead of a chosen sample with probability `mask_prob`, keeping at least
    `keep_at_least` leads (those with the largest draws)."""

    stream = 15

    def __init__(self, mask_prob: float = 0.5, keep_at_least: int = 1, prob: float = 1.0,
                 inplace: bool = False):
        super().__init__()
        self.mask_prob = check_prob(mask_prob, "RandomLeadsMask: mask_prob")
        self.keep_at_least = check_int(keep_at_least, "RandomLeadsMask: keep_at_least", 0)
        self.inplace = inplace
        self.prob = check_prob(prob, "RandomLeadsMask")

    def infer(self, info):
        if info.n_leads is not None and self.keep_at_least > info.n_leads:
            raise ValueError(f"RandomLeadsMask: keep_at_least={self.keep_at_least} is more than "
                             f"the signal's {info.n_leads} leads")
        return info

    def draw(self, keys, x, info):
        applied = self._applied(keys, self.prob)
        u = self._uniform(keys, 1, x.shape[1])
        masked = (u < self.mask_prob) & applied[:, None]
        if self.keep_at_least:
            kth = torch.topk(u, self.keep_at_least, dim=1).values[:, -1:]
            masked &= u < kth
        return {"keep": ~masked}

    def transform(self, x, params, label, masks, info):
        return x * params["keep"].to(device=x.device, dtype=x.dtype)[..., None], label, masks

    def fuse(self, plan, params, label, masks, info):
        plan.affine(params["keep"])
        return label, masks


@AUGMENTERS.register("reduced_lead_set")
class ReducedLeadSet(Augmenter):
    """The PhysioNet/CinC 2021 reduced lead sets (12, 6, 4, 3 or 2 leads).

    ``mode="zero"``: each chosen sample keeps the leads of one set drawn from `leads`,
    the others are zeroed. ``mode="drop"``: `leads` names one set, and the output has
    only its leads, in its order (the lead names passed on change with them), for every
    sample (`prob` must be 1). Needs the standard 12-lead order or the signal's lead
    names.
    """

    stream = 16

    def __init__(self, leads: Union[int, Sequence[int]] = (12, 6, 4, 3, 2), mode: str = "zero",
                 prob: float = 1.0, inplace: bool = False):
        super().__init__()
        try:
            sets = (leads,) if isinstance(leads, numbers.Integral) else tuple(leads)
        except TypeError:
            sets = ()
        if not sets or any(isinstance(s, bool) or not isinstance(s, numbers.Integral)
                           or s not in REDUCED_LEAD_SETS for s in sets):
            raise ValueError(f"ReducedLeadSet: leads must be among {sorted(REDUCED_LEAD_SETS)}, "
                             f"got {leads!r}")
        sets = tuple(int(s) for s in sets)
        if mode not in ("zero", "drop"):
            raise ValueError(f"ReducedLeadSet: mode must be 'zero' or 'drop', got {mode!r}")
        if mode == "drop" and len(sets) != 1:
            raise ValueError("ReducedLeadSet: mode='drop' needs one lead set (the output shape "
                             f"must be the same for every sample), got {leads!r}")
        self.leads, self.mode, self.inplace = sets, mode, inplace
        self.prob = check_prob(prob, "ReducedLeadSet")
        if mode == "drop" and self.prob != 1:
            raise ValueError(f"ReducedLeadSet: mode='drop' reduces every sample (the batch "
                             f"keeps one lead count), so prob must be 1, got {prob!r}")

    def infer(self, info):
        if info.n_leads is None:
            return info
        for s in self.leads:
            _lead_positions(info.lead_names, info.n_leads, REDUCED_LEAD_SETS[s], "ReducedLeadSet")
        if self.mode == "drop":
            wanted = REDUCED_LEAD_SETS[self.leads[0]]
            return info._replace(n_leads=len(wanted), lead_names=tuple(wanted))
        return info

    def _keep_table(self, info, device) -> Tensor:
        table = torch.zeros(len(self.leads), info.n_leads, dtype=torch.bool, device=device)
        for i, s in enumerate(self.leads):
            table[i, _lead_positions(info.lead_names, info.n_leads, REDUCED_LEAD_SETS[s],
                                     "ReducedLeadSet")] = True
        return table

    def draw(self, keys, x, info):
        applied = self._applied(keys, self.prob)
        choice = (self._uniform(keys, 1)[:, 0] * len(self.leads)).long().clamp_max(
            len(self.leads) - 1)
        keep = self._keep_table(info, x.device)[choice] | ~applied[:, None]
        return {"keep": keep}

    def transform(self, x, params, label, masks, info):
        if self.mode == "drop":
            pos = _lead_positions(info.lead_names, info.n_leads,
                                  REDUCED_LEAD_SETS[self.leads[0]], "ReducedLeadSet")
            return x[:, pos], label, masks
        return x * params["keep"].to(device=x.device, dtype=x.dtype)[..., None], label, masks

    def fuse(self, plan, params, label, masks, info):
        if self.mode == "drop":
            pos = _lead_positions(info.lead_names, info.n_leads,
                                  REDUCED_LEAD_SETS[self.leads[0]], "ReducedLeadSet")
            select = torch.eye(plan.shape[1], dtype=torch.float64, device=plan.device)[pos]
            plan.add(OpCode.LEAD_MIX, [select.expand(plan.shape[0], -1, -1)])
        else:
            plan.affine(params["keep"])
        return label, masks


def mix_leads(matrix: Tensor, x: Tensor) -> Tensor:
    """``matrix @ x`` (matrix (n, L_out, L_in), x (n, L_in, T)) where a weight of exactly
    0 does not read its lead, as in the fused kernels: a NaN or Inf in a lead that an
    output leaves out (lead III in a VCG rotation, every other lead in an identity) does
    not reach it, where a plain matmul gives ``0 * NaN = NaN``. Non-finite values that
    are read give IEEE's sum: NaN for a NaN or for infinities of both signs, else the
    infinity."""
    m = matrix.to(x.dtype)
    # Nothing to keep out where the sum is finite (a NaN or Inf makes it NaN or Inf; an
    # overflow only takes the exact route): on the CPU the check is one read, no sync.
    if x.device.type == "cpu" and not torch.compiler.is_compiling() and \
            bool(torch.isfinite(x.sum())):
        return m @ x
    y = m @ torch.where(torch.isfinite(x), x, 0)

    def reach(weights: Tensor, hit: Tensor) -> Tensor:  # outputs a non-finite value reaches
        return (weights.to(x.dtype) @ hit.to(x.dtype)) > 0

    up = reach(m > 0, x == math.inf) | reach(m < 0, x == -math.inf)
    down = reach(m > 0, x == -math.inf) | reach(m < 0, x == math.inf)
    y = torch.where(up, math.inf, torch.where(down, -math.inf, y))
    return torch.where(reach(m != 0, x.isnan()) | (up & down), math.nan, y)


def rotation_matrices(angles: Tensor) -> Tensor:
    """(n, 3) angles in radians about x, y, z -> (n, 3, 3) ``Rz @ Ry @ Rx``."""
    c, s = torch.cos(angles), torch.sin(angles)
    one, zero = torch.ones_like(c[:, 0]), torch.zeros_like(c[:, 0])

    def mat(*rows):
        return torch.stack([torch.stack(r, -1) for r in rows], -2)

    rx = mat((one, zero, zero), (zero, c[:, 0], -s[:, 0]), (zero, s[:, 0], c[:, 0]))
    ry = mat((c[:, 1], zero, s[:, 1]), (zero, one, zero), (-s[:, 1], zero, c[:, 1]))
    rz = mat((c[:, 2], -s[:, 2], zero), (s[:, 2], c[:, 2], zero), (zero, zero, one))
    return rz @ ry @ rx


@AUGMENTERS.register("vcg_rotation")
class VCGRotation(Augmenter):
    """3KG's spatial augmentation (Gopal et al. 2021): the 12 leads to a vectorcardiogram
    by the inverse Dower matrix (from I, II, V1-V6), a per-sample rotation (angles uniform
    in ``[-max_angle_deg, max_angle_deg]`` about each axis) and scaling (uniform in
    `scale`), and back with Dower's matrix, III and the augmented leads from I and II
    (Einthoven, Goldberger). Applied as one (12, 12) lead-mixing matrix per sample.

    Needs the 12 standard leads: in the standard order, or named by `lead_names`.
    """

    stream = 17

    def __init__(self, max_angle_deg: float = 45.0,
                 scale: Union[float, Sequence[float]] = (1.0, 1.5),
                 prob: float = 0.5, inplace: bool = False):
        super().__init__()
        if isinstance(max_angle_deg, bool) or not isinstance(max_angle_deg, numbers.Real) or \
                not 0 <= max_angle_deg <= 180:
            raise ValueError(f"VCGRotation: max_angle_deg must be in [0, 180], got "
                             f"{max_angle_deg!r}")
        self.max_angle_deg = float(max_angle_deg)
        self.scale = check_range(scale, "VCGRotation: scale")
        self.prob, self.inplace = check_prob(prob, "VCGRotation"), inplace

    def infer(self, info):
        if info.n_leads is not None:
            _lead_positions(info.lead_names, info.n_leads, STANDARD_LEADS, "VCGRotation")
            if info.n_leads != 12:
                raise ValueError(f"VCGRotation needs exactly the 12 standard leads, got "
                                 f"{info.n_leads}")
        return info

    @staticmethod
    def standard_matrices(device=None) -> tuple[Tensor, Tensor]:
        """(3, 12) leads -> X, Y, Z and (12, 3) back, in the standard lead order."""
        inv = torch.tensor(INVERSE_DOWER, dtype=torch.float64, device=device)
        fwd8 = torch.tensor(DOWER, dtype=torch.float64, device=device)
        to_vcg = torch.zeros(3, 12, dtype=torch.float64, device=device)
        to_vcg[:, 6:] = inv[:, :6]
        to_vcg[:, :2] = inv[:, 6:]
        i, ii = fwd8[6], fwd8[7]
        back = torch.stack([i, ii, ii - i, -(i + ii) / 2, i - ii / 2, ii - i / 2, *fwd8[:6]])
        return to_vcg, back

    def draw(self, keys, x, info):
        n = x.shape[0]
        applied = self._applied(keys, self.prob)
        u = self._uniform(keys, 1, 4)
        limit = math.radians(self.max_angle_deg)
        angles = (2 * u[:, :3] - 1) * limit
        lo, hi = self.scale
        scale = lo + (hi - lo) * u[:, 3]
        rotation = rotation_matrices(angles)
        to_vcg, back = self.standard_matrices(x.device)
        mixing = back @ (scale[:, None, None] * rotation) @ to_vcg  # (n, 12, 12)
        pos = _lead_positions(info.lead_names, info.n_leads, STANDARD_LEADS, "VCGRotation")
        perm = torch.tensor(pos, device=x.device)
        full = torch.zeros(n, 12, 12, dtype=torch.float64, device=x.device)
        full[:, perm[:, None], perm[None, :]] = mixing
        eye = torch.eye(12, dtype=torch.float64, device=x.device).expand(n, 12, 12)
        return {"matrix": torch.where(applied[:, None, None], full, eye), "angles": angles,
                "scale": scale, "rotation": rotation, "applied": applied}

    def transform(self, x, params, label, masks, info):
        return mix_leads(params["matrix"], x), label, masks

    def fuse(self, plan, params, label, masks, info):
        plan.add(OpCode.LEAD_MIX, [params["matrix"].to(plan.device, torch.float64)])
        return label, masks
