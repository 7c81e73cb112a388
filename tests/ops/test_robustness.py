"""Regression tests for inputs a new user tries: extreme cut-offs, empty batches, windows far
longer than the signal, SciPy's conventions (zscore's ddof, medfilt's zero padding), and
errors that speak the user's terms."""

import numpy as np
import pytest
import scipy.signal
import scipy.stats
import torch

import fastecg
from fastecg.ops import bandpass, median_filter1d, normalize, remove_baseline
from fastecg.ops.zero_phase_fft import _zero_phase_gain
from fastecg.preprocessors import BandPass, BaselineRemove

# ---- fft method: |H|^2 over every band the validator accepts -------------------------------

LOW = [0.005, 0.008, 0.01, 0.05, 0.5, None]
HIGH = [40.0, 150.0, 249.0, 249.9, 249.999, None]


@pytest.mark.parametrize("order", [1, 2, 4, 8])
def test_fft_gain_matches_sosfreqz_over_bands(order):
    """The zero-phase gain |H|^2 at the rFFT bins equals SciPy's ``sosfreqz`` within 1e-6
    for low cut-offs down to 0.005 Hz and high cut-offs up to 1 mHz below Nyquist (the
    expanded sum-of-squares form gave 0/0 at DC below ~0.01 Hz and 6e-4 at 0.05 Hz)."""
    fs, n_fft = 500.0, 20480
    w = 2 * np.pi * np.arange(n_fft // 2 + 1) / n_fft
    for low in LOW:
        for high in HIGH:
            if low is None and high is None:
                continue
            sos = fastecg.ops.butter_sos(order, low, high, fs)
            gain = _zero_phase_gain(torch.from_numpy(sos), n_fft).numpy()
            _, h = scipy.signal.sosfreqz(sos, worN=w)
            assert np.isfinite(gain).all(), (low, high)
            assert np.abs(gain - np.abs(h) ** 2).max() <= 1e-6, (low, high, order)


@pytest.mark.parametrize("band", [(0.01, 45.0), (0.5, 249.999), (0.005, 45.0), (0.008, None),
                                  (0.05, 40.0)])
def test_fft_finite_for_every_accepted_band(band):
    """All-NaN before for these bands; the C++ kernel and torch's FFT agree on them."""
    x = torch.randn(4, 12, 5000)
    y = bandpass(x, 500.0, *band, method="fft", backend="cpu")
    ref = bandpass(x.double(), 500.0, *band, method="fft", backend="torch")
    assert y.isfinite().all()
    assert (y - ref).abs().max() <= 2e-6 * ref.abs().max()


# ---- empty batches --------------------------------------------------------------------------

@pytest.mark.parametrize("method, kwargs", [("iir", {}), ("fft", {}), ("fir", {}),
                                            ("fir", {"numtaps": 11})])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_empty_batch_every_method(method, kwargs, dtype):
    x = torch.empty(0, 12, 5000, dtype=dtype)
    y = bandpass(x, 500.0, method=method, **kwargs)
    assert y.shape == x.shape and y.dtype == dtype


# ---- windows longer than the signal ---------------------------------------------------------

def _window_counts(n: int, start: int, size: int, mode: str) -> tuple[np.ndarray, int]:
    """How many times each sample (and cval) appears in the extended positions
    [start, start + size): arithmetic on periods, independent of the library."""
    counts = np.zeros(n, dtype=np.int64)
    cval = 0
    if mode == "wrap" or (mode in ("reflect", "mirror") and n > 1):
        period = {"wrap": n, "reflect": 2 * n, "mirror": 2 * n - 2}[mode]
        seq = np.arange(period)
        if mode == "reflect":
            seq = np.where(seq < n, seq, 2 * n - 1 - seq)
        elif mode == "mirror":
            seq = np.where(seq < n, seq, 2 * n - 2 - seq)
        whole, part = divmod(size, period)
        np.add.at(counts, seq, whole)
        np.add.at(counts, seq[(start + np.arange(part)) % period], 1)
    elif mode in ("reflect", "mirror"):  # one sample: every position reads it
        counts[0] = size
    else:
        lo, hi = start, start + size - 1
        inside = np.arange(max(lo, 0), min(hi, n - 1) + 1)
        counts[inside] += 1
        if mode == "nearest":
            counts[0] += max(0, min(hi, -1) - lo + 1)
            counts[-1] += max(0, hi - max(lo, n) + 1)
        else:
            cval = max(0, min(hi, -1) - lo + 1) + max(0, hi - max(lo, n) + 1)
    return counts, cval


def _median_by_counts(row: np.ndarray, size: int, origin: int, mode: str, cval: float):
    n = len(row)
    out = np.empty(n)
    for i in range(n):
        counts, n_cval = _window_counts(n, i - size // 2 - origin, size, mode)
        values = np.concatenate([row, [cval]])
        weights = np.concatenate([counts, [n_cval]])
        order = np.argsort(values, kind="stable")
        cum = np.cumsum(weights[order])
        out[i] = values[order][np.searchsorted(cum, size // 2 + 1)]
    return out


@pytest.mark.parametrize("mode", ["nearest", "constant", "reflect", "mirror", "wrap"])
@pytest.mark.parametrize("n, size", [(n, size) for n in (1, 2, 5, 40)
                                     for size in (1001, 100_000_001, 2**30 - 1)]
                         + [(150, 2701), (150, 4001), (150, 100_003)])
def test_median_window_far_longer_than_signal(mode, n, size):
    """Exact against a weighted median over per-sample counts, quickly and without
    memory that grows with the window (windows of 9-14 periods of a 150-sample row take
    the candidate search of periodic_median, 2701 the kernel) (2**30 - 1 on 2 x 40 samples was killed for
    memory; 1e8 on 30 samples took 17 s and 6.7 GB)."""
    rng = np.random.default_rng(n * 7 + size % 97)
    rows = rng.standard_normal((2, n)).round(1)  # ties on purpose
    for origin in sorted({0, -(size // 2), (size - 1) // 2, 3}):
        got = median_filter1d(torch.from_numpy(rows), size, mode=mode, cval=0.25, origin=origin)
        for r in range(2):
            ref = _median_by_counts(rows[r], size, origin, mode, 0.25)
            np.testing.assert_array_equal(got[r].numpy(), ref)


@pytest.mark.parametrize("n", [1, 3, 40])
@pytest.mark.parametrize("size", [101, 100_000_001, 2**30 - 3])  # the longest window_samples gives
def test_mean_window_far_longer_than_signal(n, size):
    rows = np.random.default_rng(n).standard_normal((2, n))
    fs = size / 0.5  # window1 = 0.5 s is `size` samples
    got = remove_baseline(torch.from_numpy(rows), fs, 0.5, 0.5, method="mean").numpy()
    base = rows.copy()
    for _ in range(2):
        base = np.array([[(_window_counts(n, i - size // 2, size, "mirror")[0] * b).sum() / size
                          for i in range(n)] for b in base])
    np.testing.assert_allclose(got, rows - base, rtol=0, atol=1e-12)


def test_long_windows_keep_gradients():
    x = torch.randn(2, 3, 9, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda t: remove_baseline(t, 500.0, method="mean"), (x,))
    torch.autograd.gradcheck(lambda t: remove_baseline(t, 500.0, mode="reflect"), (x,))
    torch.autograd.gradcheck(lambda t: median_filter1d(t, 10**6, mode="nearest"), (x,))


# ---- SciPy's conventions ------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["cpu", "torch"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_normalize_ddof0_eps0_is_scipy_zscore(backend, per_channel):
    x = torch.randn(3, 12, 700, dtype=torch.float64)
    axis = -1 if per_channel else (-2, -1)
    ref = scipy.stats.zscore(x.numpy(), axis=axis, ddof=0)
    got = normalize(x, per_channel=per_channel, ddof=0, eps=0.0, backend=backend)
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-12)
    # defaults: torch_ecg's unbiased std plus 1e-7
    mu = x.mean((-2, -1), keepdim=True)
    ref1 = (x - mu) / (x.std((-2, -1), keepdim=True) + 1e-7)
    if not per_channel:
        np.testing.assert_allclose(normalize(x, backend=backend).numpy(), ref1.numpy(),
                                   atol=1e-12)


def test_normalize_bad_ddof_eps():
    x = torch.randn(2, 3, 10)
    for kwargs in ({"ddof": -1}, {"ddof": 1.5}, {"eps": -1.0}, {"eps": float("nan")}):
        with pytest.raises(ValueError, match="ddof|eps"):
            normalize(x, **kwargs)
    with pytest.raises(ValueError, match="ddof=3"):
        normalize(torch.randn(2, 1, 3), per_channel=False, ddof=3)


@pytest.mark.parametrize("mode", ["nearest", "constant", "reflect", "mirror"])
def test_remove_baseline_mode_matches_scipy(mode):
    x = np.random.default_rng(1).standard_normal((2, 3, 2000))
    got = remove_baseline(torch.from_numpy(x), 500.0, mode=mode).numpy()
    ref = fastecg.numpy_path.remove_baseline(x, 500.0, mode=mode)
    np.testing.assert_array_equal(got, ref)
    if mode == "constant":  # medfilt's zero padding
        w1, w2 = 101, 301
        base = scipy.signal.medfilt(scipy.signal.medfilt(x[0, 0], w1), w2)
        np.testing.assert_array_equal(got[0, 0], x[0, 0] - base)
    module = BaselineRemove(500.0, mode=mode)
    np.testing.assert_array_equal(module(torch.from_numpy(x)).numpy(), got)


def test_remove_baseline_mean_rejects_other_modes():
    with pytest.raises(ValueError, match="mirror"):
        remove_baseline(torch.randn(2, 100), 500.0, method="mean", mode="nearest")
    with pytest.raises(ValueError, match="unknown mode"):
        remove_baseline(torch.randn(2, 100), 500.0, mode="edge")


# ---- errors in the user's terms -------------------------------------------------------------

def test_fs_must_be_a_number_everywhere():
    x = torch.randn(2, 100)
    for call in (lambda: bandpass(x, "500"), lambda: BandPass("500"),
                 lambda: remove_baseline(x, "500"), lambda: BaselineRemove("500"),
                 lambda: fastecg.numpy_path.bandpass(x.numpy(), "500"),
                 lambda: bandpass(x, float("inf")), lambda: bandpass(x, True)):
        with pytest.raises(ValueError, match="fs must be"):
            call()


def test_backend_errors_name_the_call():
    x = torch.randn(2, 3, 500)
    with pytest.raises(RuntimeError, match=r'bandpass\(method="fft"\) has no \'cuda\' backend'):
        bandpass(x, 500.0, method="fft", backend="cuda")
    with pytest.raises(RuntimeError, match=r'remove_baseline\(method="mean"\) has no \'triton\''):
        remove_baseline(x, 500.0, method="mean", backend="triton")


def test_mean_on_short_signal_with_torch_backend():
    """The torch reference pads by reflection, which torch refuses past one signal
    length; such windows take the periodic closed form instead of raising."""
    x = torch.randn(2, 3, 50, dtype=torch.float64)
    got = remove_baseline(x, 500.0, method="mean", backend="torch")
    np.testing.assert_allclose(got.numpy(),
                               fastecg.numpy_path.remove_baseline(x.numpy(), 500.0, method="mean"),
                               atol=1e-12)


def test_non_integer_lengths_and_one_tap_fir_are_value_errors():
    """A float padlen or origin is a ValueError before the kernel (not the dispatcher's
    type error); a 1-tap FIR, which SciPy's filtfilt refuses, is refused too."""
    import scipy.signal as ss

    from fastecg.ops import sosfiltfilt

    x = torch.randn(2, 300)
    sos = ss.butter(2, 0.1, output="sos")
    for call, match in ((lambda: sosfiltfilt(sos, x, padlen=3.5), "padlen must be an integer"),
                        (lambda: median_filter1d(x, 3, origin=0.5), "origin must be an integer"),
                        (lambda: bandpass(x, 500.0, method="fir", numtaps=1), "at least 2 taps")):
        with pytest.raises(ValueError, match=match):
            call()
    with pytest.raises(ValueError):
        ss.filtfilt(ss.firwin(1, [0.5, 45.0], pass_zero=False, fs=500.0), 1, x.numpy())
