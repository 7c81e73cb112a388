"""The preprocessing steps: each against SciPy (or the authors' formula), its config round
trip, its torch/NumPy twins, its errors, and that none writes into its input."""

import importlib.util
import inspect
import json

import numpy as np
import pytest
import scipy.signal as ss
import torch
from scipy import ndimage
from scipy.interpolate import interp1d

from fastecg.numpy_path.preproc import NUMPY_PREPROCESSORS
from fastecg.numpy_path.preproc import PreprocManager as NumpyPreprocManager
from fastecg.preprocessors import (BaselineRemove, CropOrPad, LeadSelect, Normalize,
                                   PreprocManager, Resample, SOSFilter)
from fastecg.registry import PREPROCESSORS

from helpers import rel_err
from step_configs import LEAD_NAMES, STEP_CONFIGS, step_cases

FS = 500.0
HAS_POLY = importlib.util.find_spec("fastecg.ops.resample") is not None
needs_poly = pytest.mark.skipif(not HAS_POLY, reason="fastecg.ops.resample is not there yet")
# Relative to the peak of the reference output: float64 paths agree to rounding; float32
# within the ops' documented tolerances (1e-5 for IIR filters, ~1e-6 for the rest).
TOL = {torch.float64: 1e-10, torch.float32: 2e-5}


def ecg(shape=(2, 12, 2000), dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64).cumsum(-1) / 30
    return (x + 0.2 * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype)


def _skip_poly(name, config):
    if name == "resample" and config.get("method", "poly") == "poly" and not HAS_POLY:
        pytest.skip("fastecg.ops.resample is not there yet")


def test_every_registered_step_has_a_sample_config():
    assert set(STEP_CONFIGS) == set(PREPROCESSORS.list())


@pytest.mark.parametrize("name, config", [pytest.param(n, c, id=i) for n, c, i in step_cases()])
def test_step_config_round_trip_and_numpy_twin(name, config):
    _skip_poly(name, config)
    pm = PreprocManager({"name": name, **config}, fs=FS, lead_names=LEAD_NAMES)
    x = ecg()
    before = x.clone()
    out, fs_out = pm(x, FS)
    assert torch.equal(x, before)  # the caller's tensor is never written to
    config_saved = json.loads(json.dumps(pm.to_config()))
    again = PreprocManager.from_config(config_saved)
    assert again.to_config() == pm.to_config()
    out2, fs2 = again(x, FS)
    assert torch.equal(out2, out) and fs2 == fs_out
    # The same config on the NumPy path: same shape, rate and values.
    twin = NumpyPreprocManager.from_config(config_saved)
    assert twin.to_config() == config_saved
    ref, fs_ref = twin(x.numpy(), FS)
    assert ref.shape == tuple(out.shape) and fs_ref == fs_out
    assert rel_err(out, ref) < TOL[torch.float64]
    if name != "lead_select":  # the steps on their own (no lead names there)
        alone = NUMPY_PREPROCESSORS.build({"name": name, **config})
        assert rel_err(alone(x.numpy(), FS), ref) < TOL[torch.float64]
        module = PREPROCESSORS.build({"name": name, **config})
        takes_fs = "fs" in inspect.signature(module.forward).parameters
        assert torch.equal(module(x, FS) if takes_fs else module(x), out)
    ref32, _ = twin(x.float().numpy(), FS)
    out32, _ = pm(x.float(), FS)
    assert out32.dtype == torch.float32 and ref32.dtype == np.float32
    assert rel_err(out32, ref) < TOL[torch.float32] and rel_err(ref32, ref) < TOL[torch.float32]


# ---- sos_filter -------------------------------------------------------------------------

def test_notch_equals_the_transfer_function_filtfilt():
    x = ecg().numpy()
    b, a = ss.iirnotch(50.0, 30.0, fs=FS)
    out = SOSFilter("iirnotch", freq=50.0, q=30.0)(torch.from_numpy(x), FS)
    assert rel_err(out, ss.filtfilt(b, a, x)) < 1e-10


def test_causal_sos_filter_is_sosfilt():
    x = ecg().numpy()
    sos = ss.cheby1(4, 0.5, [1.0, 40.0], btype="bandpass", fs=FS, output="sos")
    step = SOSFilter("cheby1", order=4, rp=0.5, freq=[1.0, 40.0], zero_phase=False, fs=FS)
    assert rel_err(step(torch.from_numpy(x)), ss.sosfilt(sos, x)) < 1e-10
    given = SOSFilter("sos", sos=sos.tolist(), zero_phase=False)
    assert rel_err(given(torch.from_numpy(x)), ss.sosfilt(sos, x)) < 1e-10


@pytest.mark.parametrize("kwargs, match", [
    ({"design": "iirnotch", "freq": 50.0}, "q must be a positive number"),
    ({"design": "iirnotch", "freq": [1.0, 2.0], "q": 3.0}, "freq is one frequency"),
    ({"design": "butter", "freq": 50.0}, "order must be a positive integer"),
    ({"design": "butter", "order": 2, "freq": 50.0}, r"btype 'bandpass' takes \[low, high\]"),
    ({"design": "butter", "order": 2, "freq": [1, 2], "btype": "lowpas"},
     "unknown btype 'lowpas'; did you mean 'lowpass'"),
    ({"design": "cheby1", "order": 2, "freq": 5.0, "btype": "lowpass"}, "rp must be"),
    ({"design": "ellip", "order": 2, "freq": 5.0, "btype": "lowpass", "rp": 1.0}, "rs must be"),
    ({"design": "sos", "sos": [[1, 2, 3]]}, r"shape \(n_sections, 6\)"),
    ({"design": "sos", "sos": [[1, 0, 0, 2, 0, 0]]}, r"sos\[:, 3\] should be all ones"),
    ({"design": "sos", "sos": [[1, 0, 0, 1, 0, 0]], "fs": 500.0}, "fs does not apply"),
    ({"design": "notch"}, "unknown design 'notch'"),
    ({"design": "butter", "order": 2, "freq": [1.0, 260.0], "fs": 500.0},
     r"cut-off 260 Hz must lie inside \(0, fs/2\)"),
    ({"design": "iirnotch", "freq": 50.0, "q": 30.0, "padtype": "zero"}, "padtype must be"),
])
def test_sos_filter_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SOSFilter(**kwargs)


# ---- resample ---------------------------------------------------------------------------

RATES = [(500.0, 250.0), (500.0, 100.0), (500.0, 360.0), (257.0, 500.0), (360.0, 500.0)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n", [1000, 999, 37])
@pytest.mark.parametrize("fs_in, fs_out", RATES)
def test_fft_resample_is_scipy_resample(fs_in, fs_out, n, dtype):
    x = ecg((2, 3, n), dtype)
    out = Resample(fs_in, fs_out, method="fft")(x)
    num = int(n * fs_out / fs_in)
    ref = ss.resample(x.double().numpy(), num, axis=-1)
    assert out.shape == (2, 3, num) and out.dtype == dtype
    assert rel_err(out, ref) < (1e-12 if dtype == torch.float64 else 2e-6)


@pytest.mark.parametrize("method", ["poly", "fft", "linear", "decimate"])
def test_resample_of_an_empty_batch_is_empty(method):
    if method == "poly" and not HAS_POLY:
        pytest.skip("no compiled resample")
    out = Resample(500.0, 250.0, method=method)(torch.zeros(0, 12, 1000))
    assert out.shape == (0, 12, 500)
    ref = NumpyPreprocManager({"name": "resample", "dst_fs": 250.0, "method": method},
                              fs=500.0)(np.zeros((0, 12, 1000)))
    assert ref.shape == (0, 12, 500)


@pytest.mark.parametrize("n, n_out", [(3, 1), (1, 4)])
def test_linear_resample_to_or_from_one_sample_repeats_the_first(n, n_out):
    """interpolate(align_corners=True)'s answer on both paths (the NumPy path gave NaN:
    interp1d on a grid of repeated points)."""
    x = np.arange(1.0, 1.0 + 2 * n).reshape(1, 2, n)
    step = {"name": "resample", "siglen": n_out, "method": "linear"}
    want = np.repeat(x[..., :1], n_out, axis=-1)
    np.testing.assert_array_equal(NumpyPreprocManager(step, fs=FS)(x), want)
    np.testing.assert_array_equal(PreprocManager(step, fs=FS)(torch.from_numpy(x)).numpy(), want)


@pytest.mark.parametrize("fs_in, fs_out", RATES)
def test_linear_resample_is_the_aligned_interp1d(fs_in, fs_out):
    x = ecg((3, 1001))
    num = int(1001 * fs_out / fs_in)
    ref = interp1d(np.linspace(0, num - 1, 1001), x.numpy(), axis=-1)(np.arange(num))
    assert rel_err(Resample(fs_in, fs_out, method="linear")(x), ref) < 1e-12


@pytest.mark.parametrize("q", [2, 5])
def test_decimate_is_scipy_decimate(q):
    x = ecg((2, 12, 1003))
    out = Resample(FS, FS / q, method="decimate")(x)
    assert rel_err(out, ss.decimate(x.numpy(), q, axis=-1)) < 1e-10


@needs_poly
@pytest.mark.parametrize("fs_in, fs_out", RATES)
def test_poly_resample_is_resample_poly(fs_in, fs_out):
    x = ecg((2, 12, 1000))
    up, down = int(fs_out), int(fs_in)
    g = np.gcd(up, down)
    ref = ss.resample_poly(x.numpy(), up // g, down // g, axis=-1)
    assert rel_err(Resample(fs_in, fs_out)(x), ref) < 1e-10


@pytest.mark.parametrize("method", ["fft", "linear", "decimate"])
def test_resample_gradients(method):
    x = ecg((1, 2, 60)).requires_grad_(True)
    step = Resample(FS, 250.0, method=method)
    assert torch.autograd.gradcheck(step, (x,))


def test_resample_to_the_same_rate_passes_the_input_through():
    x = ecg()
    for method in ("poly", "fft", "linear", "decimate"):
        assert Resample(FS, FS, method=method)(x) is x
    assert Resample(siglen=2000, method="fft")(x) is x


@pytest.mark.parametrize("kwargs, match", [
    ({"dst_fs": 250.0, "siglen": 100}, "exactly one of dst_fs"),
    ({}, "exactly one of dst_fs"),
    ({"fs": 500.0, "dst_fs": 300.0, "method": "decimate"}, "not an integer decimation factor"),
    ({"fs": 500.0, "dst_fs": 500.0 * 2 ** 0.5}, "not a ratio of integers up/down of at most"),
    ({"dst_fs": 250.0, "method": "sinc"}, "unknown method 'sinc'"),
    ({"dst_fs": -250.0}, "fs must be"),
    ({"siglen": 0}, "siglen must be a positive integer"),
    ({"dst_fs": 250.0, "window": ("kaizer", 5.0)}, "window .*kaizer"),
    ({"dst_fs": 250.0, "window": {"kaiser": 5.0}}, "window must be a name"),
])
def test_resample_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Resample(**kwargs)


# ---- crop_or_pad and lead_select ----------------------------------------------------------

def test_crop_modes():
    x = ecg((2, 3, 1000))
    assert torch.equal(CropOrPad(600)(x), x[..., 200:800])
    assert torch.equal(CropOrPad(601, mode="left")(x), x[..., :601])
    g = torch.Generator().manual_seed(0)
    out = CropOrPad(100, mode="random")(ecg((500, 2, 1000)), generator=g)
    src = ecg((500, 2, 1000))
    starts = [int(torch.nonzero(torch.all(src[i, 0].unfold(0, 100, 1) == out[i, 0], dim=1))[0])
              for i in range(500)]
    assert len(set(starts)) > 200 and min(starts) >= 0 and max(starts) <= 900
    assert all(torch.equal(out[i, 1], src[i, 1, s:s + 100]) for i, s in enumerate(starts))
    same = CropOrPad(100, mode="random")(src, generator=torch.Generator().manual_seed(0))
    assert torch.equal(same, out)


@pytest.mark.parametrize("mode", ["center", "left"])
@pytest.mark.parametrize("pad", ["zero", "edge"])
def test_pad_modes(mode, pad):
    x = ecg((2, 3, 95))
    left = 0 if mode == "left" else 2
    ref = np.pad(x.numpy(), [(0, 0), (0, 0), (left, 100 - 95 - left)],
                 mode="constant" if pad == "zero" else "edge")
    assert np.array_equal(CropOrPad(100, mode=mode, pad=pad)(x).numpy(), ref)


@pytest.mark.parametrize("pad", ["zero", "edge"])
def test_random_pad_puts_each_record_at_its_own_offset(pad):
    x = ecg((300, 2, 50))
    out = CropOrPad(80, mode="random", pad=pad)(x, generator=torch.Generator().manual_seed(1))
    for i in range(0, 300, 37):
        start = int(torch.nonzero(torch.all(out[i, 0].unfold(0, 50, 1) == x[i, 0], dim=1))[0])
        assert torch.equal(out[i, :, start:start + 50], x[i])
        fill = x[i, :, :1] if pad == "edge" else 0.0
        assert torch.equal(out[i, :, :start], torch.zeros(2, start, dtype=x.dtype) + fill)


def test_crop_errors_and_duration():
    x = ecg((2, 3, 1000))
    assert CropOrPad(duration_s=1.5)(x, FS).shape == (2, 3, 750)
    with pytest.raises(ValueError, match="fewer than length=1200, and padding is disabled"):
        PreprocManager(CropOrPad(1200, pad=None))(x)
    with pytest.raises(ValueError, match="needs the sampling rate"):
        CropOrPad(duration_s=1.5)(x)
    with pytest.raises(ValueError, match="exactly one of length"):
        CropOrPad()
    with pytest.raises(ValueError, match="unknown mode 'centre'; did you mean 'center'"):
        CropOrPad(10, mode="centre")


def test_lead_select():
    x = ecg((2, 12, 50))
    out = LeadSelect(["V1", "avr", "I"])(x, LEAD_NAMES)
    assert torch.equal(out, x[:, [6, 3, 0]])
    assert LeadSelect(LEAD_NAMES)(x, LEAD_NAMES) is x
    assert torch.equal(LeadSelect(["II"], input_leads=LEAD_NAMES)(x), x[:, 1:2])
    with pytest.raises(ValueError, match=r"lead 'V7' is not in the record's leads"):
        LeadSelect(["V7"])(x, LEAD_NAMES)
    with pytest.raises(ValueError, match="names a lead twice"):
        LeadSelect(["I", "I"])
    with pytest.raises(ValueError, match="built for input leads"):
        PreprocManager(LeadSelect(["I"], input_leads=LEAD_NAMES))(x, lead_names=LEAD_NAMES[::-1])


def test_lead_select_of_a_1d_signal_is_the_same_error_on_both_paths():
    config = {"steps": [{"name": "lead_select", "leads": ["II"]}], "lead_names": ["II"]}
    x = ecg((500,))
    for pm, sig in ((PreprocManager.from_config(config), x),
                    (NumpyPreprocManager.from_config(config), x.numpy())):
        with pytest.raises(ValueError, match=r"LeadSelect: expected \(\.\.\., n_leads"):
            pm(sig)


# ---- baseline (one stage) -----------------------------------------------------------------

def test_one_median_stage_is_medfilt_bit_for_bit():
    x = ecg((2, 3, 1500))
    out = BaselineRemove(window1=0.4, window2=None, mode="constant")(x, FS)
    ref = np.stack([[row - ss.medfilt(row, 201) for row in rec] for rec in x.numpy()])
    assert np.array_equal(out.numpy(), ref)
    nearest = BaselineRemove(FS, window1=0.2, window2=None)(x)
    assert np.array_equal(nearest.numpy(), x.numpy() - ndimage.median_filter(
        x.numpy(), size=(1, 1, 101), mode="nearest"))
    x.requires_grad_(True)
    grad, = torch.autograd.grad(BaselineRemove(FS, window2=None)(x).sum(), x)
    assert torch.isfinite(grad).all()
    with pytest.raises(ValueError, match="window2=None.*'median' only"):
        BaselineRemove(window2=None, method="mean")


@pytest.mark.parametrize("mode", ["nearest", "constant", "reflect", "mirror", "wrap"])
def test_one_median_stage_of_numpy_twin_at_odd_lengths(mode):
    """The NumPy step takes the torch step's NaN rule and the modes' true extension of
    rows shorter than the window, and an empty signal (it crashed on 0 samples)."""
    config = {"steps": [{"name": "baseline_remove", "window1": 0.4, "window2": None,
                         "mode": mode}], "fs": 257.0}
    torch_pm, numpy_pm = (PreprocManager.from_config(config),
                          NumpyPreprocManager.from_config(config))
    for shape in ((2, 3, 2), (2, 3, 7), (3, 150), (150,), (12, 0), (0, 12, 0)):
        x = ecg(shape)
        if x.numel() > 4:
            x.view(-1)[3] = float("nan")
        want = torch_pm(x).numpy()
        got = numpy_pm(x.numpy())
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_gradients_flow_through_a_pipeline():
    pm = PreprocManager({"name": "sos_filter", "design": "iirnotch", "freq": 50.0, "q": 30.0},
                        {"name": "resample", "dst_fs": 250.0, "method": "fft"},
                        {"name": "crop_or_pad", "length": 900},
                        {"name": "normalize", "per_channel": True}, fs=FS)
    x = ecg((1, 2, 2000)).requires_grad_(True)
    (grad,) = torch.autograd.grad(pm(x).square().sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_fft_and_linear_take_any_rate_ratio():
    x = ecg((1, 2, 1000))
    fs_out = FS * 2 ** 0.5  # no ratio of small integers: fine without a polyphase filter
    for method in ("fft", "linear"):
        out, fs = PreprocManager(Resample(dst_fs=fs_out, method=method))(x, FS)
        assert out.shape[-1] == int(1000 * fs_out / FS) and fs == fs_out


def test_pipeline_moves_like_any_module():
    """nn.Module.to/.double()/.cpu() reach every step (a step's own ``_apply`` once
    shadowed the module's and broke them)."""
    pm = PreprocManager.from_recipe("st_mem")
    x = torch.randn(2, 12, 5000, dtype=torch.float64)
    before = pm(x.clone(), 500.0)[0]
    assert pm.to("cpu") is pm and pm.double() is pm
    after = pm(x.clone(), 500.0)[0]
    torch.testing.assert_close(after, before)


def test_per_lead_mean_and_std_run_along_leads():
    """A 1-D mean/std is one value per lead (torch_ecg's per-lead form), on the torch
    and NumPy paths, whatever the record length (it was broadcast along time)."""
    x = np.random.default_rng(3).standard_normal((2, 12, 500)) * 3 + 1
    mean, std = [0.1 * i for i in range(12)], [1.0 + 0.1 * i for i in range(12)]
    cfg = {"normalize": {"mean": mean, "std": std, "per_channel": True}}
    out = PreprocManager.from_config(cfg)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out.mean(-1), np.broadcast_to(mean, (2, 12)), atol=1e-12)
    np.testing.assert_allclose(out.std(-1, ddof=1), np.broadcast_to(std, (2, 12)), rtol=1e-6)
    np.testing.assert_allclose(NumpyPreprocManager.from_config(cfg)(x), out, atol=1e-12)
    naive = {"normalize": {"method": "naive", "mean": mean, "std": std}}
    ref = (x - np.asarray(mean)[:, None]) / np.asarray(std)[:, None]
    np.testing.assert_allclose(PreprocManager.from_config(naive)(torch.from_numpy(x)).numpy(),
                               ref, atol=1e-12)
    np.testing.assert_allclose(NumpyPreprocManager.from_config(naive)(x), ref, atol=1e-12)


def test_torch_ecg_keywords_are_taken():
    """torch_ecg's `inplace` on every preprocessor (the result written into the caller's
    tensor, as BaselineRemove already did; Resample's output is always new) and its
    manager-level `inplace` key (which torch_ecg's managers do not use either)."""
    x = torch.randn(2, 12, 1000, dtype=torch.float64)
    steps = [{"name": "bandpass", "fs": FS}, {"name": "normalize"},
             {"name": "min_max_normalize"}, {"name": "naive_normalize", "mean": 1.0},
             {"name": "z_score_normalize"}]
    for spec in steps:
        plain = PREPROCESSORS.build(spec)(x)
        y = x.clone()
        out = PREPROCESSORS.build({**spec, "inplace": True})(y)
        assert out.data_ptr() == y.data_ptr() and torch.equal(out, plain), spec["name"]
        assert torch.equal(PREPROCESSORS.build({**spec, "inplace": False})(x), plain)
    y = x.clone()
    assert PREPROCESSORS.build({"name": "resample", "fs": FS, "dst_fs": 250.0,
                                "inplace": True})(y).shape[-1] == 500 and torch.equal(y, x)
    pm = PreprocManager.from_config({"random": False, "inplace": True, "fs": FS,
                                     "bandpass": {}, "normalize": {}})
    assert [type(s).__name__ for s in pm.steps] == ["BandPass", "Normalize"]
    assert "inplace" not in pm.to_config()


def test_a_pipeline_never_writes_the_callers_tensor_with_inplace_steps():
    """`inplace=True` writes into the tensor a step is called with alone; in a pipeline
    the caller's tensor stays as it was, also after a step that passes its input through
    (resampling to the same rate), and the result equals the out-of-place pipeline's."""
    x = torch.randn(2, 12, 1000, dtype=torch.float64)
    keep = x.clone()
    for spec in [{"name": "bandpass"}, {"name": "normalize"}, {"name": "min_max_normalize"},
                 {"name": "naive_normalize", "mean": 1.0}, {"name": "z_score_normalize"},
                 {"name": "baseline_remove"}]:
        for first in ([], [{"name": "resample", "dst_fs": FS}]):
            steps = first + [{**spec, "inplace": True}]
            out = PreprocManager(*steps, fs=FS)(x)
            assert torch.equal(x, keep), spec["name"]
            plain = PreprocManager(*(first + [spec]), fs=FS)(x)
            assert torch.equal(out, plain) and out.data_ptr() != x.data_ptr(), spec["name"]


def test_per_lead_stats_as_arrays_and_their_count_checked_before_any_work():
    x = torch.randn(2, 12, 1000, dtype=torch.float64)
    mean, std = np.linspace(-1, 1, 12), np.linspace(1, 2, 12)
    want = Normalize(mean=mean.tolist(), std=std.tolist(), per_channel=True)(x)
    torch.testing.assert_close(Normalize(mean=mean, std=std, per_channel=True)(x), want,
                               rtol=0, atol=0)
    torch.testing.assert_close(want.mean(-1), torch.from_numpy(mean).expand(2, 12))
    pm = PreprocManager("bandpass", {"name": "normalize", "mean": [0.0] * 5}, fs=FS)
    with pytest.raises(ValueError, match="mean has 5 values .one per lead., but the signal "
                                         "reaching it has 12 leads"):
        pm(x)


@pytest.mark.parametrize("spec", [{"design": "iirnotch", "freq": 50.0, "q": 30.0, "fs": FS},
                                  {"design": "cheby1", "freq": [0.5, 40.0], "order": 4,
                                   "rp": 0.5, "fs": FS, "zero_phase": False}])
def test_sos_filter_step_compiles_fullgraph(spec):
    """Its SciPy design is looked up, not traced (the design ran np.isscalar under
    dynamo); the compiled step equals the eager one."""
    torch._dynamo.reset()
    step = SOSFilter(**spec)
    x = ecg((2, 3, 1000), torch.float64)
    torch.testing.assert_close(torch.compile(step, fullgraph=True)(x), step(x), rtol=0,
                               atol=1e-12)


def test_a_pipeline_with_filters_compiles_fullgraph():
    """The pipeline's check of its steps looks the filters' needs up (filled when it is
    built at a known rate) instead of tracing SciPy's designs, so a PreprocManager with
    a band-pass and a notch, and a recipe inside a model, compile with fullgraph=True."""
    torch._dynamo.reset()
    pm = PreprocManager("bandpass", {"name": "sos_filter", "design": "iirnotch", "freq": 50.0,
                                     "q": 30.0}, "normalize", fs=FS)
    x = ecg((2, 3, 1000), torch.float64)
    torch.testing.assert_close(torch.compile(pm, fullgraph=True)(x), pm(x), rtol=0, atol=1e-12)
    model = torch.nn.Sequential(PreprocManager.from_recipe("st_mem", fs=FS), torch.nn.Identity())
    x = ecg((1, 12, 5000))
    torch.testing.assert_close(torch.compile(model, fullgraph=True)(x), model(x), rtol=0,
                               atol=1e-5)



def test_a_normalize_step_with_tensor_stats_neither_copies_them_nor_breaks_compile():
    """The pipeline's per-call check reads the stats' shape, not their values (a tolist
    per call: a device copy on a GPU, and no fullgraph compile)."""
    torch._dynamo.reset()
    pm = PreprocManager(Normalize(mean=torch.zeros(12, dtype=torch.float64),
                                  std=torch.full((12,), 2.0, dtype=torch.float64),
                                  per_channel=True), fs=FS)
    x = ecg((2, 12, 500), torch.float64)
    torch.testing.assert_close(torch.compile(pm, fullgraph=True)(x), pm(x), rtol=0, atol=0)
