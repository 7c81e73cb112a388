"""Long recordings (Holter: hours, millions of samples a lead): the ops' work memory and
caches stay proportional to one record, and the results still match SciPy."""

import gc
import weakref

import numpy as np
import pytest
import scipy.signal as ss
import torch

from fastecg.ops import bandpass, zero_phase_fft
from fastecg.ops._dispatch import backends
from fastecg.preprocessors import resample as resample_step

SOS = ss.butter(4, [0.5, 45.0], "bandpass", fs=500.0, output="sos")


def test_fft_gain_of_a_long_transform_matches_scipy_across_blocks():
    n_fft = 3 * 2**17 + 8  # bins in three blocks and a part
    gain = zero_phase_fft._zero_phase_gain(torch.tensor(SOS), n_fft).numpy()
    bins = np.r_[0:5, 2**16 - 2:2**16 + 3, 2**17 - 1:2**17 + 2, n_fft // 2 - 3:n_fft // 2 + 1]
    _, h = ss.sosfreqz(SOS, worN=2 * np.pi * bins / n_fft)
    ref = np.abs(h) ** 2
    np.testing.assert_allclose(gain[bins], ref, rtol=1e-9, atol=1e-15)
    assert gain.shape == (n_fft // 2 + 1,)


def test_fft_bandpass_of_a_long_record_matches_sosfiltfilt_in_the_interior():
    # 400 s at 500 Hz: the response spans two blocks of bins.
    from fastecg.ops import bandpass

    g = np.random.default_rng(0)
    x = np.cumsum(g.standard_normal((2, 200_003)), -1) * 0.01 + g.standard_normal((2, 200_003))
    ours = bandpass(torch.from_numpy(x), 500.0, method="fft").numpy()
    ref = ss.sosfiltfilt(SOS, x)
    # 20 s from the ends the IIR's edge transients have decayed (measured 1e-11, float64)
    interior = slice(10_000, -10_000)
    err = np.abs(ours[:, interior] - ref[:, interior]).max() / np.abs(ref).max()
    assert err < 1e-9, err


def test_fft_gain_work_memory_stays_bounded(monkeypatch):
    # The response's float64 intermediates, (sections, bins) each, were made for every
    # bin at once: 2.6 GB and 11 s for the 2**23 bins of a 9-hour record at 500 Hz. With
    # the block lowered, a short transform shows the same: no intermediate above it.
    block = 64
    monkeypatch.setattr(zero_phase_fft, "_GAIN_BLOCK_BINS", block, raising=False)
    sizes = []
    real_sin = torch.sin

    def counting_sin(values, *args, **kwargs):
        sizes.append(values.numel())
        return real_sin(values, *args, **kwargs)

    monkeypatch.setattr(torch, "sin", counting_sin)
    n_fft = 1000
    gain = zero_phase_fft._zero_phase_gain(torch.tensor(SOS), n_fft).numpy()
    monkeypatch.undo()
    assert sizes and max(sizes) <= block
    _, h = ss.sosfreqz(SOS, worN=2 * np.pi * np.arange(n_fft // 2 + 1) / n_fft)
    np.testing.assert_allclose(gain, np.abs(h) ** 2, rtol=1e-9, atol=1e-15)


def test_fft_filter_keeps_few_long_gains_cached():
    # Holter records come in many lengths: a cached response per length, each as long as
    # the record, held ~128 records' worth of memory.
    zero_phase_fft._gain_on_device.cache_clear()
    key = zero_phase_fft._butter_key(4, 0.5, 45.0, 500.0)
    refs = [weakref.ref(zero_phase_fft._gain_on_device(key, n_fft, "cpu", torch.float32))
            for n_fft in (2**17, 2**17 + 8, 2**17 + 16, 2**17 + 24)]
    gc.collect()
    assert refs[0]() is None and refs[-1]() is not None
    again = zero_phase_fft._gain_on_device(key, 2**17 + 24, "cpu", torch.float32)
    assert again is refs[-1]()  # a long length called again stays cached
    small = zero_phase_fft._gain_on_device(key, 5120, "cpu", torch.float32)
    for n_fft in (2**17, 2**17 + 8, 2**17 + 16):
        zero_phase_fft._gain_on_device(key, n_fft, "cpu", torch.float32)
    assert zero_phase_fft._gain_on_device(key, 5120, "cpu", torch.float32) is small
    zero_phase_fft._gain_on_device.cache_clear()


def test_linear_resample_keeps_few_long_grids_cached():
    resample_step._linear_grid.cache_clear()
    refs = [weakref.ref(resample_step._linear_grid(n, num, "cpu", torch.float32)[0])
            for n, num in ((2**17, 2**16), (2**17 + 1, 2**16 + 1), (2**17 + 2, 2**16 + 2),
                           (2**17 + 3, 2**16 + 3))]
    gc.collect()
    assert refs[0]() is None and refs[-1]() is not None
    resample_step._linear_grid.cache_clear()


def test_median_reference_windows_stay_bounded_on_long_records(monkeypatch):
    # The torch reference (the fallback without compiled kernels) gathered every (n, w)
    # window of a row at once: 2.9 GB for a 7-minute record at 500 Hz. With its block
    # bound lowered, a 20 s record at 100 Hz shows the same: no block above the bound.
    from scipy import ndimage

    from fastecg.ops import baseline, remove_baseline

    limit = 4096
    monkeypatch.setattr(baseline, "_ROWS_PER_REFERENCE_BLOCK_ELEMENTS", limit)
    sorted_sizes = []
    real_sort = torch.sort

    def counting_sort(values, *args, **kwargs):
        sorted_sizes.append(values.numel())
        return real_sort(values, *args, **kwargs)

    monkeypatch.setattr(torch, "sort", counting_sort)
    x = torch.randn(2, 3, 2003, generator=torch.Generator().manual_seed(0))
    y = remove_baseline(x, 100.0, backend="torch")  # windows of 21 and 61 samples
    monkeypatch.undo()
    assert sorted_sizes and max(sorted_sizes) <= limit
    xn = x.numpy()
    base = ndimage.median_filter(ndimage.median_filter(xn, size=(1, 1, 21), mode="nearest"),
                                 size=(1, 1, 61), mode="nearest")
    np.testing.assert_array_equal(y.numpy(), xn - base)


@pytest.mark.skipif(not backends()["cpu"].available, reason="needs the C++ extension")
@pytest.mark.parametrize("dtype, few", [(torch.float32, 8), (torch.float64, 4)])
def test_auto_gives_a_few_long_fft_rows_to_torch(dtype, few):
    """The cpu fft kernel fills 16 (float32) or 8 (float64) rows per transform on one
    thread: for up to 8 (4) long rows it ran 1.0-4.8x slower than torch's FFT and held
    the whole block's buffers; "auto" takes the torch backend there, the cpu kernel
    elsewhere."""
    n = 40_000  # n_fft >= 2**15
    gen = torch.Generator().manual_seed(0)
    for rows, chosen in ((few, "torch"), (few + 1, "cpu")):
        x = torch.randn(rows, n, dtype=dtype, generator=gen)
        auto = bandpass(x, 500.0, 0.5, 45.0, method="fft")
        ref = bandpass(x, 500.0, 0.5, 45.0, method="fft", backend=chosen)
        assert torch.equal(auto, ref), (rows, chosen)
    short = torch.randn(1, 5000, dtype=dtype, generator=gen)  # an ECG row: the kernel
    assert torch.equal(bandpass(short, 500.0, 0.5, 45.0, method="fft"),
                       bandpass(short, 500.0, 0.5, 45.0, method="fft", backend="cpu"))


# ---- bandpass(method="fir") ---------------------------------------------------------------


def _fir_filtfilt_reference(x, numtaps):
    taps = ss.firwin(numtaps, [0.5, 45.0], pass_zero=False, fs=500.0)
    return ss.filtfilt(taps, 1, x, axis=-1)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_fir_long_record_uses_short_transforms_and_matches_filtfilt(monkeypatch, dtype, tol):
    # One transform of the whole padded row held ~8x the row (534 MB for 2**24 float32
    # samples) and ran slower; overlap-save transforms stay a few times numtaps long.
    # 16000 samples + 2 * 303 padding + 100 taps: just above the blocked path's threshold.
    numtaps = 101
    g = np.random.default_rng(1)
    x = np.cumsum(g.standard_normal((2, 16_000)), -1) * 0.01 + g.standard_normal((2, 16_000))
    sizes = []
    real_rfft = torch.fft.rfft

    def counting_rfft(t, n=None, *args, **kwargs):
        sizes.append(t.shape[-1] if n is None else n)
        return real_rfft(t, n, *args, **kwargs)

    monkeypatch.setattr(torch.fft, "rfft", counting_rfft)
    out = bandpass(torch.from_numpy(x).to(dtype), 500.0, method="fir", numtaps=numtaps)
    monkeypatch.undo()
    assert sizes and max(sizes) <= 16 * numtaps, max(sizes)
    ref = _fir_filtfilt_reference(x, numtaps)
    assert out.dtype == dtype and out.shape == x.shape
    assert np.abs(out.double().numpy() - ref).max() / np.abs(ref).max() < tol


def test_fir_blocked_convolution_is_exact_with_its_gradients(monkeypatch):
    # The blocked path with its threshold and chunk lowered: several chunks of blocks and a
    # partial last block on a short row, so gradcheck stays quick. 21 float64 taps take
    # the FFT convolution (size 180: 160 outputs a block).
    from fastecg.ops import fir

    monkeypatch.setattr(fir, "_BLOCKED_MIN_LEN", 64)
    monkeypatch.setattr(fir, "_BLOCK_CHUNK_ELEMENTS", 2 * 180)
    calls = []
    real_blocked = fir._fft_valid_blocked
    monkeypatch.setattr(fir, "_fft_valid_blocked",
                        lambda *a: calls.append(a[0].shape) or real_blocked(*a))
    x = torch.randn(1, 2, 500, dtype=torch.float64, generator=torch.Generator().manual_seed(4),
                    requires_grad=True)
    ref = _fir_filtfilt_reference(x.detach().numpy(), 21)
    out = bandpass(x, 500.0, method="fir", numtaps=21)
    assert calls  # forward went through the blocks
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=0,
                               atol=1e-12 * np.abs(ref).max())
    small = x[0, :1, :80].detach().clone().requires_grad_()  # 226 padded: 2 blocks
    fn = lambda t: bandpass(t, 500.0, method="fir", numtaps=21)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (small,))
    assert torch.autograd.gradgradcheck(fn, (small,), fast_mode=True)
    # The op itself (what traced calls run) against NumPy's valid convolution, and opcheck.
    op = torch.ops.fastecg.fir_fft_valid_planned.default
    taps = torch.from_numpy(ss.firwin(21, [0.5, 45.0], pass_zero=False, fs=500.0))
    rows = torch.randn(3, 777, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    calls.clear()
    got = op(rows, taps)
    assert calls
    want = np.stack([np.convolve(r, taps.numpy(), mode="valid") for r in rows.numpy()])
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12 * np.abs(want).max())
    torch.library.opcheck(op, (rows[:2, :200].float().requires_grad_(), taps.float()))
