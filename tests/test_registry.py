import subprocess
import sys
import textwrap

import pytest
import torch

from fastecg.registry import (ATTN_LAYERS, AUGMENTERS, BACKBONES, LOSSES, MODELS, OPTIMIZERS,
                              PREPROCESSORS, SCHEDULERS, SSL, Registry, did_you_mean)


def make_registry():
    reg = Registry("widget")

    @reg.register()
    def square(x=2):
        return x * x

    @reg.register("cube")
    def _cube(x=2):
        return x ** 3

    @reg.register
    class Doubler:
        def __init__(self, k=1):
            self.k = 2 * k

    return reg


def test_register_and_build_by_name_and_dict():
    reg = make_registry()
    assert reg.list() == ["Doubler", "cube", "square"]
    assert reg.build("square") == 4 and reg.build("square", x=3) == 9
    assert reg.build({"name": "cube", "x": 3}) == 27
    assert reg.build({"name": "cube", "x": 3}, x=4) == 64  # explicit kwargs win
    assert reg.build("Doubler", k=5).k == 10
    assert "cube" in reg and "_cube" not in reg and len(reg) == 3
    assert reg.list("ub") == ["Doubler", "cube"]


def test_unknown_name_lists_close_matches():
    reg = make_registry()
    with pytest.raises(KeyError, match=r"unknown widget 'sqare'; did you mean 'square'"):
        reg.build("sqare")
    with pytest.raises(KeyError, match="'cube'"):
        reg.get("CUBE")
    with pytest.raises(KeyError, match="needs a 'name' key"):
        reg.build({"x": 1})
    with pytest.raises(TypeError, match="expected a name"):
        reg.build(3)


def test_unknown_name_is_a_value_error_like_the_pipelines():
    # PreprocManager / AugmenterManager configs raise ValueError for an unknown step name;
    # building by name must too (and stay a KeyError for code written against lookups).
    from fastecg.preprocessors import PreprocManager

    with pytest.raises(ValueError, match=r"unknown preprocessor 'bandpas'; did you mean "
                                         r"'bandpass'") as pipeline_err:
        PreprocManager.from_config(["bandpas"])
    with pytest.raises(ValueError) as build_err:
        PREPROCESSORS.build("bandpas")
    assert isinstance(build_err.value, KeyError)
    # the same message as the pipeline's, unquoted (a plain KeyError repr-quotes it)
    assert str(pipeline_err.value).endswith(str(build_err.value))
    for call in (lambda: BACKBONES.build({"name": "resnett"}), lambda: SSL.get("stmem"),
                 lambda: make_registry().build({"x": 1})):
        with pytest.raises(ValueError) as err:
            call()
        assert isinstance(err.value, KeyError) and not str(err.value).startswith(("'", '"'))


def test_bad_arguments_name_the_entry_and_close_matches():
    reg = make_registry()
    with pytest.raises(TypeError, match=r"widget 'cube': unknown argument 'xx'; did you mean 'x'"):
        reg.build({"name": "cube", "xx": 3})
    with pytest.raises(TypeError, match=r"'name' must be a string, got \['cube'\]"):
        reg.build({"name": ["cube"]})
    with pytest.raises(TypeError, match=r"loss 'focal': unknown argument 'gama'; did you mean "
                                        r"'gamma'\? \(it takes gamma, alpha, reduction\)"):
        LOSSES.build("focal", gama=2.0)
    with pytest.raises(TypeError, match=r"optimizer 'adam': unknown argument 'lrr'; did you "
                                        r"mean 'lr'"):
        OPTIMIZERS.build({"name": "adam", "lrr": 0.1}, torch.nn.Linear(2, 1).parameters())
    # A factory taking **kwargs (or without a signature) gets its arguments unchecked.
    reg.register("anything")(lambda **kw: kw)
    assert reg.build("anything", y=1) == {"y": 1}


def test_duplicate_needs_force():
    reg = make_registry()
    with pytest.raises(KeyError, match="already registered"):
        reg.register("square")(lambda: 0)
    reg.register("square", force=True)(lambda: "new")
    assert reg.build("square") == "new"


def test_instances_and_builtin_entries():
    for reg in (MODELS, BACKBONES, ATTN_LAYERS, OPTIMIZERS, SCHEDULERS, LOSSES, PREPROCESSORS,
                AUGMENTERS, SSL):
        assert isinstance(reg, Registry)
    assert {"adam", "adamw", "sgd"} <= set(OPTIMIZERS.list())
    assert {"cosine", "onecycle", "step", "plateau"} <= set(SCHEDULERS.list())
    assert {"bce_with_logits", "cross_entropy", "mse", "focal", "asymmetric",
            "weighted_bce"} <= set(LOSSES.list())


def test_optimizer_and_scheduler_build_and_step():
    model = torch.nn.Linear(3, 1)
    opt = OPTIMIZERS.build({"name": "sgd", "lr": 0.5}, model.parameters())
    sched = SCHEDULERS.build("step", opt, step_size=1, gamma=0.1)
    loss = LOSSES.build("mse")(model(torch.ones(1, 3)), torch.zeros(1, 1))
    loss.backward()
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)


def test_did_you_mean_is_the_one_close_match_rule():
    assert did_you_mean("resnt", ["resnet", "vgg16"]) == "; did you mean 'resnet'?"
    assert did_you_mean("LSTM", ["lstm", "gru"]) == "; did you mean 'lstm'?"  # any case
    assert did_you_mean("zzz", ["lstm", "gru"]) == ""
    assert did_you_mean("ab", ["abc", "abd", "abe"], n=2).count("'") == 4


def test_providers_imported_once_on_first_lookup(tmp_path, monkeypatch):
    import fastecg.registry as registry

    reg = Registry("widget", providers=["_fastecg_widget_provider"])
    (tmp_path / "_fastecg_widget_provider.py").write_text(
        "from fastecg import registry\n"
        "registry._WIDGETS_UNDER_TEST.register('made')(dict)\n"
        "assert 'made' in registry._WIDGETS_UNDER_TEST  # a lookup while loading\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_WIDGETS_UNDER_TEST", reg, raising=False)
    monkeypatch.delitem(sys.modules, "_fastecg_widget_provider", raising=False)
    reg.register("early")(list)  # registering does not load the providers
    assert "_fastecg_widget_provider" not in sys.modules and "not imported" in repr(reg)
    assert list(reg) == ["early", "made"] and len(reg) == 2
    assert reg.build("made", a=1) == {"a": 1}


def test_missing_provider_fails_at_every_lookup():
    reg = Registry("widget", providers=["_fastecg_no_such_provider"])
    for _ in range(2):  # a failed import is not remembered as loaded
        with pytest.raises(ModuleNotFoundError, match="_fastecg_no_such_provider"):
            reg.list()


def test_registry_import_is_lazy():
    # fastecg.registry imports nothing it registers (nor torch) until a registry is used.
    code = textwrap.dedent("""
        import sys
        from fastecg.registry import BACKBONES
        providers = ("fastecg.models", "fastecg.preprocessors", "fastecg.train", "fastecg.ops")
        loaded = sorted(m for m in sys.modules if m.startswith(providers))
        assert not loaded, loaded
        assert "torch" not in sys.modules
        assert "resnet" in BACKBONES
        assert "fastecg.models.backbones.resnet" in sys.modules
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
