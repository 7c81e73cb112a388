import numpy as np
import scipy.signal

from fastecg.data import load_cinc_record, synthetic_ecg


def test_synthetic_is_deterministic_and_ecg_like():
    a, b = synthetic_ecg(3, seed=7), synthetic_ecg(3, seed=7)
    assert a.shape == (3, 12, 5000) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, synthetic_ecg(3, seed=8))
    # Heart rate 50-110 bpm: the dominant R peaks of lead II are 0.5-1.25 s apart.
    lead = np.abs(a[0, 1] - np.median(a[0, 1]))
    peaks, _ = scipy.signal.find_peaks(lead, height=0.5 * lead.max(), distance=150)
    rr = np.diff(peaks) / 500.0
    assert len(peaks) >= 7 and 0.5 < np.median(rr) < 1.25


def test_cinc_reader_on_real_records(cinc_records):
    sig, header = load_cinc_record(cinc_records[0])
    assert sig.shape == (12, header["n_samples"]) and header["fs"] == 500.0
    assert header["lead_names"][:3] == ["I", "II", "III"] and "Dx" in header
    # ECG amplitudes are a few mV at most.
    assert 0.05 < np.abs(sig).max() < 20
