"""Deterministic synthetic 12-lead ECG: the default data of demos, tests and benchmarks.

Each beat is a sum of Gaussian P, Q, R, S, T waves (McSharry et al., 2003, in its
simplest form) with per-lead amplitudes, plus baseline wander, 50 Hz mains and
white noise, so that bandpass and baseline removal have something real to remove.
"""

from __future__ import annotations

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
