"""Deterministic synthetic 12-lead ECG: the default data of demos, tests and benchmarks.

Each beat is a sum of Gaussian P, Q, R, S, T waves (McSharry et al., 2003, in its
simplest form) with per-lead amplitudes, plus baseline wander, 50 Hz mains and
white noise, so that bandpass and baseline removal have something real to remove.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

# (centre in fractions of the RR interval, width in s, amplitude in mV) of P, Q, R, S, T.
_WAVES = np.array([[-0.20, 0.025, 0.12], [-0.03, 0.010, -0.10], [0.0, 0.012, 1.0],
                   [0.03, 0.010, -0.25], [0.30, 0.060, 0.30]])


def synthetic_ecg(n_records: int = 8, n_leads: int = 12, fs: float = 500.0,
                  duration_s: float = 10.0, seed: int = 0, noise_mv: float = 0.02,
                  wander_mv: float = 0.3, mains_mv: float = 0.05,
                  dtype=np.float32) -> np.ndarray:
    """Synthetic ECG, shape ``(n_records, n_leads, round(fs * duration_s))``, in mV.

    Heart rates are drawn per record in 50-110 bpm with 3 % beat-to-beat variability;
    leads scale and flip the waves; wander is a sum of sinusoids below 0.5 Hz.
    The same ``seed`` gives the same array on every machine.

    Examples
    --------
    >>> from fastecg.data import synthetic_ecg
    >>> x = synthetic_ecg(2, duration_s=2.0)          # 2 records, 12 leads, 2 s at 500 Hz
    >>> x.shape, x.dtype
    ((2, 12, 1000), dtype('float32'))
    >>> bool((synthetic_ecg(2, duration_s=2.0) == x).all())   # same seed, same array
    True
    """
    if n_records < 0 or n_leads < 1 or fs <= 0 or duration_s <= 0:
        raise ValueError("need n_records >= 0, n_leads >= 1, fs > 0 and duration_s > 0")
    rng = np.random.default_rng(seed)
    n = int(round(fs * duration_s))
    t = np.arange(n) / fs
    out = np.empty((n_records, n_leads, n), dtype=np.float64)
    for r in range(n_records):
        out[r] = _record(rng, t, n_leads, duration_s)
    out += noise_mv * rng.standard_normal(out.shape)
    phase = rng.uniform(0, 2 * np.pi, size=(n_records, n_leads, 1))
    out += mains_mv * np.sin(2 * np.pi * 50.0 * t + phase)
    for _ in range(3):
        freq = rng.uniform(0.05, 0.5, size=(n_records, 1, 1))
        amp = wander_mv * rng.uniform(0.3, 1.0, size=(n_records, n_leads, 1)) / 3
        out += amp * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi, (n_records, 1, 1)))
    return out.astype(dtype)


def _record(rng: np.random.Generator, t: np.ndarray, n_leads: int, duration_s: float):
    rr = 60.0 / rng.uniform(50, 110)
    beats = np.cumsum(rr * (1 + 0.03 * rng.standard_normal(int(duration_s / rr) + 3)))
    beats -= rng.uniform(0, rr)
    gains = rng.uniform(0.3, 1.5, size=(n_leads, len(_WAVES))) * rng.choice(
        [-1.0, 1.0], size=(n_leads, 1), p=[0.2, 0.8])
    beat_wave = np.zeros((len(_WAVES), t.size))
    for k, (centre, width, amp) in enumerate(_WAVES):
        for b in beats:
            beat_wave[k] += amp * np.exp(-0.5 * ((t - b - centre * rr) / width) ** 2)
    return gains @ beat_wave


# ---- labelled records -------------------------------------------------------------------

SYNTHETIC_CLASSES = ("NSR", "SB", "STach", "AF", "BBB")
"""Rhythm and conduction classes of :func:`synthetic_record`: normal sinus rhythm (60-100
bpm), sinus bradycardia (40-58), sinus tachycardia (105-150), atrial fibrillation
(irregular RR, no P wave, 4-9 Hz fibrillatory waves) and a bundle-branch-block-like wide,
notched QRS (over twice the normal complex's width)."""

WAVE_NAMES = ("none", "P", "QRS", "T")
"""Values of the per-sample wave labels of :func:`synthetic_record`."""

_HEART_RATE_BPM = {"NSR": (60.0, 100.0), "SB": (40.0, 58.0), "STach": (105.0, 150.0),
                   "AF": (70.0, 130.0), "BBB": (60.0, 100.0)}
# (centre in s from the R peak, width sigma in s, amplitude in mV); the T wave's centre
# is scaled by sqrt(RR) (Bazett) so QT shortens as the rate rises.
_P_WAVE = (-0.16, 0.020, 0.12)
_QRS = ((-0.025, 0.008, -0.10), (0.0, 0.010, 1.0), (0.025, 0.008, -0.25))
_QRS_WIDE = ((-0.05, 0.016, -0.10), (0.0, 0.026, 0.9), (0.06, 0.022, 0.6),
             (0.085, 0.014, -0.2))
_T_WAVE = (0.28, 0.050, 0.30)
_EDGE_SIGMAS = 2.5           # a wave's boundaries: centre -/+ 2.5 sigma (99 % of its area)


def synthetic_record(index: int, fs: float = 500.0, seconds: float = 10.0,
                     classes: Sequence[str] = SYNTHETIC_CLASSES, seed: int = 0,
                     records_per_patient: int = 2, n_leads: int = 12,
                     noise: bool = True) -> dict:
    """Record `index` of a labelled synthetic ECG data set.

    Deterministic per ``(seed, index)``: a record does not depend on which others were
    drawn, so item `i` is the same whatever the batch, worker or order. Records
    ``records_per_patient * p`` to ``records_per_patient * (p + 1) - 1`` belong to
    synthetic patient `p`, who keeps one class and one lead morphology across them;
    classes go round-robin over patients, so they are balanced.

    Returns
    -------
    dict
        ``signal`` float32 ``(n_leads, round(fs * seconds))`` in mV; ``label`` (index in
        `classes`); ``class_name``; ``patient_id`` (int); ``waves`` int8 per sample
        (:data:`WAVE_NAMES`: 0 none, 1 P, 2 QRS, 3 T, from the clean beats' boundaries);
        ``r_peaks`` (sample indices); ``heart_rate_bpm``.

    Examples
    --------
    >>> from fastecg.data import synthetic_record
    >>> r = synthetic_record(0, seconds=2.0)
    >>> sorted(r)
    ['class_name', 'heart_rate_bpm', 'label', 'patient_id', 'r_peaks', 'signal', 'waves']
    >>> r["signal"].shape, r["waves"].shape
    ((12, 1000), (1000,))
    """
    unknown = [c for c in classes if c not in _HEART_RATE_BPM]
    if unknown or not classes:
        raise ValueError(f"synthetic_record: unknown classes {unknown}; choose from "
                         f"{list(SYNTHETIC_CLASSES)}")
    if index < 0 or records_per_patient < 1 or fs <= 0 or seconds <= 0 or n_leads < 1:
        raise ValueError("synthetic_record: need index >= 0, records_per_patient >= 1, "
                         "fs > 0, seconds > 0 and n_leads >= 1")
    patient = index // records_per_patient
    label = patient % len(classes)
    name = classes[label]
    patient_rng = np.random.default_rng([seed, patient, 0])
    rng = np.random.default_rng([seed, index, 1])
    n = int(round(fs * seconds))
    t = np.arange(n) / fs

    low, high = _HEART_RATE_BPM[name]
    rate = patient_rng.uniform(low, high) * rng.uniform(0.97, 1.03)
    rate = min(max(rate, low), high)
    rr = 60.0 / rate
    n_beats = int(seconds / rr * 1.6) + 4
    if name == "AF":
        # Irregularly irregular: independent RR intervals, +-40 % around the mean.
        intervals = rr * rng.uniform(0.6, 1.4, n_beats)
    else:
        intervals = rr * (1 + 0.02 * rng.standard_normal(n_beats))
    beats = np.cumsum(intervals) - rng.uniform(0.3, 1.0) * rr
    beats = beats[beats < seconds + 0.5]
    qrs = _QRS_WIDE if name == "BBB" else _QRS
    waves = list(qrs) + ([] if name == "AF" else [_P_WAVE])
    # Lead gains: lead II (index 1) upright for every patient, so its R peaks are found.
    gains = patient_rng.uniform(0.5, 1.5, size=(n_leads, 1)) * patient_rng.choice(
        [-1.0, 1.0], size=(n_leads, 1), p=[0.25, 0.75])
    if n_leads > 1:
        gains[1] = abs(gains[1]) + 0.5
    beat_rr = np.diff(np.concatenate([[beats[0] - rr], beats]))
    shape = np.zeros(n)
    labels = np.zeros(n, dtype=np.int8)
    for centre, width, amp in waves:
        shape += _wave_sum(t, beats + centre, width, amp)
    t_centres = beats + _T_WAVE[0] * np.sqrt(np.minimum(beat_rr, 1.5 * rr))
    t_wave = _wave_sum(t, t_centres, _T_WAVE[1], _T_WAVE[2])
    _mark(labels, t, t_centres - _EDGE_SIGMAS * _T_WAVE[1],
          t_centres + _EDGE_SIGMAS * _T_WAVE[1], 3)
    if name != "AF":
        p_c, p_w = _P_WAVE[0], _P_WAVE[1]
        _mark(labels, t, beats + p_c - _EDGE_SIGMAS * p_w, beats + p_c + _EDGE_SIGMAS * p_w, 1)
    qrs_on = min(c - _EDGE_SIGMAS * w for c, w, _ in qrs)
    qrs_off = max(c + _EDGE_SIGMAS * w for c, w, _ in qrs)
    _mark(labels, t, beats + qrs_on, beats + qrs_off, 2)
    # T waves have their own per-lead gain (discordant T in some leads, as in real ECG).
    t_gains = gains * patient_rng.uniform(0.5, 1.2, size=(n_leads, 1))
    sig = gains * shape + t_gains * t_wave
    if name == "AF":
        f_wave = np.zeros(n)
        for _ in range(3):
            f_wave += np.sin(2 * np.pi * rng.uniform(4.0, 9.0) * t + rng.uniform(0, 2 * np.pi))
        sig += 0.03 * rng.uniform(0.5, 1.5, size=(n_leads, 1)) * f_wave
    if noise:
        sig += _noise(rng, t, n_leads)
    r_peaks = np.round(beats[(beats >= 0) & (beats < seconds)] * fs).astype(np.int64)
    return {"signal": sig.astype(np.float32), "label": label, "class_name": name,
            "patient_id": patient, "waves": labels, "r_peaks": r_peaks[r_peaks < n],
            "heart_rate_bpm": float(60.0 / np.mean(intervals))}


def _wave_sum(t: np.ndarray, centres: np.ndarray, width: float, amp: float) -> np.ndarray:
    # Only beats within 6 widths of a sample matter; summing over all beats at once
    # keeps it vectorised (a few dozen beats per record).
    return amp * np.exp(-0.5 * ((t[None, :] - centres[:, None]) / width) ** 2).sum(0)


def _mark(labels: np.ndarray, t: np.ndarray, starts: np.ndarray, ends: np.ndarray,
          value: int) -> None:
    fs = 1.0 / (t[1] - t[0]) if t.size > 1 else 1.0
    for start, end in zip(starts, ends):
        lo, hi = max(int(np.ceil(start * fs)), 0), min(int(np.floor(end * fs)) + 1, t.size)
        if lo < hi:
            labels[lo:hi] = value


def _noise(rng: np.random.Generator, t: np.ndarray, n_leads: int) -> np.ndarray:
    """Baseline wander (< 0.5 Hz), 50 or 60 Hz powerline, EMG bursts and white noise."""
    n = t.size
    out = 0.01 * rng.standard_normal((n_leads, n))
    for _ in range(3):
        out += (0.1 * rng.uniform(0.3, 1.0, (n_leads, 1))
                * np.sin(2 * np.pi * rng.uniform(0.05, 0.5) * t + rng.uniform(0, 2 * np.pi)))
    mains_hz = rng.choice([50.0, 60.0])
    out += 0.03 * rng.uniform(0, 1, (n_leads, 1)) * np.sin(
        2 * np.pi * mains_hz * t + rng.uniform(0, 2 * np.pi, (n_leads, 1)))
    # EMG: broadband noise switched on for a random stretch (muscle tremor comes and goes).
    start = rng.uniform(0, t[-1] if n else 0)
    burst = (t >= start) & (t < start + rng.uniform(0.5, 2.0))
    out += 0.04 * rng.standard_normal((n_leads, n)) * burst
    return out
