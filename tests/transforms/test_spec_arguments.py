"""The preprocessing steps' arguments are checked when a step is built, on the torch and
the NumPy path alike (they share fastecg.transforms.designs): a value that makes no
sense (inf or NaN where a finite number is meant, a non-bool flag) is a ValueError naming
the argument there, not a failure when the pipeline is saved or run; the valid edge
values (NumPy bools and floats, None where it means the default) still build, save and
give SciPy's result."""

import json
import math

import numpy as np
import pytest
import scipy.signal as ss
import torch

from fastecg.numpy_path.preproc import NUMPY_PREPROCESSORS
from fastecg.numpy_path.preproc import PreprocManager as NumpyPreprocManager
from fastecg.preprocessors import PreprocManager
from fastecg.registry import PREPROCESSORS

FS = 500.0
REGISTRIES = [pytest.param(PREPROCESSORS, id="torch"),
              pytest.param(NUMPY_PREPROCESSORS, id="numpy")]

NOT_BOOL = [math.nan, math.inf, "no", 1, 0.0, None]
NOT_FINITE = [math.inf, -math.inf, math.nan, np.float64(np.inf), np.float32(np.nan)]

LOWPASS = {"design": "butter", "order": 2, "freq": 20.0, "btype": "lowpass"}
# (step, valid arguments, argument under test, bad values)
BAD = [
    ("bandpass", {}, "inplace", NOT_BOOL),
    ("bandpass", {}, "lowcut", NOT_FINITE),
    ("bandpass", {"lowcut": None}, "highcut", NOT_FINITE),
    ("baseline_remove", {}, "inplace", NOT_BOOL),
    ("baseline_remove", {}, "window1", NOT_FINITE),
    ("baseline_remove", {}, "window2", NOT_FINITE),
    ("normalize", {}, "inplace", NOT_BOOL),
    ("normalize", {}, "per_channel", NOT_BOOL),
    ("normalize", {}, "mean", NOT_FINITE + [[0.0, math.inf], np.array([1.0, np.nan]),
                                            torch.tensor([0.0, math.nan]), "0", True, None]),
    ("normalize", {}, "std", NOT_FINITE + [[1.0, math.inf], torch.tensor([math.inf]), "1"]),
    ("min_max_normalize", {}, "per_channel", NOT_BOOL),
    ("min_max_normalize", {}, "inplace", NOT_BOOL),
    ("naive_normalize", {}, "mean", NOT_FINITE),
    ("naive_normalize", {}, "std", NOT_FINITE),
    ("z_score_normalize", {}, "mean", NOT_FINITE),
    ("z_score_normalize", {}, "std", NOT_FINITE),
    ("z_score_normalize", {}, "per_channel", NOT_BOOL),
    ("sos_filter", LOWPASS, "zero_phase", NOT_BOOL),
    ("sos_filter", {"design": "iirnotch", "freq": 50.0}, "q", NOT_FINITE),
    ("sos_filter", {**LOWPASS, "design": "cheby1", "rp": 0.5}, "rp", NOT_FINITE),
    ("sos_filter", {**LOWPASS, "design": "cheby2", "rs": 40.0}, "rs", NOT_FINITE),
    ("sos_filter", {**LOWPASS, "design": "ellip", "rp": 0.5, "rs": 40.0}, "rs", NOT_FINITE),
    # given to a design that ignores it: still saved in the config
    ("sos_filter", LOWPASS, "rp", NOT_FINITE),
    ("sos_filter", LOWPASS, "q", NOT_FINITE),
    ("sos_filter", LOWPASS, "freq", NOT_FINITE),
    ("resample", {"dst_fs": 250.0}, "inplace", NOT_BOOL),
    ("resample", {"dst_fs": 250.0}, "window",
     NOT_FINITE + [("kaiser", math.inf), ("kaiser", math.nan), ["kaiser", math.inf],
                   ("general_gaussian", 1.5, math.nan), (0.25, math.nan, 0.25)]),
    # the window is saved with every method, so it is checked with every method
    ("resample", {"dst_fs": 250.0, "method": "fft"}, "window", [math.inf, ("kaiser", math.nan)]),
    ("resample", {"dst_fs": 100.0, "method": "decimate"}, "window", [math.nan]),
]


@pytest.mark.parametrize("registry", REGISTRIES)
@pytest.mark.parametrize("name, base, arg, bad", [
    pytest.param(n, b, a, v, id=f"{n}-{a}-{i}")
    for n, b, a, values in BAD for i, v in enumerate(values)])
def test_bad_argument_raises_when_built_naming_it(registry, name, base, arg, bad):
    with pytest.raises(ValueError, match=rf"\b{arg}\b"):
        registry.get(name)(**{**base, arg: bad})


# Valid edge values: NumPy bools and floats, None meaning the default.
EDGE = [
    ("bandpass", {"inplace": np.True_, "lowcut": np.float32(0.5), "highcut": None}),
    ("bandpass", {"inplace": np.False_, "lowcut": None, "highcut": np.float64(40.0)}),
    ("baseline_remove", {"inplace": np.bool_(False), "window1": np.float32(0.25),
                         "window2": None}),
    ("normalize", {"per_channel": np.True_, "inplace": np.False_, "mean": np.float32(0.5),
                   "std": np.float64(2.0), "eps": np.float64(0.0)}),
    ("normalize", {"method": "naive", "mean": np.array([0.5] * 12), "std": [1.0] * 12}),
    ("normalize", {"method": "naive", "mean": torch.full((12,), 0.25), "std": 1e-300}),
    ("min_max_normalize", {"per_channel": np.True_}),
    ("sos_filter", {"design": "iirnotch", "freq": np.float32(50.0), "q": np.float64(30.0),
                    "zero_phase": np.True_}),
    ("sos_filter", {**LOWPASS, "design": "ellip", "rp": np.float32(0.5), "rs": 40,
                    "zero_phase": np.False_, "q": None}),
    ("resample", {"dst_fs": 250.0, "window": np.float64(5.0), "inplace": np.True_}),
    ("resample", {"dst_fs": 250.0, "window": ["kaiser", np.float32(8.0)]}),
    ("resample", {"dst_fs": 250.0, "method": "fft", "window": "hann"}),
]


def ecg(n_records=2, n_leads=12, n_samples=2000, seed=0):
    g = np.random.default_rng(seed)
    t = np.arange(n_samples) / FS
    return (np.sin(2 * np.pi * 1.3 * t) + 0.3 * np.sin(2 * np.pi * 50 * t)
            + 0.1 * g.standard_normal((n_records, n_leads, n_samples)))


@pytest.mark.parametrize("name, config", [pytest.param(n, c, id=f"{n}-{i}")
                                          for i, (n, c) in enumerate(EDGE)])
def test_valid_edge_values_build_and_round_trip(name, config):
    for registry in (PREPROCESSORS, NUMPY_PREPROCESSORS):
        registry.get(name)(**config)  # builds on both paths
    pm = PreprocManager(PREPROCESSORS.get(name)(**config), fs=FS)
    saved = json.loads(json.dumps(pm.to_config()))
    again = PreprocManager.from_config(saved)
    assert again.to_config() == saved
    twin = NumpyPreprocManager.from_config(saved)
    assert twin.to_config() == saved
    x = ecg()
    out, fs_out = pm(torch.from_numpy(x), FS)
    out2, fs2 = again(torch.from_numpy(x), FS)
    ref, fs_ref = twin(x, FS)
    assert torch.equal(out, out2) and fs_out == fs2 == fs_ref
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max())


def test_edge_values_give_scipy_results():
    """NumPy scalars where numbers are meant act as the numbers they hold."""
    x = ecg()
    step = NUMPY_PREPROCESSORS.get("sos_filter")(design="iirnotch", freq=np.float32(50.0),
                                                 q=np.float64(30.0), zero_phase=np.True_)
    sos = ss.tf2sos(*ss.iirnotch(50.0, 30.0, fs=FS))
    np.testing.assert_allclose(step(x, FS), ss.sosfiltfilt(sos, x, axis=-1), rtol=0,
                               atol=1e-12)
    step = PREPROCESSORS.get("naive_normalize")(mean=np.float32(0.5), std=np.float64(2.0),
                                                per_channel=np.False_)
    np.testing.assert_allclose(step(torch.from_numpy(x)).numpy(), (x - 0.5) / 2.0, rtol=1e-12)
    step = PREPROCESSORS.get("resample")(dst_fs=250.0, window=np.float64(5.0),
                                         inplace=np.True_)
    ref = ss.resample_poly(x, 1, 2, axis=-1, window=("kaiser", 5.0))
    np.testing.assert_allclose(step(torch.from_numpy(x), FS).numpy(), ref, rtol=0,
                               atol=1e-10 * np.abs(ref).max())


@pytest.mark.parametrize("window", [math.inf, ("kaiser", math.nan)])
def test_resample_op_rejects_a_non_finite_window_parameter(window):
    """The window check is fastecg._spec's, shared with fastecg.ops.resample, which
    designed NaN taps (a NaN output) from such a window before."""
    from fastecg.ops import resample

    with pytest.raises(ValueError, match="window"):
        resample(torch.randn(1, 2, 100, dtype=torch.float64), 2, 1, window=window)
