"""The one dispatch mechanism: availability, auto choice, forced backends, errors."""

import pytest
import torch

import fastecg
from fastecg.ops import _dispatch
from fastecg.ops._dispatch import eager_kernel, kernel_for, register_kernel, resolve_backend


def test_backends_report_every_backend_with_a_reason():
    status = fastecg.backends()
    assert list(status) == ["cuda", "triton", "cpu", "torch"]
    assert status["torch"].available
    for info in status.values():
        assert isinstance(info.available, bool) and info.reason


def test_cpu_extension_is_built():
    # The test command builds fastecg._C; a missing extension must fail CI, not skip.
    assert fastecg.backends()["cpu"].available, fastecg.backends()["cpu"].reason
    assert torch._C._dispatch_has_kernel_for_dispatch_key("fastecg::_normalize_kernel", "CPU")


def test_auto_prefers_compiled_cpu_kernel():
    assert resolve_backend("normalize", torch.randn(3)) == "cpu"


def test_auto_falls_back_to_reference_for_unknown_device_kernels():
    register_kernel("_test_only_op", "torch", lambda x: x + 1)
    try:
        assert resolve_backend("_test_only_op", torch.randn(2)) == "torch"
        assert kernel_for("_test_only_op", torch.zeros(2))(torch.zeros(2)).tolist() == [1, 1]
        with pytest.raises(RuntimeError, match="has no 'cpu' backend; use backend='auto'"):
            resolve_backend("_test_only_op", torch.randn(2), "cpu")
    finally:
        del _dispatch._KERNELS[("_test_only_op", "torch")]
        _dispatch._RESOLVED.clear()


def test_forced_unavailable_backend_says_why():
    x = torch.randn(4)
    if not fastecg.backends()["cuda"].available:
        with pytest.raises(RuntimeError, match="not available: .*"):
            resolve_backend("normalize", x, "cuda")
    else:
        with pytest.raises(RuntimeError, match="cannot run on a cpu tensor"):
            resolve_backend("normalize", x, "cuda")


def test_unknown_backend_is_a_value_error():
    with pytest.raises(ValueError, match="expected 'auto' or one of"):
        resolve_backend("normalize", torch.randn(2), "metal")
    with pytest.raises(ValueError, match="unknown backend"):
        register_kernel("x", "metal", lambda x: x)


def test_triton_needs_a_gpu_or_the_interpreter(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert not _dispatch._runs_on("triton", "cpu")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert _dispatch._runs_on("triton", "cpu")


def test_lazy_kernel_is_imported_on_first_use():
    register_kernel("_test_lazy", "torch", "math:sqrt")
    try:
        assert kernel_for("_test_lazy", torch.randn(1))(16.0) == 4.0
        assert callable(_dispatch._KERNELS[("_test_lazy", "torch")])
    finally:
        del _dispatch._KERNELS[("_test_lazy", "torch")]


def test_eager_kernel_only_for_plain_eager_calls():
    from torch.utils._python_dispatch import TorchDispatchMode

    x, w = torch.randn(2, 8), torch.randn(3)
    kernel = kernel_for("resample", x)
    assert eager_kernel("resample", "auto", x, w) is kernel
    tracked = x.clone().requires_grad_()
    assert eager_kernel("resample", "auto", tracked, w) is None  # autograd records the op
    assert eager_kernel("resample", "auto", x, w.clone().requires_grad_()) is None
    with torch.no_grad():
        assert eager_kernel("resample", "auto", tracked, w) is kernel
    assert eager_kernel("resample", "auto", torch.nn.Parameter(x), w) is None  # a subclass
    seen = []
    torch.vmap(lambda r: seen.append(eager_kernel("resample", "auto", r, w)) or r)(x)
    assert seen == [None]

    class Mode(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    with Mode():
        assert eager_kernel("resample", "auto", x, w) is None
    traced = []
    torch.jit.trace(lambda t: traced.append(eager_kernel("resample", "auto", t, w)) or t * 2,
                    (x,), check_trace=False)
    assert traced == [None]


def test_resolved_kernels_follow_new_registrations():
    register_kernel("_test_only_op2", "torch", lambda x: x + 1)
    try:
        assert kernel_for("_test_only_op2", torch.zeros(1))(torch.zeros(1)).item() == 1
        register_kernel("_test_only_op2", "torch", lambda x: x + 2)
        assert kernel_for("_test_only_op2", torch.zeros(1))(torch.zeros(1)).item() == 2
    finally:
        del _dispatch._KERNELS[("_test_only_op2", "torch")]
        _dispatch._RESOLVED.clear()
