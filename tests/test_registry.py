import pytest
import torch

from fastecg.registry import (ATTN_LAYERS, AUGMENTERS, BACKBONES, LOSSES, MODELS, OPTIMIZERS,
                              PREPROCESSORS, SCHEDULERS, SSL, Registry)


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
