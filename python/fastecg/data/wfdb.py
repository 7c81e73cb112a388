"""Reader for PhysioNet/CinC 2020-2021 records (WFDB header + MATLAB v4 ``.mat``)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np


def load_cinc_record(path: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Load a CinC record given its path with or without extension.

    Returns
    -------
    signal : ndarray, shape (n_leads, n_samples), float32
        In mV: ``(digital - baseline) / gain`` per lead, as the header says.
    header : dict
        ``fs`` (Hz), ``lead_names``, ``gains``, ``baselines``, and the comment fields
        (``Age``, ``Sex``, ``Dx``, ...) as strings.
    """
    from scipy.io import loadmat

    stem = os.path.splitext(path)[0]
    with open(stem + ".hea", encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip()]
    record = lines[0].split()
    n_leads, fs, n_samples = int(record[1]), float(record[2]), int(record[3])
    gains, baselines, leads = [], [], []
    for line in lines[1:1 + n_leads]:
        fields = line.split()
        gain_field = fields[2].split("/")[0]          # e.g. "1000.0(0)" -> gain, baseline
        gain, _, baseline = gain_field.partition("(")
        gains.append(float(gain))
        baselines.append(float(baseline.rstrip(")")) if baseline else 0.0)
        leads.append(fields[-1])
    header: dict[str, Any] = {"fs": fs, "lead_names": leads, "gains": gains,
                              "baselines": baselines, "n_samples": n_samples}
    for line in lines[1 + n_leads:]:
        key, _, value = line.lstrip("#").partition(":")
        header[key.strip()] = value.strip()
    digital = loadmat(stem + ".mat")["val"].astype(np.float64)
    if digital.shape != (n_leads, n_samples):
        raise ValueError(f"{stem}.mat holds shape {digital.shape}, header says "
                         f"{(n_leads, n_samples)}")
    signal = (digital - np.asarray(baselines)[:, None]) / np.asarray(gains)[:, None]
    return signal.astype(np.float32), header
