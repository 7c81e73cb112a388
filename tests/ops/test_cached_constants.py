"""The ops cache the tensors they build (filter designs, gains, indices) between calls.
A cached tensor outlives the call that made it, so it must be a plain constant whatever
the first call ran under: a validation pass under ``torch.inference_mode()`` cached
inference tensors, which a later training call could not save for backward; a first
call inside nested ``torch.func`` transforms cached tensors wrapped for a transform's
level, which made every later ``torch.func`` call fail with an internal assert.

Each test empties the caches first, so that its first call is the one that fills them."""

import importlib

import numpy as np
import pytest
import scipy.signal
import torch

from fastecg.ops import bandpass, resample, sosfiltfilt
from fastecg.preprocessors import PreprocManager

CACHING_MODULES = ("fastecg.ops._design", "fastecg.ops.zero_phase_fft", "fastecg.ops.resample",
                   "fastecg.ops.bandpass", "fastecg.ops.sosfilt",
                   "fastecg.preprocessors.normalize", "fastecg.preprocessors.crop",
                   "fastecg.preprocessors.resample", "fastecg.augmenters.classic")


@pytest.fixture()
def cold_caches():
    def clear():
        for name in CACHING_MODULES:
            for obj in vars(importlib.import_module(name)).values():
                if callable(getattr(obj, "cache_clear", None)):
                    obj.cache_clear()
    clear()
    yield
    clear()


SOS = scipy.signal.butter(2, [1.0, 40.0], "bandpass", fs=500.0, output="sos")

CALLS = {
    "bandpass_iir": lambda x: bandpass(x, 500.0, 1.0, 40.0, method="iir"),
    "bandpass_fft": lambda x: bandpass(x, 500.0, 1.0, 40.0, method="fft"),
    "bandpass_fir": lambda x: bandpass(x, 500.0, 1.0, 40.0, method="fir"),
    "sosfiltfilt": lambda x: sosfiltfilt(SOS, x),
    "resample": lambda x: resample(x, 2, 5),
    "pipeline": lambda x: PreprocManager.from_config({
        "fs": 500, "steps": [{"name": "lead_select", "leads": ["II", "I"],
                              "input_leads": ["I", "II"]},
                             {"name": "resample", "dst_fs": 200, "method": "linear"},
                             {"name": "normalize", "method": "z-score", "mean": [0.0, 1.0],
                              "std": [1.0, 2.0], "per_channel": True}]})(x, 500)[0],
}


def _x():
    return torch.randn(2, 2, 600, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


def _loss(call, x):
    # a fixed random weighting: not invariant to any change of x (a sum of squares is, for
    # a z-scored output)
    y = call(x)
    w = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(2))
    return (w * y).sum() + 0.1 * (y ** 2).sum()


def _plain_grad(call, x):
    x = x.clone().requires_grad_()
    _loss(call, x).backward()
    return x.grad


@pytest.mark.parametrize("name", CALLS)
def test_a_first_call_in_inference_mode_leaves_training_calls_working(name, cold_caches):
    call, x = CALLS[name], _x()
    with torch.inference_mode():
        first = call(x)
    grad = _plain_grad(call, x)  # raised "Inference tensors cannot be saved for backward"
    torch.testing.assert_close(call(x), first, rtol=0, atol=0)
    # the gradient by central differences along one random direction
    v = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(1))
    h = 1e-4
    fd = (_loss(call, x + h * v) - _loss(call, x - h * v)) / (2 * h)
    assert float((grad * v).sum()) == pytest.approx(float(fd), rel=1e-6)


@pytest.mark.parametrize("name", ["bandpass_iir", "bandpass_fft", "sosfiltfilt", "resample"])
def test_a_first_call_inside_nested_func_transforms_leaves_later_transforms_working(
        name, cold_caches):
    call, x = CALLS[name], _x()[0, 0, :200]
    f = lambda t: _loss(call, t)  # noqa: E731
    hess = torch.func.jacrev(torch.func.jacrev(f))(x)
    # later transforms failed: "level.has_value() && level <= current_level ... escaped?"
    grad = torch.func.grad(f)(x)
    torch.testing.assert_close(grad, _plain_grad(call, x), rtol=1e-12, atol=1e-12)
    # f = w.Ax + 0.1 |Ax|^2 for a linear op A: its Hessian 0.2 A^T A is constant, so
    # grad(x) - grad(0) = H x
    torch.testing.assert_close(hess @ x, grad - torch.func.grad(f)(torch.zeros_like(x)),
                               rtol=1e-9, atol=1e-9)
    assert np.allclose(hess.numpy(), hess.numpy().T, atol=1e-10)
