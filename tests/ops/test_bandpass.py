"""bandpass (iir, fft, fir) against scipy.signal (float64), every CPU backend; sosfilt and
sosfiltfilt themselves are tested in test_sosfilt.py."""


import numpy as np


import pytest


import scipy.signal as ss


import torch


import fastecg


from fastecg.ops import bandpass, sosfilt, sosfiltfilt


from helpers import rel_err, signal
from sos_designs import DESIGNS


# Error relative to the output's peak. Measured: float32 ~4e-8 (state in float64,
# float32 padding as SciPy), float64 ~1e-14.
TOL = {torch.float32: 1e-6, torch.float64: 1e-11}


# FIR accumulates in the input's dtype (conv1d or FFT convolution). Measured: float32 up
# to 6e-7 of the peak, float64 ~2e-15; the contract is 1e-5 in float32.
FIR_TOL = {torch.float32: 1e-5, torch.float64: 1e-12}


CPU_BACKENDS = ["cpu", "torch"]


@pytest.mark.parametrize("order", range(1, 9))
@pytest.mark.parametrize("btype", ["bandpass", "lowpass", "highpass"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bandpass_iir_matches_scipy(order, btype, dtype):
    fs = [100.0, 250.0, 500.0, 1000.0][order % 4]
    low, high = (0.5, 0.4 * fs) if btype == "bandpass" else (
        (None, 0.3 * fs) if btype == "lowpass" else (1.0, None))
    x = signal((3, 2, 700 + order), dtype, seed=order)
    edges = [e for e in (low, high) if e is not None]
    sos = ss.butter(order, edges if len(edges) > 1 else edges[0], btype=btype, fs=fs,
                    output="sos")
    ref = ss.sosfiltfilt(sos, x.numpy(), axis=-1)
    out = bandpass(x, fs, low, high, order=order)
    assert out.dtype == dtype and out.shape == x.shape
    assert rel_err(out, ref) < TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [180_000, 180_001])  # rows 16-byte aligned / not
def test_holter_length_rows(dtype, n):
    # Rows longer than one L2-sized segment: the forward pass is recomputed per segment
    # from checkpoints of its state (and the output is over 8 MiB).
    sos = ss.butter(4, [0.5, 45.0], btype="bandpass", fs=500.0, output="sos")
    x = signal((13, n), dtype, seed=n)
    assert x.nbytes > 8 << 20
    assert rel_err(sosfiltfilt(sos, x, backend="cpu"), ss.sosfiltfilt(sos, x.numpy())) < TOL[dtype]
    zi = torch.randn(sos.shape[0], 13, 2, dtype=torch.float64)  # SciPy's layout
    y, zf = sosfilt(sos, x, zi=zi, backend="cpu")
    y_ref, zf_ref = ss.sosfilt(sos, x.numpy(), zi=zi.numpy())
    assert rel_err(y, y_ref) < TOL[dtype] and rel_err(zf, zf_ref) < 1e-9


def test_real_records(cinc_records):
    sig = np.stack([fastecg.data.load_cinc_record(p)[0] for p in cinc_records])
    sos = ss.butter(4, [0.5, 45.0], btype="bandpass", fs=500.0, output="sos")
    assert rel_err(bandpass(torch.from_numpy(sig), 500.0), ss.sosfiltfilt(sos, sig)) < 1e-6


def fir_reference(x, fs, low, high, numtaps, **kwargs):
    edges = [e for e in (low, high) if e is not None]
    taps = ss.firwin(numtaps, edges if len(edges) > 1 else edges[0], pass_zero=high is not None
                     and low is None, fs=fs)
    return ss.filtfilt(taps, 1, x.numpy(), axis=-1, **kwargs)


@pytest.mark.parametrize("btype", ["bandpass", "lowpass", "highpass"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fs, numtaps, shape", [
    (100.0, 21, (3, 500)),          # direct conv1d in float32
    (250.0, 32, (2, 1, 401)),       # even taps (band/low-pass only), largest direct size
    (360.0, 75, (1, 700)),          # FFT convolution
    (500.0, None, (2, 3, 1001)),    # torch_ecg's default: 101 taps
    (1000.0, 201, (5, 1300)),
])
def test_bandpass_fir_matches_scipy(btype, dtype, fs, numtaps, shape):
    if btype == "highpass" and numtaps is not None and numtaps % 2 == 0:
        numtaps += 1
    low, high = {"bandpass": (0.5, 0.3 * fs), "lowpass": (None, 0.2 * fs),
                 "highpass": (1.0, None)}[btype]
    x = signal(shape, dtype, seed=int(fs))
    taps = int(0.2 * fs) | 1 if numtaps is None else numtaps
    out = bandpass(x, fs, low, high, method="fir", numtaps=numtaps)
    assert out.dtype == dtype and out.shape == x.shape
    assert rel_err(out, fir_reference(x, fs, low, high, taps)) < FIR_TOL[dtype]


@pytest.mark.parametrize("padtype, padlen", [("even", None), ("constant", 10), (None, None),
                                             ("odd", 0), ("odd", 150)])
def test_bandpass_fir_padding_matches_scipy(padtype, padlen):
    x = signal((2, 3, 300), torch.float64)
    out = bandpass(x, 500.0, method="fir", numtaps=41, padtype=padtype, padlen=padlen)
    ref = fir_reference(x, 500.0, 0.5, 45.0, 41, padtype=padtype, padlen=padlen)
    assert rel_err(out, ref) < FIR_TOL[torch.float64]


def test_bandpass_fir_real_records_and_module(cinc_records):
    from fastecg.registry import PREPROCESSORS

    sig = np.stack([fastecg.data.load_cinc_record(p)[0] for p in cinc_records])
    x = torch.from_numpy(sig)
    ref = fir_reference(x, 500.0, 0.5, 45.0, 101)
    out = bandpass(x.float(), 500.0, method="fir")
    assert rel_err(out, ref) < FIR_TOL[torch.float32]
    # torch_ecg's keywords: filter_order=100 is made odd (BioSPPy), as the default is.
    module = PREPROCESSORS.build({"name": "bandpass", "fs": 500.0, "filter_type": "fir",
                                  "filter_order": 100})
    torch.testing.assert_close(module(x.float()), out, rtol=0, atol=0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(numtaps=0), "numtaps must be a positive integer, got 0"),
    (dict(numtaps=10.0), "numtaps must be a positive integer"),
    (dict(numtaps=20, highcut=None), "needs an odd number of taps"),
    (dict(lowcut=0.0), "lowcut=0.0 Hz must lie inside"),
    (dict(highcut=300.0), r"highcut=300.0 Hz must lie inside \(0, fs/2\) = \(0, 250\)"),
    (dict(lowcut=50.0, highcut=40.0), "must be below highcut"),
    (dict(lowcut=None, highcut=None), "at least one"),
    (dict(padtype="zero"), "Unknown value 'zero'"),
    (dict(padlen=-1), "padlen must be >= 0"),
])
def test_bad_fir(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bandpass(torch.randn(2, 500), 500.0, **{"method": "fir", "numtaps": 21, **kwargs})


def test_fir_signal_shorter_than_padding():
    # SciPy's rule: n_samples > padlen = 3 * numtaps.
    with pytest.raises(ValueError, match="greater than padlen, which is 63"):
        bandpass(torch.randn(2, 63), 500.0, method="fir", numtaps=21)
    assert bandpass(torch.randn(2, 64), 500.0, method="fir", numtaps=21).shape == (2, 64)
    with pytest.raises(ValueError, match="filter_type 'bessel'"):
        fastecg.preprocessors.BandPass(500.0, filter_type="bessel")


def test_fft_method_equals_iir_in_the_interior():
    x = torch.from_numpy(fastecg.data.synthetic_ecg(2, duration_s=60.0, seed=2))
    iir = bandpass(x.double(), 500.0, method="iir")
    fft = bandpass(x.double(), 500.0, method="fft")
    interior = slice(5000, -5000)  # 10 s from each edge = 5 / lowcut: IIR edge transients decay
    err = (fft - iir)[..., interior].abs().max() / iir.abs().max()
    assert err < 1e-4
    assert bandpass(x, 500.0, method="fft").dtype == torch.float32


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_fft_method_in_float32_at_a_dc_offset(backend):
    """The documented cost of a DC offset in float32 (the transforms round relative to it):
    at 100 times the ECG's peak the interior stays within 5e-5 of the peak of the exact
    filter, and float64 input stays exact to ~1e-12 whatever the offset."""
    x = torch.from_numpy(fastecg.data.synthetic_ecg(1, duration_s=60.0, seed=2)).double()
    offset = 100 * x.abs().max()
    exact = bandpass(x, 500.0, method="fft", backend=backend)
    interior = slice(5000, -5000)
    peak = exact.abs().max()
    y32 = bandpass((x + offset).float(), 500.0, method="fft", backend=backend).double()
    assert (y32 - exact)[..., interior].abs().max() / peak < 5e-5
    y64 = bandpass(x + offset, 500.0, method="fft", backend=backend)
    assert (y64 - exact)[..., interior].abs().max() / peak < 1e-10


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1, 300), (33, 1000), (2, 35, 5000), (2, 40), (3, 3)])
def test_fft_cpu_kernel_equals_the_torch_reference(shape, dtype):
    # The C++ kernel has its own FFT over blocks of 16 float32 (8 float64) rows: blocks of
    # one row, full ones with a remainder, and rows so short that zeros sit between the
    # reflections.
    x = signal(shape, dtype, seed=shape[-1])
    g = signal(shape, dtype, seed=1)
    tol = dict(rtol=0, atol=2e-6 if dtype == torch.float32 else 1e-13)
    outs, grads = [], []
    for backend in ("cpu", "torch"):
        xb = x.clone().requires_grad_()
        y = bandpass(xb, 500.0, lowcut=1.0, method="fft", backend=backend)
        assert y.dtype == dtype and y.shape == x.shape
        outs.append(y)
        grads.append(torch.autograd.grad(y, xb, g)[0])
    peak = outs[1].abs().max()
    torch.testing.assert_close(outs[0] / peak, outs[1] / peak, **tol)
    torch.testing.assert_close(grads[0] / grads[1].abs().max(), grads[1] / grads[1].abs().max(),
                               **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [16300, 16400, 45000])
def test_fft_cpu_kernel_four_step_form(n, dtype):
    # Transforms of 16384 points and more take the four-step form (columns, twiddles,
    # rows): lengths 16384 = 128 x 128, 17280 = 144 x 120 and 46080 = 240 x 192 (rows x
    # columns), one full block of 16 (8) rows plus a partial one, forward and adjoint.
    x = signal((17, n), dtype, seed=n)
    g = signal((17, n), dtype, seed=2)
    tol = dict(rtol=0, atol=2e-6 if dtype == torch.float32 else 1e-13)
    outs, grads = [], []
    for backend in ("cpu", "torch"):
        xb = x.clone().requires_grad_()
        y = bandpass(xb, 500.0, lowcut=0.5, method="fft", backend=backend)
        outs.append(y / y.abs().max().detach())
        grad = torch.autograd.grad(y, xb, g)[0]
        grads.append(grad / grad.abs().max())
    torch.testing.assert_close(outs[0], outs[1], **tol)
    torch.testing.assert_close(grads[0], grads[1], **tol)


def test_fft_cpu_kernel_over_many_lengths():
    # Transform lengths 2^a 3^b 5^c from 8 to ~700 (more than the kernel's 16 cached plans,
    # then the first again): every radix and mix of them, against the torch reference.
    lengths = [3, 10, 20, 45, 70, 100, 130, 170, 199, 230, 260, 300, 350, 400, 470, 520, 600,
               650, 3]
    for n in lengths:
        x = signal((5, n), torch.float64, seed=n)
        out = bandpass(x, 250.0, lowcut=2.0, method="fft", backend="cpu")
        ref = bandpass(x, 250.0, lowcut=2.0, method="fft", backend="torch")
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-13 * ref.abs().max().item())


def test_nan_stays_in_its_channel():
    x = signal((2, 3, 300))
    x[1, 2, 100] = float("nan")
    out = bandpass(x, 500.0)
    assert out[1, 2].isnan().all()
    mask = torch.ones(2, 3, dtype=torch.bool)
    mask[1, 2] = False
    assert out[mask].isfinite().all()


def test_layouts_and_half_types():
    x = signal((4, 5000, 12)).transpose(1, 2)  # channels-last view
    torch.testing.assert_close(bandpass(x, 500.0), bandpass(x.contiguous(), 500.0),
                               rtol=0, atol=0)
    out = bandpass(x.to(torch.bfloat16), 500.0)
    assert out.dtype == torch.bfloat16
    assert bandpass(torch.empty(0, 12, 100), 500.0).shape == (0, 12, 100)


@pytest.mark.parametrize("kwargs, match", [
    (dict(lowcut=0.0), "lowcut=0.0 Hz must lie inside"),
    (dict(highcut=250.0), r"highcut=250.0 Hz must lie inside \(0, fs/2\) = \(0, 250\)"),
    (dict(lowcut=50.0, highcut=40.0), "must be below highcut"),
    (dict(lowcut=None, highcut=None), "at least one"),
    (dict(order=0), "order"),
    (dict(method="fir2"), "unknown method"),
])
def test_bad_band(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bandpass(torch.randn(2, 500), 500.0, **kwargs)


def test_bad_signals_and_sos():
    with pytest.raises(ValueError, match="greater than padlen, which is 27"):
        bandpass(torch.randn(2, 27), 500.0)
    assert bandpass(torch.randn(2, 28), 500.0).shape == (2, 28)
    with pytest.raises(TypeError, match="floating-point"):
        bandpass(torch.ones(2, 500, dtype=torch.int32), 500.0)
    with pytest.raises(ValueError, match=r"shape \(n_sections, 6\)"):
        sosfiltfilt(np.ones((2, 5)), torch.randn(100))
    with pytest.raises(ValueError, match="should be all ones"):
        sosfiltfilt(np.array([[1, 0, 0, 2, 0, 0.0]]), torch.randn(100))
    with pytest.raises(ValueError, match="Unknown value 'zero'"):
        sosfiltfilt(DESIGNS["notch50"](), torch.randn(100), padtype="zero")
    with pytest.raises(ValueError, match="Invalid zi shape"):
        sosfilt(DESIGNS["notch50"](), torch.randn(3, 100), zi=torch.zeros(1, 2))


@pytest.mark.parametrize("method, kwargs", [
    ("iir", dict(order=8, lowcut=1.0)),
    ("iir", dict(order=2, padtype="even")),
    ("fft", dict(lowcut=5.0)),
    ("fir", dict(numtaps=21)),   # direct conv1d path
    ("fir", dict(numtaps=35)),   # FFT convolution path
])
def test_gradcheck_every_method(method, kwargs):
    x = torch.randn(1, 2, 120, dtype=torch.float64, requires_grad=True)
    kwargs = {"lowcut": 1.0, "highcut": 100.0, **kwargs}
    assert torch.autograd.gradcheck(lambda t: bandpass(t, 500.0, method=method, **kwargs), (x,))
    if method == "fft":  # the CPU kernel above ("auto"), the torch reference here
        assert torch.autograd.gradcheck(
            lambda t: bandpass(t, 500.0, method=method, backend="torch", **kwargs), (x,))
        assert torch.autograd.gradgradcheck(
            lambda t: bandpass(t, 500.0, method=method, **kwargs), (x,))


def test_opcheck():
    sos = torch.tensor(ss.butter(4, [0.5, 45.0], btype="bandpass", fs=500.0, output="sos"))
    zi = torch.tensor(ss.sosfilt_zi(sos.numpy()))
    for x in (torch.randn(2, 3, 200, requires_grad=True),
              torch.randn(4, 200, dtype=torch.float64, requires_grad=True)):
        torch.library.opcheck(torch.ops.fastecg.sosfiltfilt.default, (x, sos, zi, 27, 1, "auto"))
        torch.library.opcheck(torch.ops.fastecg.sosfiltfilt_adjoint.default,
                              (x, sos, zi, 27, 1, "auto"))
    state = torch.zeros(2, 3, 4, 2, dtype=torch.float64)
    torch.library.opcheck(torch.ops.fastecg.sosfilt.default,
                          (torch.randn(2, 3, 50), sos, state, "auto"))
    gain = torch.rand(2 * (256 // 2 + 1), dtype=torch.float64)
    for backend in ("cpu", "torch"):
        for adjoint in (False, True):
            torch.library.opcheck(
                torch.ops.fastecg.zero_phase_fft.default,
                (torch.randn(5, 200, dtype=torch.float64, requires_grad=True), gain, 30, 20,
                 256, adjoint, backend))
    # With grad: the backward (through y and zf) is checked too.
    torch.library.opcheck(torch.ops.fastecg.sosfilt.default,
                          (torch.randn(2, 3, 50, dtype=torch.float64, requires_grad=True), sos,
                           torch.randn(2, 3, 4, 2, dtype=torch.float64, requires_grad=True),
                           "auto"))


def test_module_compile_fullgraph_matches_eager_and_functional():
    from fastecg.registry import PREPROCESSORS

    module = PREPROCESSORS.build({"name": "bandpass", "fs": 500.0, "lowcut": 0.5,
                                  "highcut": 45.0})

    def pipeline(x):
        return module(x).square().mean(-1)

    x = torch.randn(2, 12, 1000, requires_grad=True)
    # The module's default order is torch_ecg's round(0.01 fs): 5 at 500 Hz.
    torch.testing.assert_close(module(x), bandpass(x, 500.0, order=5), rtol=0, atol=0)
    compiled = torch.compile(pipeline, fullgraph=True)
    out = compiled(x)
    torch.testing.assert_close(out, pipeline(x))
    torch.testing.assert_close(torch.autograd.grad(out.sum(), x)[0],
                               torch.autograd.grad(pipeline(x).sum(), x)[0])


@pytest.mark.parametrize("method", ["iir", "fft", "fir"])
def test_functional_compile_fullgraph_matches_eager(method):
    # The design is a custom op of the graph (SciPy runs when the graph runs).
    def fn(x):
        return bandpass(x, 500.0, 0.5, 45.0, method=method, numtaps=41).square()

    x = signal((2, 3, 400))
    torch.testing.assert_close(torch.compile(fn, fullgraph=True)(x), fn(x))


@pytest.mark.parametrize("method", ["iir", "fft", "fir"])
def test_compile_follows_a_changing_fs_and_length(method):
    # A compiled function called with another fs or length recompiles with them symbolic
    # (automatic dynamic shapes): the design cannot be a constant of the graph. (Reset:
    # the parametrisations share the lambda's code object and its recompile budget.)
    torch.compiler.reset()
    fn = torch.compile(lambda t, fs: bandpass(t, fs, 0.5, 45.0, method=method),
                       fullgraph=True)
    for fs, n in ((500.0, 400), (250.0, 400), (360.0, 300)):
        x = signal((2, n), torch.float64, seed=int(fs))
        torch.testing.assert_close(fn(x, fs), bandpass(x, fs, method=method),
                                   rtol=0, atol=1e-12)


def test_compile_dynamic_with_default_band():
    # Under dynamic=True the default band edges are traced as symbolic floats.
    from fastecg.preprocessors import BandPass

    torch.compiler.reset()
    for fn in (lambda t: bandpass(t, 500.0), BandPass(500.0, method="fft", filter_order=4)):
        method = "fft" if isinstance(fn, BandPass) else "iir"
        compiled = torch.compile(fn, fullgraph=True, dynamic=True)
        for n in (300, 400):
            x = signal((2, n), torch.float64, seed=n)
            torch.testing.assert_close(compiled(x), bandpass(x, 500.0, method=method),
                                       rtol=0, atol=1e-12)


@pytest.mark.parametrize("order", range(1, 9))
@pytest.mark.parametrize("band", [(0.5, 45.0), (None, 40.0), (1.0, None)])
def test_design_ops_match_scipy(order, band):
    from fastecg.ops._design import butter_padlen
    from fastecg.ops._design import default_padlen

    low, high = band
    if low is not None and high is not None:
        sos = ss.butter(order, [low, high], btype="bandpass", fs=500.0, output="sos")
    elif low is not None:
        sos = ss.butter(order, low, btype="highpass", fs=500.0, output="sos")
    else:
        sos = ss.butter(order, high, btype="lowpass", fs=500.0, output="sos")
    design, zi = torch.ops.fastecg.butter_design(order, *band, 500.0, "cpu")
    np.testing.assert_array_equal(design.numpy(), sos)
    np.testing.assert_array_equal(zi.numpy(), ss.sosfilt_zi(sos))
    assert butter_padlen(order, *band) == default_padlen(sos)
    if order == 4:
        torch.library.opcheck(torch.ops.fastecg.butter_design.default,
                              (order, *band, 500.0, "cpu"))
        torch.library.opcheck(torch.ops.fastecg.fir_design.default,
                              (41, *band, 500.0, "cpu", torch.float32))


def test_module_filter_stays_exact_after_dtype_casts():
    # The module holds no coefficient buffers for .float()/.half()/.double() to round.
    from fastecg.preprocessors import BandPass

    x = signal((2, 3, 600), torch.float64)
    model = torch.nn.Sequential(BandPass(500.0, filter_order=4), torch.nn.Conv1d(3, 4, 3)).float()
    torch.testing.assert_close(model[0](x.float()), bandpass(x.float(), 500.0), rtol=0, atol=0)
    assert model(x.float()).shape == (2, 4, 598)
    torch.testing.assert_close(BandPass(500.0, filter_order=4).double()(x), bandpass(x, 500.0),
                               rtol=0, atol=0)
    half = BandPass(500.0, filter_order=4).half()(x.half())
    assert half.dtype == torch.float16
    torch.testing.assert_close(half, bandpass(x.half(), 500.0), rtol=0, atol=0)


def test_module_rejects_a_mismatched_method_or_order():
    from fastecg.preprocessors import BandPass

    with pytest.raises(ValueError, match="not a Butterworth method"):
        BandPass(500.0, method="fir")
    for kind in ("butter", "fir"):
        with pytest.raises(ValueError, match="filter_order must be a positive integer"):
            BandPass(500.0, filter_type=kind, filter_order=0)


@pytest.mark.parametrize("method", ["fft", "fir"])
def test_unused_arguments_are_still_checked(method):
    x = signal((2, 400))
    with pytest.raises(ValueError, match="unknown backend"):
        bandpass(x, 500.0, method=method, backend="cpp")
    with pytest.raises(ValueError, match="padtype"):
        bandpass(x, 500.0, method=method, padtype="reflect")
    with pytest.raises(ValueError, match="padlen must be >= 0"):
        bandpass(x, 500.0, method=method, padlen=-1)


def test_empty_batches_and_half_inputs():
    sos = DESIGNS["cheby1"]()
    assert sosfilt(sos, torch.zeros(0, 5)).shape == (0, 5)
    y, zf = sosfilt(sos, torch.zeros(0, 5), zi=torch.zeros(sos.shape[0], 0, 2))
    assert y.shape == (0, 5) and zf.shape == (sos.shape[0], 0, 2)
    assert bandpass(torch.empty(0, 300), 500.0, method="fft").shape == (0, 300)
    from fastecg import numpy_path

    for method in ("iir", "fir"):  # (SciPy's filtfilt refuses an empty batch)
        assert bandpass(torch.empty(0, 12, 1000), 500.0, method=method).shape == (0, 12, 1000)
        out = numpy_path.bandpass(np.empty((0, 12, 1000), np.float32), 500.0, method=method)
        assert out.shape == (0, 12, 1000) and out.dtype == np.float32
    x = signal((2, 300))
    half = sosfilt(sos, x.half())
    assert half.dtype == torch.float16
    torch.testing.assert_close(half, sosfilt(sos, x.half().float()).half(), rtol=0, atol=0)


def test_numpy_path_fir_checks_the_length_of_an_empty_batch():
    """An empty batch skips SciPy's filtfilt, but not its length rule (as the iir path
    and the torch path): no silent empty result for a too-short signal."""
    from fastecg import numpy_path

    for shape in ((0, 5), (2, 0), (0, 0)):
        with pytest.raises(ValueError, match="padlen"):
            numpy_path.bandpass(np.empty(shape), 500.0, method="fir")
        with pytest.raises(ValueError):
            bandpass(torch.empty(shape, dtype=torch.float64), 500.0, method="fir")
    assert numpy_path.bandpass(np.empty((0, 5)), 500.0, method="fir", padlen=3).shape == (0, 5)


def test_numpy_path_checks_every_call():
    from fastecg import numpy_path

    x = signal((2, 400), torch.float64).numpy()
    numpy_path.bandpass(x, 500.0, order=4)  # caches the design of order 4
    with pytest.raises(ValueError, match="order must be a positive integer"):
        numpy_path.bandpass(x, 500.0, order=4.0)
    with pytest.raises(ValueError, match="fs must be positive"):
        numpy_path.bandpass(x, -500.0)


def test_module_checks_backend_and_method_when_built():
    from fastecg.preprocessors import BandPass

    with pytest.raises(ValueError, match="unknown backend"):
        BandPass(500.0, backend="cuda2")
    with pytest.raises(ValueError, match="not a Butterworth method"):
        BandPass(500.0, filter_type="fir", method="foo")


@pytest.mark.parametrize("method", ["iir", "fir"])
@pytest.mark.parametrize("band", [(0.5, 45.0), (None, 40.0), (1.0, None)])
def test_numpy_path_matches_ops(method, band):
    from fastecg import numpy_path
    from fastecg.preprocessors import BandPass

    x = signal((2, 3, 1500), torch.float64, seed=4)
    ref = numpy_path.bandpass(x.numpy(), 500.0, *band, method=method)
    assert rel_err(bandpass(x, 500.0, *band, method=method), ref) < 1e-11
    kw = {"filter_type": "fir", "filter_order": 100} if method == "fir" else {}
    twin, module = numpy_path.BandPass(500.0, *band, **kw), BandPass(500.0, *band, **kw)
    assert rel_err(module(x), twin(x.numpy())) < 1e-11
    x32 = x.float().numpy()
    assert numpy_path.bandpass(x32, 500.0, *band, method=method).dtype == np.float32


def test_module_default_order_is_torch_ecgs():
    """BandPass without filter_order designs torch_ecg's order, round(0.01 fs) (Python's
    round, as torch_ecg's), and the NumPy path the same."""
    from fastecg import numpy_path
    from fastecg.preprocessors import BandPass

    for fs, order in ((500.0, 5), (250.0, 2), (360.0, 4), (100.0, 1), (1000.0, 10)):
        band = (0.5, min(45.0, fs / 2 - 1))
        assert BandPass(fs, *band).order_at(fs) == order
        assert numpy_path.BandPass(fs, *band).order == order
        x = signal((1, 2, 2000))
        ref = ss.sosfiltfilt(ss.butter(order, band, btype="bandpass", fs=fs, output="sos"),
                             x.numpy())
        torch.testing.assert_close(BandPass(fs, *band)(x), torch.from_numpy(ref.copy()).float(),
                                   rtol=0, atol=1e-6 * float(abs(ref).max()))


def test_fft_keeps_few_long_tail_indices_cached_and_stays_exact():
    # The padding's index is as long as the reflections (~1% of a Holter record): one
    # cached per length for 64 lengths held 64 long indices. Each distinct long length
    # still filters exactly: reflect padding and |H|^2 at the rFFT bins, in NumPy.
    import gc
    import weakref

    from fastecg.ops import zero_phase_fft

    zero_phase_fft._tail_index.cache_clear()
    fs, lowcut, highcut = 500.0, 0.5, 45.0
    sos = ss.butter(4, [lowcut, highcut], "bandpass", fs=fs, output="sos")
    min_pad = int(np.ceil(fs / (32 * lowcut)))
    refs = []
    for i, n in enumerate(2**16 + 1000 * k + 3 for k in range(6)):
        x = signal((2, n), torch.float64, seed=i).requires_grad_()
        y = bandpass(x, fs, lowcut, highcut, method="fft", backend="torch")
        n_fft, pad, right = zero_phase_fft._plan(n, min_pad)
        xn = x.detach().numpy()
        padded = np.zeros((2, n_fft))
        padded[:, :n + pad + right] = np.pad(xn, ((0, 0), (pad, right)), mode="reflect")
        _, h = ss.sosfreqz(sos, worN=2 * np.pi * np.arange(n_fft // 2 + 1) / n_fft)
        ref = np.fft.irfft(np.fft.rfft(padded) * np.abs(h) ** 2, n=n_fft)[:, pad:pad + n]
        assert rel_err(y.detach().numpy(), ref) < 1e-10, n
        # The adjoint (the same index, added back): <g, f(x)> = <f^T(g), x>.
        g = signal((2, n), torch.float64, seed=100 + i)
        (grad,) = torch.autograd.grad(y, x, g)
        lhs, rhs = float((g * y).sum()), float((grad * x).sum())
        assert abs(lhs - rhs) <= 1e-12 * float(g.norm() * x.norm()), n
        refs.append(weakref.ref(zero_phase_fft._tail_index(n, pad, right, x.device)))
    gc.collect()
    alive = [r() is not None for r in refs]
    assert sum(alive) <= 2 and alive[-1], alive
    zero_phase_fft._tail_index.cache_clear()


@pytest.mark.parametrize("numtaps", [9, 17, 31])
def test_fir_short_filters_on_long_rows_take_overlap_save(monkeypatch, numtaps):
    # Direct float32 conv1d ran 1.1-5.4x slower than the overlap-save convolution on rows
    # of 2**17 samples and more (9-31 taps, 1 and 12 rows): rows longer than 2**14 padded
    # samples take overlap-save, shorter ones keep conv1d; both within FIR_TOL of SciPy.
    calls = []
    real_conv1d = torch.nn.functional.conv1d
    monkeypatch.setattr(torch.nn.functional, "conv1d",
                        lambda *a, **k: calls.append(a[0].shape[-1]) or real_conv1d(*a, **k))
    for shape, direct in (((2, 40_000), False), ((3, 2000), True)):
        calls.clear()
        x = signal(shape, torch.float32, seed=numtaps)
        out = bandpass(x, 500.0, 5.0, 45.0, method="fir", numtaps=numtaps)
        assert bool(calls) == direct, (shape, calls)
        assert out.dtype == torch.float32 and out.shape == x.shape
        ref = fir_reference(x.double(), 500.0, 5.0, 45.0, numtaps)
        assert rel_err(out, ref) < FIR_TOL[torch.float32], shape
