"""What a pipeline takes, on both paths alike: integer samples exactly where every step
only moves them; NumPy integers and arrays wherever Python numbers and lists are taken,
with the same outputs after a JSON round trip; misspelt names with close matches."""

import json

import numpy as np
import pytest
import torch
from scipy import signal

from fastecg import numpy_path
from fastecg.numpy_path.preproc import CropOrPadStep
from fastecg.preprocessors import CropOrPad, PreprocManager
from fastecg.transforms.recipes import STANDARD_LEADS

FS = 500.0
LEADS = list(STANDARD_LEADS)
MANAGERS = {"torch": PreprocManager, "numpy": numpy_path.PreprocManager}


def digital(shape=(2, 12, 1000)):
    """WFDB-like int16 digital units."""
    rng = np.random.default_rng(0)
    return (rng.standard_normal(shape).cumsum(-1) * 20).astype(np.int16)


def as_input(path, array):
    return torch.from_numpy(array) if path == "torch" else array


def as_numpy(out):
    return out.numpy() if isinstance(out, torch.Tensor) else out


# ---- integer samples ---------------------------------------------------------------------

@pytest.mark.parametrize("path", MANAGERS)
def test_integer_samples_pass_a_pipeline_that_only_moves_them(path):
    sig = digital()
    pm = MANAGERS[path]({"name": "lead_select", "leads": ["V1", "I"]},
                        {"name": "crop_or_pad", "length": 600},
                        {"name": "crop_or_pad", "length": 700, "mode": "left"},
                        fs=FS, lead_names=LEADS)
    out = as_numpy(pm(as_input(path, sig)))
    expected = np.pad(sig[..., [6, 0], 200:800], [(0, 0), (0, 0), (0, 100)])
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("path", MANAGERS)
def test_integer_samples_are_refused_by_the_first_computing_step_before_any_work(path):
    calls = []

    class Spy(CropOrPad if path == "torch" else CropOrPadStep):
        def run(self, sig, info, generator=None):
            calls.append(info)
            return super().run(sig, info, generator)

    pm = MANAGERS[path](Spy(length=800), {"name": "lead_select", "leads": ["I"]},
                        {"name": "bandpass", "lowcut": 0.5, "highcut": 40.0}, "normalize",
                        fs=FS, lead_names=LEADS)
    with pytest.raises(TypeError, match=r"PreprocManager step 2 \(bandpass\): expected a "
                                        r"floating-point .*int16"):
        pm(as_input(path, digital()))
    assert calls == []  # refused before the crop ran
    analog = digital().astype(np.float32)
    assert as_numpy(pm(as_input(path, analog))).dtype == np.float32


@pytest.mark.parametrize("path", MANAGERS)
def test_integer_rule_does_not_depend_on_the_draw(path):
    # A computing step that this call may leave out still refuses integers: whether a
    # call fails must not be a coin toss.
    pm = MANAGERS[path]({"name": "crop_or_pad", "length": 500},
                        {"name": "normalize", "prob": 0.0}, fs=FS)
    with pytest.raises(TypeError, match=r"step 1 \(normalize\)"):
        pm(as_input(path, digital()))


# ---- NumPy numbers and arrays as arguments -----------------------------------------------

@pytest.mark.parametrize("path", MANAGERS)
def test_add_and_rearrange_take_numpy_integers(path):
    pm = MANAGERS[path]("normalize", fs=FS)
    pm.add_({"name": "crop_or_pad", "length": 10}, pos=np.int64(0))
    assert [step["name"] for step in pm.to_config()["steps"]] == ["crop_or_pad", "normalize"]
    pm.rearrange([np.int64(1), np.int32(0)])
    assert [step["name"] for step in pm.to_config()["steps"]] == ["normalize", "crop_or_pad"]
    with pytest.raises(ValueError, match="pos must be"):
        pm.add_("normalize", pos=np.int64(3))


@pytest.mark.parametrize("path", MANAGERS)
def test_numpy_integer_siglen_gives_what_its_saved_config_gives(path):
    # scipy.signal.resample computes a float32 signal in float64 for a NumPy integer
    # length; the step must compute what the JSON config (a Python int) rebuilds.
    x = np.random.default_rng(1).standard_normal((2, 3, 3000)).astype(np.float32)
    pm = MANAGERS[path]({"name": "resample", "siglen": np.int64(777), "method": "fft"})
    again = MANAGERS[path].from_config(json.loads(json.dumps(pm.to_config())))
    out, fs_out = pm(as_input(path, x), FS)
    assert type(fs_out) is float and fs_out == FS * 777 / 3000
    np.testing.assert_array_equal(as_numpy(out), as_numpy(again(as_input(path, x), FS)[0]))
    if path == "numpy":
        np.testing.assert_array_equal(out, signal.resample(x, 777, axis=-1))


@pytest.mark.parametrize("path", MANAGERS)
@pytest.mark.parametrize("freq", [np.array([1.0, 30.0]), torch.tensor([1.0, 30.0])],
                         ids=["ndarray", "tensor"])
def test_sos_filter_takes_its_band_as_an_array(path, freq):
    x = np.random.default_rng(2).standard_normal((2, 3, 2000))
    pm = MANAGERS[path]({"name": "sos_filter", "design": "butter", "order": 3,
                         "freq": freq}, fs=FS)
    ref = signal.sosfiltfilt(signal.butter(3, [1.0, 30.0], btype="bandpass", fs=FS,
                                           output="sos"), x, axis=-1)
    np.testing.assert_allclose(as_numpy(pm(as_input(path, x))), ref, rtol=0, atol=1e-9)
    config = json.loads(json.dumps(pm.to_config()))
    assert config["steps"][0]["freq"] == [1.0, 30.0]
    np.testing.assert_array_equal(as_numpy(MANAGERS[path].from_config(config)(
        as_input(path, x))), as_numpy(pm(as_input(path, x))))


# ---- misspelt names ----------------------------------------------------------------------

@pytest.mark.parametrize("path", MANAGERS)
def test_misspelt_option_of_a_torch_ecg_config_is_suggested(path):
    with pytest.raises(ValueError, match=r"key 'randm' is neither an option .* nor a step: "
                                         r"unknown preprocessor 'randm'; did you mean "
                                         r"'random'"):
        MANAGERS[path].from_config({"randm": True, "normalize": {}})


@pytest.mark.parametrize("path", MANAGERS)
@pytest.mark.parametrize("name", [["st_mem"], {"st_mem": 1}, 3])
def test_from_recipe_with_a_name_that_is_no_string_is_a_value_error(path, name):
    with pytest.raises(ValueError, match="unknown recipe"):
        MANAGERS[path].from_recipe(name)


@pytest.mark.parametrize("path", MANAGERS)
def test_random_flag_takes_numpy_bools(path):
    # A flag read from a NumPy array or config is np.bool_; it means what bool does.
    x = digital((2, 12, 100))
    for flag in (np.True_, np.False_):
        pm = MANAGERS[path](CropOrPad(length=50) if path == "torch" else CropOrPadStep(length=50),
                            random=flag)
        assert pm.random is bool(flag)
        config = json.loads(json.dumps(pm.to_config()))
        assert config["random"] is bool(flag)
        out = np.asarray(pm(as_input(path, x)))
        np.testing.assert_array_equal(out, x[..., 25:75])  # centre crop, by hand
    for bad in (1, "yes", None, np.float64(1.0)):
        with pytest.raises(ValueError, match="PreprocManager: random must be True or False"):
            MANAGERS[path](random=bad)
