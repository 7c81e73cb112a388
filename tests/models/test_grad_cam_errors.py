"""GradCam's target_class: range and type errors name the value and the valid range;
negative indices count from the last class, as in Python (issue 28, item 6)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fastecg.models import GradCam

N_CLASSES = 2


def _hooks(model):
    return [(name, kind) for name, m in model.named_modules()
            for kind in ("_forward_hooks", "_forward_pre_hooks") if getattr(m, kind)]


@pytest.fixture
def cam():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(12, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool1d(1),
                          nn.Flatten(), nn.Linear(4, N_CLASSES))
    return GradCam(model, target_layer="0")


@pytest.fixture
def x():
    return torch.randn(3, 12, 50)


@pytest.mark.parametrize("target_class", [7, 2, -3, -100, 10**20])
def test_int_out_of_range_names_value_and_range(cam, x, target_class):
    with pytest.raises(ValueError, match=rf"target_class {target_class} is out of range for "
                                         rf"a model with 2 classes: expected -2 <= "
                                         rf"target_class < 2"):
        cam(x, target_class=target_class)


@pytest.mark.parametrize("target_class", [torch.tensor([0, 7, 1]), torch.tensor([-3]),
                                          torch.tensor(5), torch.tensor([1, 0, 2])])
def test_tensor_out_of_range_names_first_bad_value(cam, x, target_class):
    first_bad = next(v for v in target_class.reshape(-1).tolist() if not -2 <= v < 2)
    with pytest.raises(ValueError, match=rf"target_class {first_bad} is out of range .* "
                                         rf"-2 <= target_class < 2"):
        cam(x, target_class=target_class)


def test_negative_index_is_the_class_counted_from_the_end(cam, x):
    last = cam(x, target_class=N_CLASSES - 1)
    torch.testing.assert_close(cam(x, target_class=-1), last, rtol=0, atol=0)
    torch.testing.assert_close(cam(x, target_class=torch.tensor([-1])), last, rtol=0, atol=0)
    torch.testing.assert_close(cam(x, target_class=-2), cam(x, target_class=0), rtol=0, atol=0)
    mixed = cam(x, target_class=torch.tensor([-1, 0, -2]))
    torch.testing.assert_close(mixed, cam(x, target_class=torch.tensor([1, 0, 0])),
                               rtol=0, atol=0)


def test_numpy_integers_accepted(cam, x):
    torch.testing.assert_close(cam(x, target_class=np.int64(1)), cam(x, target_class=1),
                               rtol=0, atol=0)


@pytest.mark.parametrize("target_class", [1.0, 0.5, True, "1", [0, 1, 0],
                                          torch.tensor([0.0, 1.0, 0.0]), torch.tensor(True)])
def test_non_integer_target_class_is_a_type_error(cam, x, target_class):
    with pytest.raises(TypeError, match="target_class must be"):
        cam(x, target_class=target_class)


def test_errors_leave_the_model_as_it_was(cam, x):
    model = cam.model
    model.train()
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    for bad in (7, -3, torch.tensor([0, 9, 0]), torch.tensor([0, 1])):
        with pytest.raises(ValueError):
            cam(x, target_class=bad)
    assert _hooks(model) == []
    assert all(m.training for m in model.modules())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters())


def test_sequence_logits_use_the_same_range():
    """(batch, time, classes) outputs are summed over time; the range is the classes."""
    torch.manual_seed(0)

    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(12, 3, 3, padding=1)

        def forward(self, x):
            return self.conv(x).transpose(1, 2)  # (batch, time, 3 classes)

    cam = GradCam(Seq(), target_layer="conv")
    x = torch.randn(2, 12, 40)
    torch.testing.assert_close(cam(x, target_class=-1), cam(x, target_class=2), rtol=0, atol=0)
    with pytest.raises(ValueError, match="with 3 classes: expected -3 <= target_class < 3"):
        cam(x, target_class=3)


def test_inference_mode_and_tuple_layers_are_named(cam, x):
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        cam(x)
    with torch.no_grad():  # GradCam turns gradients back on inside
        assert cam(x).shape == (x.shape[0], x.shape[-1])
    from fastecg.models import ECG_CRNN

    crnn = ECG_CRNN(2, x.shape[1], rnn="lstm")
    with pytest.raises(TypeError, match="'rnn.rnn' returns a tuple"):
        GradCam(crnn, target_layer="rnn.rnn")(x)
