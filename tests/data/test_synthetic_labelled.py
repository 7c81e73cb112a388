"""The labelled synthetic ECG: classes separable by simple features, determinism per
seed and index, wave boundaries, patients."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch

from fastecg.data import SYNTHETIC_CLASSES, synthetic_record


def _rr_irregularity(sig: np.ndarray, fs: float) -> float:
    """Coefficient of variation of the RR intervals of lead II (R peaks found in the
    band-passed signal, as a simple detector would)."""
    sos = scipy.signal.butter(2, [5.0, 30.0], btype="bandpass", fs=fs, output="sos")
    lead = scipy.signal.sosfiltfilt(sos, sig[1].astype(np.float64))
    peaks, _ = scipy.signal.find_peaks(lead, height=0.4 * lead.max(), distance=int(0.25 * fs))
    rr = np.diff(peaks) / fs
    return float(rr.std() / rr.mean())


def _qrs_width_s(sig: np.ndarray, fs: float, r_peaks: np.ndarray) -> float:
    """Median width of lead II's QRS: the span within 80 ms of each R peak where
    |signal - local baseline| exceeds 15 % of the R amplitude (80 ms keeps the P wave
    and the previous T wave out, even at 150 bpm)."""
    lead = sig[1].astype(np.float64)
    widths = []
    for r in r_peaks:
        lo, hi = r - int(0.08 * fs), r + int(0.08 * fs)
        if lo < 0 or hi > lead.size:
            continue
        seg = lead[lo:hi] - np.median(lead[max(lo - int(0.1 * fs), 0):lo])
        above = np.flatnonzero(np.abs(seg) > 0.15 * abs(seg[r - lo]))
        widths.append((above[-1] - above[0]) / fs)
    return float(np.median(widths))


@pytest.fixture(scope="module")
def records():
    return [synthetic_record(i, seed=5, records_per_patient=1) for i in range(30)]


def test_af_is_irregular_and_bbb_is_wide(records):
    fs = 500.0
    irregular = {c: [] for c in SYNTHETIC_CLASSES}
    width = {c: [] for c in SYNTHETIC_CLASSES}
    for rec in records:
        irregular[rec["class_name"]].append(_rr_irregularity(rec["signal"], fs))
        width[rec["class_name"]].append(_qrs_width_s(rec["signal"], fs, rec["r_peaks"]))
    others = [v for c in SYNTHETIC_CLASSES if c != "AF" for v in irregular[c]]
    assert min(irregular["AF"]) > 2 * max(others), irregular
    narrow = [v for c in SYNTHETIC_CLASSES if c != "BBB" for v in width[c]]
    assert min(width["BBB"]) > 1.5 * max(narrow), width


def test_heart_rates_and_waves_match_the_class(records):
    for rec in records:
        name, rate = rec["class_name"], rec["heart_rate_bpm"]
        if name == "SB":
            assert rate < 60
        elif name == "STach":
            assert rate > 100
        elif name in ("NSR", "BBB"):
            assert 55 <= rate <= 105
        waves = rec["waves"]
        assert waves.shape == (5000,) and set(np.unique(waves)) <= {0, 1, 2, 3}
        assert (1 in waves) == (name != "AF")  # no P waves in AF
        # Every R peak lies inside a QRS segment.
        assert (waves[rec["r_peaks"]] == 2).all()


def test_deterministic_per_seed_and_index():
    a = synthetic_record(7, seed=1)
    b = synthetic_record(7, seed=1)
    np.testing.assert_array_equal(a["signal"], b["signal"])
    assert not np.array_equal(a["signal"], synthetic_record(7, seed=2)["signal"])
    from fastecg.data import SyntheticECGDataset

    ds = SyntheticECGDataset(12, seed=1, records_per_patient=2)
    loader = torch.utils.data.DataLoader(ds, batch_size=5, num_workers=0)
    batched = torch.cat([x for x, _ in loader])
    torch.testing.assert_close(batched[7], torch.from_numpy(a["signal"]), rtol=0, atol=0)
    meta = ds.metadata
    assert meta["patient_id"].iat[6] == meta["patient_id"].iat[7] != meta["patient_id"].iat[8]
    assert str(meta["patient_id"].dtype) == "str" and meta["label"].dtype == np.int64
    x, y, waves = SyntheticECGDataset(2, return_waves=True)[1]
    assert x.shape == (12, 5000) and y.dtype == torch.int64 and waves.shape == (5000,)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown classes"):
        synthetic_record(0, classes=("NSR", "VT"))
    with pytest.raises(ValueError):
        synthetic_record(-1)


def test_waves_follow_the_transforms():
    """With transforms that resample, the wave labels are on the new grid: each sample
    labelled as the nearest earlier sample of the record."""
    from fastecg.data import SyntheticECGDataset
    from fastecg.preprocessors import PreprocManager

    plain = SyntheticECGDataset(2, seconds=2.0, return_waves=True)
    down = SyntheticECGDataset(2, seconds=2.0, return_waves=True,
                               transforms=PreprocManager({"name": "resample", "dst_fs": 250.0}))
    sig, _, waves = down[1]
    assert sig.shape == (12, 500) and waves.shape == (500,)
    torch.testing.assert_close(waves, plain[1][2][::2], rtol=0, atol=0)
    with pytest.raises(ValueError, match="waves cannot follow a crop_or_pad"):
        SyntheticECGDataset(2, return_waves=True,
                            transforms=PreprocManager({"name": "crop_or_pad", "length": 100,
                                                       "mode": "random"}))
