"""The NumPy path against the torch path and SciPy on the inputs a user hands it: dtypes,
layouts (reversed, Fortran order, read-only), 1-D to 4-D, integer and 0-d arrays, short,
constant and poisoned records."""

import importlib.util
import json
import pathlib

import numpy as np
import pytest
import torch
from scipy import signal, stats

from fastecg import numpy_path
from fastecg.numpy_path.preproc import NUMPY_PREPROCESSORS
from fastecg.preprocessors import PreprocManager

_spec = importlib.util.spec_from_file_location(
    "step_configs", pathlib.Path(__file__).parent / "preprocessors" / "step_configs.py")
step_configs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(step_configs)
LEAD_NAMES = step_configs.LEAD_NAMES

FS = 500
# Relative to the reference's peak: the brief's bounds for float32 and float64. Float64
# allows 2e-12: the linear resampler's grid positions (SciPy's interp1d on a linspace
# grid, torch's j * ratio) round differently, ~1e-12 of the peak.
TOL = {np.float32: 1e-6, np.float64: 2e-12}
HAS_POLY = importlib.util.find_spec("fastecg.ops.resample") is not None


def ecg(shape, dtype=np.float64, seed=0):
    """A random walk plus noise (ECG-like spectrum), with a DC offset."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).cumsum(-1) / 30 + 0.2 * rng.standard_normal(shape) + 1.5
    return x.astype(dtype)


def layouts(x):
    """The same values as a C-order array, reversed view, Fortran array, read-only array."""
    rev = np.ascontiguousarray(x[..., ::-1])[..., ::-1]  # a negative-stride view of x
    frozen = x.copy()
    frozen.flags.writeable = False
    return {"C": x, "reversed": rev, "fortran": np.asfortranarray(x), "read-only": frozen}


def _cases():
    for name, config, cid in step_configs.step_cases():
        if name == "resample" and config.get("method", "poly") == "poly" and not HAS_POLY:
            continue
        yield pytest.param(name, config, id=cid)


@pytest.mark.parametrize("name, config", list(_cases()))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_a_saved_config_on_the_numpy_path_is_the_torch_pipeline(name, config, dtype):
    pm = PreprocManager({"name": name, **config}, fs=FS, lead_names=LEAD_NAMES)
    twin = numpy_path.PreprocManager.from_config(json.loads(json.dumps(pm.to_config())))
    for shape in [(12, 2000), (2, 12, 2000), (2, 1, 12, 2000)]:
        x = ecg(shape, dtype)
        ref, fs_ref = pm(torch.from_numpy(x), FS)
        ref = ref.numpy()
        for layout, sig in (layouts(x) if len(shape) == 3 else {"C": x}).items():
            before = sig.copy()
            out, fs_out = twin(sig, np.int64(FS))  # fs as a NumPy integer
            assert out.dtype == dtype and out.shape == ref.shape, layout
            assert fs_out == fs_ref and type(fs_out) is float
            err = np.abs(out.astype(np.float64) - ref).max() / np.abs(ref).max()
            assert err < TOL[dtype], (shape, layout, err)
            assert np.array_equal(sig, before)  # the caller's array is never written


@pytest.mark.parametrize("name, config", [
    ("sos_filter", {"design": "butter", "order": 2, "freq": 20.0, "btype": "lowpass"}),
    ("sos_filter", {"design": "butter", "order": 2, "freq": 20.0, "btype": "lowpass",
                    "zero_phase": False}),
    ("resample", {"dst_fs": 250.0, "method": "fft"}),
    ("resample", {"dst_fs": 360.0, "method": "linear"}),
    ("resample", {"dst_fs": 100.0, "method": "decimate"}),
    ("baseline_remove", {"window1": 0.4, "window2": None}),
])
def test_a_step_on_its_own_refuses_integer_samples(name, config):
    # WFDB's digital units (int16): SciPy filters them in float64, which the step would
    # round back to int16 (truncated); the torch steps refuse them, and so does this one.
    digital = (ecg((12, 2000)) * 200).astype(np.int16)
    step = NUMPY_PREPROCESSORS.build({"name": name, **config})
    with pytest.raises(TypeError, match="floating-point.*astype"):
        step(digital, FS)
    analog = digital.astype(np.float64)
    assert step(analog, FS).dtype == np.float64


def test_moving_steps_take_integer_samples_exactly():
    digital = (ecg((2, 12, 2000)) * 200).astype(np.int16)
    crop = NUMPY_PREPROCESSORS.build({"name": "crop_or_pad", "length": 1500})
    assert np.array_equal(crop(digital), digital[..., 250:1750])
    select = NUMPY_PREPROCESSORS.build({"name": "lead_select", "leads": ["V1", "I"]})
    assert np.array_equal(select(digital, LEAD_NAMES), digital[..., [6, 0], :])


@pytest.mark.parametrize("call", [
    lambda x: numpy_path.bandpass(x, FS),
    lambda x: numpy_path.bandpass(x, FS, method="fir"),
    lambda x: numpy_path.remove_baseline(x, FS),
    lambda x: NUMPY_PREPROCESSORS.build({"name": "bandpass"})(x, FS),
    lambda x: NUMPY_PREPROCESSORS.build({"name": "sos_filter", "design": "iirnotch",
                                         "freq": 50.0, "q": 30.0})(x, FS),
    lambda x: NUMPY_PREPROCESSORS.build({"name": "resample", "dst_fs": 250.0})(x, FS),
    lambda x: NUMPY_PREPROCESSORS.build({"name": "crop_or_pad", "length": 10})(x, FS),
    lambda x: NUMPY_PREPROCESSORS.build({"name": "normalize", "per_channel": True})(x, FS),
], ids=["bandpass", "bandpass-fir", "remove_baseline", "BandPassStep", "SOSFilterStep",
        "ResampleStep", "CropOrPadStep", "NormalizeStep"])
def test_a_0d_array_is_a_value_error(call):
    with pytest.raises(ValueError, match="0-d"):
        call(np.array(1.0))


@pytest.mark.parametrize("method", ["iir", "fir"])
@pytest.mark.parametrize("n", [1, 5, 27, 28, 40])
def test_short_records_filter_as_scipy_or_raise_its_error(method, n):
    x = ecg((2, n))
    if method == "iir":
        design = signal.butter(4, [0.5, 45.0], btype="bandpass", fs=FS, output="sos")
        scipy_call = lambda: signal.sosfiltfilt(design, x)  # noqa: E731
    else:
        taps = signal.firwin(101, [0.5, 45.0], pass_zero=False, fs=FS)
        scipy_call = lambda: signal.filtfilt(taps, 1.0, x, padlen=n - 1)  # noqa: E731
    kwargs = {"method": "fir", "numtaps": 101, "padlen": n - 1} if method == "fir" else {}
    try:
        expected = scipy_call()
    except ValueError as err:
        with pytest.raises(ValueError, match="padlen"):
            numpy_path.bandpass(x, FS, **kwargs)
        with pytest.raises(ValueError, match="padlen"):
            from fastecg.ops import bandpass
            bandpass(torch.from_numpy(x), FS, **kwargs)
        assert "padlen" in str(err)
        return
    np.testing.assert_allclose(numpy_path.bandpass(x, FS, **kwargs), expected,
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_constant_record_normalizes_to_the_target_mean_or_nan_without_eps(dtype):
    # 0.1 is not a binary fraction: a one-pass mean leaves a rounding residue that
    # eps=0 would blow up to +-1 (scipy.stats.zscore does); the record's spread is 0.
    x = np.stack([ecg((12, 1000), dtype), np.full((12, 1000), 0.1, dtype)])
    z = numpy_path.normalize(x, mean=2.0, std=3.0)
    assert np.all(z[1] == 2.0) and np.isfinite(z).all()
    assert np.all(numpy_path.normalize(x, "min-max", per_channel=True)[1] == 0.0)
    ours = numpy_path.normalize(x, ddof=0, eps=0.0)
    assert np.isnan(ours[1]).all()  # 0 / 0
    np.testing.assert_allclose(ours[0], stats.zscore(x[0].astype(np.float64), axis=None),
                               rtol=0, atol=1e-5 if dtype == np.float32 else 1e-12)
