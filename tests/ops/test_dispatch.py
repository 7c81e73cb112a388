"""The one dispatch mechanism: availability, auto choice, forced backends, errors."""

import pytest
import torch

import fastecg
from fastecg.ops import _dispatch
from fastecg.ops._dispatch import kernel_for, plain_eager, register_kernel, resolve_backend


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


def test_plain_eager_only_without_autograd_transforms_modes_or_subclasses():
    from torch.utils._python_dispatch import TorchDispatchMode

    x, w = torch.randn(2, 8), torch.randn(3)
    assert plain_eager([x, w])
    tracked = x.clone().requires_grad_()
    assert not plain_eager([tracked, w])  # autograd records the op
    assert not plain_eager([x, w.clone().requires_grad_()])
    with torch.no_grad():
        assert plain_eager([tracked, w])
    assert not plain_eager([torch.nn.Parameter(x), w])  # a subclass
    assert not plain_eager([x.to("meta"), w])  # shapes from the custom op's fake
    seen = []
    torch.vmap(lambda r: seen.append(plain_eager([r, w])) or r)(x)
    assert seen == [False]

    class Mode(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    with Mode():
        assert not plain_eager([x, w])
    traced = []
    torch.jit.trace(lambda t: traced.append(plain_eager([t, w])) or t * 2, (x,),
                    check_trace=False)
    assert traced == [False]


def test_resolved_kernels_follow_new_registrations():
    register_kernel("_test_only_op2", "torch", lambda x: x + 1)
    try:
        assert kernel_for("_test_only_op2", torch.zeros(1))(torch.zeros(1)).item() == 1
        register_kernel("_test_only_op2", "torch", lambda x: x + 2)
        assert kernel_for("_test_only_op2", torch.zeros(1))(torch.zeros(1)).item() == 2
    finally:
        del _dispatch._KERNELS[("_test_only_op2", "torch")]
        _dispatch._RESOLVED.clear()


def _ops_calls():
    import numpy as np
    import scipy.signal

    from fastecg.ops import (bandpass, masked_patch_embed, normalize, remove_baseline, resample,
                             sosfilt)

    sos = scipy.signal.butter(2, [1.0, 40.0], btype="bandpass", fs=500.0, output="sos")
    gen = torch.Generator().manual_seed(5)
    # (2, 3, 1200) signals in 24 patches of 50 samples: tokens of 150 values, embedded in 8
    weight = torch.randn(8, 150, generator=gen, dtype=torch.float64)
    bias = torch.randn(8, generator=gen, dtype=torch.float64)
    pos = torch.randn(24, 8, generator=gen, dtype=torch.float64)

    def embed(x):
        # a fresh generator of one seed: every call draws the same mask, so the map is
        # fixed (and linear)
        return masked_patch_embed(x, weight, bias, pos, 50, 0.75,
                                  generator=torch.Generator().manual_seed(6))[0]

    return {
        "normalize": lambda x: normalize(x),
        "bandpass iir": lambda x: bandpass(x, 500.0, 1.0, 40.0),
        "bandpass fft": lambda x: bandpass(x, 500.0, 1.0, 40.0, method="fft"),
        "median baseline": lambda x: remove_baseline(x, 500.0, method="median"),
        "mean baseline": lambda x: remove_baseline(x, 500.0, method="mean"),
        "sosfilt": lambda x: sosfilt(np.asarray(sos), x),
        "resample": lambda x: resample(x, 2, 5),
        "masked patch embed": embed,
    }


@pytest.mark.parametrize("name", list(_ops_calls()))
def test_plain_eager_calls_equal_the_custom_ops(name, monkeypatch):
    # A plain eager call runs the op's implementation directly; a signal that needs a
    # gradient goes through the custom op (seen by a counting wrapper). Same numbers.
    from fastecg.ops._dispatch import EagerOp

    calls = []
    original = EagerOp.__call__

    def counted(self, *args):
        if not plain_eager([a for a in args if isinstance(a, torch.Tensor)]):
            calls.append(self._op)
        return original(self, *args)

    monkeypatch.setattr(EagerOp, "__call__", counted)
    fn = _ops_calls()[name]
    x = torch.randn(2, 3, 1200, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    plain = fn(x)
    assert not calls
    tracked = fn(x.clone().requires_grad_())
    assert calls and tracked.grad_fn is not None
    assert torch.equal(plain, tracked.detach())


@pytest.mark.parametrize("name", list(_ops_calls()))
def test_forward_mode_ad_is_refused_not_dropped(name):
    # A custom op has a backward formula only: below autograd a forward-mode tangent was
    # dropped, so jvp gave zeros and forward_ad a tangent of None, with no error.
    import torch.autograd.forward_ad as fwAD

    fn = _ops_calls()[name]
    x = torch.randn(2, 3, 1200, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v = torch.randn_like(x)
    with pytest.raises(RuntimeError, match="forward-mode AD"):
        torch.func.jvp(fn, (x,), (v,))
    with fwAD.dual_level(), pytest.raises(RuntimeError, match="forward-mode AD"):
        fn(fwAD.make_dual(x, v))
    with fwAD.dual_level():  # a constant inside a dual level is still plain work
        torch.testing.assert_close(fn(x), fn(x.clone()))
    # The reverse-mode jvp the message points to is exact: <w, J v> = <J^T w, v>.
    _, tangent = torch.autograd.functional.jvp(fn, x, v)
    xg = x.clone().requires_grad_()
    y = fn(xg)
    w = torch.randn_like(y)
    (g,) = torch.autograd.grad((y * w).sum(), xg)
    torch.testing.assert_close((tangent * w).sum(), (g * v).sum())


_FORWARD_OVER_REVERSE = (r"fastecg::\w+: forward-mode AD .*hessian.* is not supported.*"
                         r"torch\.func\.jacrev\(torch\.func\.jacrev\(f\)\)")


@pytest.mark.parametrize("name", list(_ops_calls()))
def test_forward_over_reverse_is_refused_with_our_message(name):
    # Under a reverse-mode transform the op runs as an autograd.Function, whose inputs
    # hide an outer jvp's tangent from the check: torch.func.hessian (jacfwd over jacrev)
    # and jvp(grad(f)) failed inside torch with "You must implement the jvp function for
    # custom autograd.Function", naming neither the op nor a way out.
    fn = _ops_calls()[name]
    x = torch.randn(2, 3, 1200, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    fn(x)  # the op's cached design is built here, outside any transform

    def loss(s):
        return fn(s).pow(2).sum()

    with pytest.raises(RuntimeError, match=_FORWARD_OVER_REVERSE):
        torch.func.jvp(torch.func.grad(loss), (x,), (torch.randn_like(x),))
    # a jvp whose tangent never reaches the op still runs: d/ds [s * grad(loss)(x)]
    one = torch.tensor(1.0, dtype=torch.float64)
    _, tangent = torch.func.jvp(lambda s: s * torch.func.grad(loss)(x), (one,), (one,))
    torch.testing.assert_close(tangent, torch.func.grad(loss)(x), rtol=0, atol=0)


def test_hessian_through_an_op_by_reverse_over_reverse():
    # torch.func.hessian is refused with our message; the reverse-over-reverse Hessian it
    # points to is exact. sosfiltfilt is linear, y = A x with A's columns the filtered unit
    # impulses (SciPy), so f(x) = sum(sin(A x)) per row has H = A^T diag(-sin(A x)) A.
    import numpy as np
    import scipy.signal

    from fastecg.ops import sosfiltfilt

    sos = scipy.signal.butter(2, [2.0, 30.0], btype="bandpass", fs=200.0, output="sos")
    n = 48
    x = torch.randn(2, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def f(s):
        return torch.sin(sosfiltfilt(sos, s)).sum()

    f(x)  # the design's cached tensors are built here, outside any transform
    a = scipy.signal.sosfiltfilt(sos, np.eye(n), axis=0)
    expected = np.zeros((2, n, 2, n))
    for r in range(2):
        expected[r, :, r, :] = a.T @ np.diag(-np.sin(a @ x[r].numpy())) @ a
    expected = torch.from_numpy(expected)

    with pytest.raises(RuntimeError, match=r"fastecg::sosfiltfilt: forward-mode AD"):
        torch.func.hessian(f)(x)
    with pytest.raises(RuntimeError, match=_FORWARD_OVER_REVERSE):
        torch.func.jacfwd(torch.func.jacrev(f))(x)
    torch.testing.assert_close(torch.func.jacrev(torch.func.jacrev(f))(x), expected,
                               rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(torch.autograd.functional.hessian(f, x), expected,
                               rtol=1e-10, atol=1e-12)


def test_vmap_of_a_constant_in_a_dual_level_is_plain_work():
    # A vmap-batched tensor cannot be asked for its tangent: the check looks at the tensor
    # it batches, so vmap inside an open dual level (or over a constant inside jvp) runs,
    # while vmap over jvp's dual input is still refused.
    import torch.autograd.forward_ad as fwAD

    fn = _ops_calls()["bandpass iir"]
    x = torch.randn(3, 2, 1200, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with fwAD.dual_level():
        torch.testing.assert_close(torch.vmap(fn)(x), fn(x))
    one = torch.tensor(1.0, dtype=torch.float64)
    _, tangent = torch.func.jvp(lambda s: s * torch.vmap(fn)(x).sum(), (one,), (one,))
    torch.testing.assert_close(tangent, fn(x).sum())
    with pytest.raises(RuntimeError, match="forward-mode AD"):
        torch.func.jvp(torch.vmap(fn), (x,), (torch.randn_like(x),))


@pytest.mark.parametrize("name", list(_ops_calls()))
def test_functorch_reverse_mode_runs_the_registered_backward(name):
    # torch.library runs a custom op's formula in an autograd.Function whose forward takes
    # ctx, which torch.func.grad / vjp / jacrev refused ("must override the setup_context
    # staticmethod"). Reference: torch.autograd.grad, and a central difference (the maps
    # are smooth, or linear once a running median's order is fixed, which a step of 1e-6
    # leaves unchanged; exact to rounding in float64).
    fn = _ops_calls()[name]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 1200, generator=gen, dtype=torch.float64)
    w = torch.randn(fn(x).shape, generator=gen, dtype=torch.float64)
    v = torch.randn(x.shape, generator=gen, dtype=torch.float64)

    def loss(s):
        return (fn(s) * w).pow(2).sum()

    xg = x.clone().requires_grad_()
    (ref,) = torch.autograd.grad(loss(xg), xg)
    grad = torch.func.grad(loss)(x)
    torch.testing.assert_close(grad, ref, rtol=1e-12, atol=1e-12)
    eps = 1e-6
    slope = (loss(x + eps * v) - loss(x - eps * v)) / (2 * eps)
    torch.testing.assert_close((grad * v).sum(), slope, rtol=1e-6, atol=1e-5)
    # per-sample gradients: vmap over grad (randomness="same": a masked embedding draws
    # its mask, from a seeded generator, in each call)
    per_sample = torch.func.vmap(torch.func.grad(lambda s, ws: (fn(s[None]) * ws).pow(2).sum()),
                                 randomness="same")
    expected = torch.stack([torch.autograd.grad((fn(xg[i:i + 1]) * w[i]).pow(2).sum(), xg)[0][i]
                            for i in range(x.shape[0])])
    torch.testing.assert_close(per_sample(x, w), expected, rtol=1e-12, atol=1e-12)
    # jacrev: rows of the Jacobian are the gradients of single outputs
    picks = [(0, 0, 5), (1, 2, -1)]
    jac = torch.func.jacrev(lambda s: torch.stack([fn(s)[p] for p in picks]))(x)
    for row, p in zip(jac, picks):
        torch.testing.assert_close(row, torch.autograd.grad(fn(xg)[p], xg)[0],
                                   rtol=1e-12, atol=1e-12)
