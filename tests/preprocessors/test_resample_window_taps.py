"""Resample(method="poly") with the filter's taps as `window`, as
``scipy.signal.resample_poly(x, up, down, window=taps)`` takes them: on both paths, in
every container, before and after a JSON config round trip."""

import json

import numpy as np
import pytest
import scipy.signal as ss
import torch

from fastecg.numpy_path.preproc import PreprocManager as NumpyPreprocManager
from fastecg.numpy_path.preproc import ResampleStep
from fastecg.preprocessors import PreprocManager, Resample
from fastecg.transforms.config import SignalInfo

pytest.importorskip("fastecg.ops.resample")

# Relative to the peak of SciPy's output.
TOL = {np.float64: 1e-12, np.float32: 1e-6}
# (fs, dst_fs, taps): downsampling by 2 with odd taps, 3/2 upsampling with even taps
# (SciPy centres the output on tap (len - 1) // 2).
CASES = {
    "down2": (500.0, 250.0, ss.firwin(41, 0.45, window="hamming")),
    "up3down2": (500.0, 750.0, ss.firwin(30, 0.3)),
}
FORMS = {
    "list": lambda t: [float(v) for v in t],
    "tuple": lambda t: tuple(float(v) for v in t),
    "ndarray": lambda t: t.copy(),
    "float32_ndarray": lambda t: t.astype(np.float32),
    "tensor": lambda t: torch.from_numpy(t.copy()),
}


def ecg(dtype, shape=(2, 12, 997), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).cumsum(-1) / 30 + 0.2 * rng.standard_normal(shape)
    return x.astype(dtype)


def assert_close(out, ref, dtype):
    # SciPy returns float64 for float32 input with float64 taps; the steps keep float32.
    out = np.asarray(out)
    assert out.dtype == dtype and out.shape == ref.shape
    assert np.abs(out - ref).max() <= TOL[dtype] * np.abs(ref).max()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("case", CASES)
def test_taps_match_scipy_on_both_paths_and_after_json(case, form, dtype):
    fs, dst_fs, taps = CASES[case]
    window = FORMS[form](taps)
    # The taps the step filters with: what the caller gave, read in float64.
    used = np.asarray(FORMS["list"](np.asarray(window, dtype=np.float64)))
    up, down = (1, 2) if case == "down2" else (3, 2)
    x = ecg(dtype)
    ref = ss.resample_poly(x, up, down, axis=-1, window=used)

    assert_close(Resample(fs=fs, dst_fs=dst_fs, window=window)(torch.from_numpy(x)), ref,
                 dtype)
    built = [PreprocManager(Resample(dst_fs=dst_fs, window=window), fs=fs),
             NumpyPreprocManager(ResampleStep(dst_fs=dst_fs, window=window), fs=fs)]
    config = json.loads(json.dumps(built[0].to_config()))
    saved = config["steps"][0]["window"]
    assert isinstance(saved, list) and all(type(v) is float for v in saved)
    np.testing.assert_array_equal(saved, used)
    assert json.loads(json.dumps(built[1].to_config())) == config
    rebuilt = [PreprocManager.from_config(config), NumpyPreprocManager.from_config(config)]
    for pm in built + rebuilt:
        sig = torch.from_numpy(x) if isinstance(pm, PreprocManager) else x
        assert_close(pm(sig), ref, dtype)
    assert rebuilt[0].to_config() == config


def test_taps_are_copied_when_built():
    # A caller's list changed afterwards changes neither the filter nor the saved config.
    taps = ss.firwin(41, 0.45)
    window = list(taps)
    step = Resample(fs=500.0, dst_fs=250.0, window=window)
    window[:] = [0.0] * len(window)
    x = ecg(np.float64)
    assert_close(step(torch.from_numpy(x)), ss.resample_poly(x, 1, 2, axis=-1, window=taps),
                 np.float64)
    np.testing.assert_array_equal(step.config()["window"], taps)


def test_integer_taps_are_saved_as_floats():
    step = ResampleStep(fs=500.0, dst_fs=250.0, window=np.array([1, 2, 1]))
    assert step.config()["window"] == [1.0, 2.0, 1.0]
    assert all(type(v) is float for v in step.config()["window"])


@pytest.mark.parametrize("cls", [Resample, ResampleStep])
@pytest.mark.parametrize("window, match", [
    ([], "non-empty 1-D"),
    ((), "non-empty 1-D"),
    (np.array([]), "non-empty 1-D"),
    (torch.empty(0), "non-empty 1-D"),
    (np.ones((2, 3)), "non-empty 1-D"),
    ([[0.5, 0.5]], "non-empty 1-D"),
    (np.array(0.5), "non-empty 1-D"),
    ([0.25, float("nan"), 0.25], "finite"),
    ((0.25, float("inf")), "finite"),
    (np.array([0.5, -np.inf]), "finite"),
    (torch.tensor([0.5, float("nan")]), "finite"),
    ([0.5, 1j], "real numbers"),
    ([0.5, "a"], "real numbers"),
    ([0.5, None], "finite"),  # (NumPy reads None as NaN)
    ({"a": 1.0}, "must be a name"),
])
def test_bad_taps_are_refused_when_built(cls, window, match):
    with pytest.raises(ValueError, match=f"Resample: window.*{match}"):
        cls(fs=500.0, dst_fs=250.0, window=window)


@pytest.mark.parametrize("cls", [Resample, ResampleStep])
def test_named_windows_still_round_trip(cls):
    # A (name, *params) tuple is a named window, saved as a list and read back as one.
    step = cls(fs=500.0, dst_fs=250.0, window=("kaiser", 8.0))
    saved = json.loads(json.dumps(step.config()))
    assert saved["window"] == ["kaiser", 8.0]
    x = ecg(np.float64)
    sig = torch.from_numpy(x) if cls is Resample else x
    ref = ss.resample_poly(x, 1, 2, axis=-1, window=("kaiser", 8.0))
    for s in (step, cls(**saved)):
        assert_close(s.run(sig, SignalInfo(fs=500.0, n_samples=x.shape[-1]), None), ref,
                     np.float64)
