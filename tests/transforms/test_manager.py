"""TransformManager, the one pipeline base: configs, order, probabilities, the signal's
description carried from step to step, and errors before any work. Exercised through
PreprocManager (its preprocessing subclass) and through a toy subclass with its own
registry, as the augmentation manager will be."""

import json

import pytest
import torch
from torch import nn

from fastecg.ops._dispatch import BACKENDS
from fastecg.preprocessors import (BandPass, Normalize, PreprocManager, Resample, SOSFilter)
from fastecg.registry import Registry
from fastecg.transforms import SignalInfo, TransformManager
from fastecg.transforms.config import BACKEND_NAMES, parse_config
from fastecg.transforms.manager import Transform

FS = 500.0


def ecg(shape=(3, 12, 2000), seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).cumsum(-1) / 20


def test_backend_names_are_the_ops_backends():
    assert set(BACKEND_NAMES) == {"auto", *BACKENDS}


# ---- configs ----------------------------------------------------------------------------

def test_three_config_forms_build_the_same_pipeline():
    steps = [{"name": "bandpass", "lowcut": 0.5, "highcut": 40.0},
             {"name": "normalize", "method": "min-max"}]
    as_list = PreprocManager.from_config(steps, fs=FS)
    as_steps = PreprocManager.from_config({"fs": FS, "steps": steps})
    torch_ecg_style = PreprocManager.from_config(
        {"random": False, "bandpass": {"lowcut": 0.5, "highcut": 40.0},
         "baseline_remove": None, "resample": False, "normalize": {"method": "min-max"}},
        fs=FS)
    x = ecg()
    ref = as_list(x)
    for pm in (as_steps, torch_ecg_style):
        assert pm.to_config() == as_list.to_config()
        assert torch.equal(pm(x), ref)
    defaults = PreprocManager.from_config({"normalize": True})
    assert defaults.to_config()["steps"] == [{"name": "normalize", **Normalize().config()}]


def test_to_config_is_json_and_round_trips_exactly():
    pm = PreprocManager(BandPass(lowcut=1.0, highcut=None), {"name": "normalize", "prob": 0.25},
                        SOSFilter("iirnotch", freq=60.0, q=20.0), fs=FS, lead_names=None)
    config = pm.to_config()
    assert json.loads(json.dumps(config)) == config
    assert config["steps"][1]["prob"] == 0.25 and "prob" not in config["steps"][0]
    again = PreprocManager.from_config(json.loads(json.dumps(config)))
    assert again.to_config() == config and again.probs == (1.0, 0.25, 1.0)
    x = ecg()
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(pm(x, generator=g1), again(x, generator=g2))


def test_tensor_arguments_are_saved_as_lists():
    std = torch.linspace(0.5, 2.0, 12)[:, None]
    pm = PreprocManager(Normalize("naive", mean=0.0, std=std), fs=FS)
    config = pm.to_config()
    assert config["steps"][0]["std"] == std.tolist()
    x = ecg()
    assert torch.equal(PreprocManager.from_config(config)(x), pm(x))


@pytest.mark.parametrize("config, match", [
    ([{"name": "bandpas"}], r"unknown preprocessor 'bandpas'; did you mean 'bandpass'"),
    ({"bandpas": {}}, r"did you mean 'bandpass'"),
    ([{"name": "bandpass", "low_cut": 1.0}], r"unknown argument 'low_cut'; did you mean 'lowcut'"),
    ({"steps": [], "fss": 500}, r"unknown option 'fss'; did you mean 'fs'"),
    ([{"lowcut": 1.0}], "'name' key"),
    (["lead_select"], "preprocessor 'lead_select': missing argument 'leads'"),
    ([3], "expected a name or a dict"),
    ({"normalize": 3}, "must be a dict of arguments"),
    ("bandpass", "expected a list of steps or a dict"),
])
def test_bad_configs_fail_before_anything_is_built(config, match):
    with pytest.raises(ValueError, match=match):
        PreprocManager.from_config(config)


def test_bad_step_arguments_name_the_step():
    # Built directly (not through a pipeline or a registry), a step's bad argument names
    # the step and the close matches, not only the argument.
    from fastecg.augmenters import Mixup
    from fastecg.preprocessors import LeadSelect
    with pytest.raises(TypeError, match=r"^BandPass: .*'lowcutt'; did you mean 'lowcut'\?"):
        BandPass(lowcutt=1.0)
    with pytest.raises(TypeError, match=r"^Mixup: .*'alpah'; did you mean 'alpha'\?"):
        Mixup(alpah=0.2)
    with pytest.raises(TypeError, match=r"^LeadSelect: missing a required argument: 'leads'"):
        LeadSelect()


def test_unknown_recipe_lists_close_matches():
    with pytest.raises(ValueError, match=r"unknown recipe 'stmem'; did you mean 'st_mem'"):
        PreprocManager.from_recipe("stmem")


def test_unregistered_module_runs_but_cannot_be_saved():
    pm = PreprocManager(nn.Identity(), Normalize(), fs=FS)
    x = ecg()
    assert torch.equal(pm(x), Normalize()(x))
    with pytest.raises(ValueError, match="Identity.*cannot be saved"):
        pm.to_config()


# ---- order and probability -------------------------------------------------------------

def test_add_and_rearrange():
    pm = PreprocManager(fs=FS)
    pm.add_("normalize").add_(BandPass(), pos=0).add_({"name": "sos_filter", "design":
                                                      "iirnotch", "freq": 50.0, "q": 30.0}, pos=1)
    assert [type(s).__name__ for s in pm] == ["BandPass", "SOSFilter", "Normalize"]
    pm.rearrange(["normalize", "BandPass", 1])
    assert [type(s).__name__ for s in pm] == ["Normalize", "BandPass", "SOSFilter"]
    with pytest.raises(ValueError, match="exactly once"):
        pm.rearrange(["normalize", "bandpass"])
    with pytest.raises(ValueError, match="did you mean 'bandpass'"):
        pm.rearrange(["normalize", "bandpas", "sos_filter"])
    pm.add_("normalize")
    with pytest.raises(ValueError, match="names steps .*use indices"):
        pm.rearrange(["normalize", "bandpass", "sos_filter", "normalize"])
    with pytest.raises(ValueError, match="pos must be"):
        pm.add_("normalize", pos=9)
    with pytest.raises(ValueError, match="prob must be a number in"):
        pm.add_("normalize", prob=1.5)


def test_random_order_follows_the_generator():
    steps = [{"name": "naive_normalize", "mean": 1.0}, {"name": "naive_normalize", "std": 2.0},
             {"name": "naive_normalize", "mean": -3.0, "std": 0.5}]
    pm = PreprocManager(*steps, random=True)
    x = torch.zeros(1, 2, 5)
    outs = {float(pm(x, generator=torch.Generator().manual_seed(s))[0, 0, 0]) for s in range(30)}
    assert len(outs) > 2  # several orders were drawn
    same = [pm(x, generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(*same)
    assert PreprocManager.from_config(pm.to_config()).random


def test_step_probability():
    pm = PreprocManager({"name": "naive_normalize", "mean": 1.0, "prob": 0.3})
    x = torch.zeros(1, 1, 4)
    g = torch.Generator().manual_seed(0)
    applied = sum(bool(pm(x, generator=g).any()) for _ in range(2000))
    assert abs(applied / 2000 - 0.3) < 0.04
    never = PreprocManager({"name": "normalize", "prob": 0.0})
    assert never(x) is x
    with pytest.raises(ValueError, match="prob given twice"):
        PreprocManager().add_({"name": "normalize", "prob": 0.5}, prob=0.5)


# ---- the signal's description ----------------------------------------------------------

def test_call_forms_and_fs_flow():
    pm = PreprocManager(Resample(dst_fs=250.0, method="fft"), BandPass(lowcut=0.5, highcut=100.0))
    x = ecg((2, 12, 1000))
    out, fs = pm(x, FS)
    assert out.shape == (2, 12, 500) and fs == 250.0
    fixed = PreprocManager.from_config(pm.to_config(), fs=FS)
    assert torch.equal(fixed(x), out)  # tensor only when fs was fixed at construction
    with pytest.raises(ValueError, match="Resample needs the sampling rate"):
        pm(x)  # no fs anywhere


def test_cutoff_above_nyquist_after_resampling_fails_before_any_work():
    steps = [Resample(dst_fs=100.0, method="fft"), BandPass(lowcut=0.5, highcut=60.0)]
    with pytest.raises(ValueError, match=r"step 1 \(bandpass\).*highcut=60.0 Hz must lie inside "
                                         r"\(0, fs/2\) = \(0, 50\) Hz.*after step 0 \(resample\)"):
        PreprocManager(*steps, fs=FS)
    pm = PreprocManager(*steps)  # rate unknown when built: checked at the call

    class Spy(nn.Module):
        calls = 0

        def forward(self, sig):
            Spy.calls += 1
            return sig

    pm.add_(Spy(), pos=0)
    with pytest.raises(ValueError, match="after step 1"):
        pm(ecg(), FS)
    assert Spy.calls == 0


def test_notch_above_nyquist():
    with pytest.raises(ValueError, match=r"notch frequency 60 Hz must lie inside \(0, fs/2\) = "
                                         r"\(0, 50\) Hz"):
        PreprocManager(Resample(dst_fs=100.0, method="linear"),
                       SOSFilter("iirnotch", freq=60.0, q=30.0), fs=360.0)


def test_step_built_for_another_rate():
    pm = PreprocManager(Resample(dst_fs=250.0, method="fft"), BandPass(FS))
    with pytest.raises(ValueError, match="built for fs=500 Hz, but the signal reaching it is at "
                                         "250 Hz"):
        pm(ecg(), FS)


def test_lead_names_flow():
    pm = PreprocManager({"name": "lead_select", "leads": ["V1", "I"]}, fs=FS)
    x = ecg((2, 3, 100))
    out = pm(x, lead_names=["I", "II", "V1"])
    assert torch.equal(out, x[:, [2, 0]])
    with pytest.raises(ValueError, match="needs the record's lead names"):
        pm(x)
    with pytest.raises(ValueError, match="'V1' is not in the record's leads"):
        pm(x, lead_names=["I", "II", "III"])
    with pytest.raises(ValueError, match="2 lead names .* 3 leads"):
        pm(x, lead_names=["I", "II"])
    fixed = PreprocManager.from_config(pm.to_config(), lead_names=["I", "II", "V1"])
    assert torch.equal(fixed(x), out)


def test_input_is_checked():
    pm = PreprocManager(Normalize())
    with pytest.raises(TypeError, match="expected a torch.Tensor"):
        pm([1.0, 2.0])
    with pytest.raises(ValueError, match="0-d"):
        pm(torch.tensor(1.0))
    with pytest.raises(ValueError, match="random must be True or False"):
        PreprocManager(random=1)
    with pytest.raises(ValueError, match="fs must be"):
        PreprocManager(fs="500")


# ---- repr ------------------------------------------------------------------------------

def test_repr_shows_the_pipeline():
    pm = PreprocManager.from_recipe("ecgfounder", fs=FS)
    pm.add_({"name": "normalize", "prob": 0.5})
    text = repr(pm)
    assert text.startswith("PreprocManager(fs=500.0, lead_names=None, random=False,")
    lines = text.splitlines()
    assert lines[3] == "  (2) sos_filter: SOSFilter(design='iirnotch', freq=50.0, q=30.0)"
    assert lines[5] == ("  (4) baseline_remove: BaselineRemove(window1=0.4, window2=None, "
                        "mode='constant')")
    assert lines[7] == "  (6) normalize: Normalize()  [prob=0.5]"
    assert repr(PreprocManager()) == "PreprocManager(fs=None, lead_names=None, random=False)"


# ---- the base serves other managers ------------------------------------------------------

WIDGETS = Registry("widget")


@WIDGETS.register("shift")
class Shift(Transform):
    """A toy augmenter: adds `value` to each sample with probability `prob` (its own
    per-sample draw, from the call's generator)."""

    def __init__(self, value: float = 1.0, prob: float = 1.0):
        super().__init__()
        self.value, self.prob = value, prob

    def run(self, sig, info, generator=None):
        keep = torch.rand(sig.shape[0], generator=generator) < self.prob
        return sig + self.value * keep.view(-1, *([1] * (sig.dim() - 1)))


class WidgetManager(TransformManager):
    registry = WIDGETS
    kind = "widget"


def test_subclass_with_its_own_registry_and_per_sample_prob():
    wm = WidgetManager.from_config({"shift": {"value": 2.0, "prob": 0.5}})
    assert wm.probs == (1.0,)  # the step takes prob itself: it is not the manager's
    assert wm.to_config()["steps"] == [{"name": "shift", "value": 2.0, "prob": 0.5}]
    out = wm(torch.zeros(4000, 1), generator=torch.Generator().manual_seed(0))
    assert abs(float((out > 0).float().mean()) - 0.5) < 0.05
    with pytest.raises(ValueError, match="unknown widget 'shfit'; did you mean 'shift'"):
        WidgetManager.from_config(["shfit"])


def test_parse_config_is_shared_and_torch_free():
    options, steps = parse_config({"fs": 250, "bandpass": {"lowcut": 1.0}}, "preprocessor",
                                  ["bandpass"])
    assert options == {"fs": 250} and steps == [{"name": "bandpass", "lowcut": 1.0}]
    assert SignalInfo(fs=1.0)._replace(n_samples=3) == SignalInfo(1.0, None, 3, None)


def test_pipeline_pickles_for_dataloader_workers():
    import copy
    import pickle

    pm = PreprocManager.from_recipe("st_mem", fs=FS)
    x = ecg((2, 12, 5000))
    for clone in (pickle.loads(pickle.dumps(pm)), copy.deepcopy(pm)):
        assert clone.to_config() == pm.to_config() and torch.equal(clone(x), pm(x))


def test_manager_prob_beside_the_steps_own_prob_round_trips():
    wm = WidgetManager().add_(Shift(value=2.0, prob=0.5), prob=0.25)
    config = wm.to_config()
    assert config["steps"] == [{"name": "shift", "value": 2.0, "prob": 0.5, "manager_prob": 0.25}]
    again = WidgetManager.from_config(json.loads(json.dumps(config)))
    assert again.probs == (0.25,) and again[0].prob == 0.5
    x = torch.zeros(400, 1)
    for seed in range(10):
        a = wm(x, generator=torch.Generator().manual_seed(seed))
        b = again(x, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(a, b)
    # a step without its own prob keeps "prob" as the manager's (the documented form)
    pm = PreprocManager(fs=FS).add_("normalize", prob=0.3)
    assert pm.to_config()["steps"][0]["prob"] == 0.3
    assert PreprocManager.from_config(pm.to_config()).probs == (0.3,)
    assert PreprocManager({"name": "normalize", "manager_prob": 0.3}).probs == (0.3,)


def test_a_refused_add_or_rearrange_leaves_the_pipeline_as_it_was():
    from fastecg.numpy_path import PreprocManager as NumpyPreprocManager

    def names(pm):
        return [step["name"] for step in pm.to_config()["steps"]]

    for cls in (PreprocManager, NumpyPreprocManager):
        pm = cls("normalize", fs=FS)
        with pytest.raises(ValueError, match="highcut=300.0 Hz"):
            pm.add_({"name": "bandpass", "lowcut": 0.5, "highcut": 300.0}, prob=0.5, pos=0)
        assert names(pm) == ["normalize"] and pm.probs == (1.0,)
        pm = cls({"name": "bandpass", "lowcut": 0.5, "highcut": 100.0, "prob": 0.5},
                 {"name": "resample", "dst_fs": 100.0}, fs=FS)
        with pytest.raises(ValueError, match="at fs=100 Hz"):
            pm.rearrange(["resample", "bandpass"])  # band-pass to 100 Hz at 100 Hz
        assert names(pm) == ["bandpass", "resample"] and pm.probs == (0.5, 1.0)
        x = ecg((1, 12, 1000))
        assert pm(x if cls is PreprocManager else x.numpy()).shape == (1, 12, 200)
