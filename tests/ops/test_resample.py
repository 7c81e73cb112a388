"""fastecg.ops.resample against scipy.signal.resample_poly (float64), every backend."""

import importlib

import numpy as np
import pytest
import scipy.signal
import torch

import fastecg
from backends import CUDA, device_for
from fastecg._spec import resample_factors
from fastecg.ops import resample

resample_module = importlib.import_module("fastecg.ops.resample")

# Max error against SciPy's float64 result, relative to the peak of the filtered signal.
# float32 sums in float32 with float32 taps (SciPy's arithmetic for float32 input); measured
# over 10 ratios x lengths 1-5000: C++ kernel and torch reference (conv1d) <= 3.3e-7, as
# SciPy's own float32 result (the taps' rounding dominates). float64: <= 1e-15.
RTOL = {torch.float32: 1e-6, torch.float64: 1e-13}
RATIOS = [(500, 250), (500, 100), (500, 360), (257, 500), (1, 3), (3, 1)]  # (fs_in, fs_out)
# 1 sample, shorter than every filter (41 to 10001 taps), about one filter, ECG length.
LENGTHS = [1, 2, 7, 40, 333, 5000]


def available(backend):
    return fastecg.backends()[backend].available


BACKENDS = [b for b in ("cpu", "torch") if available(b)] + [CUDA]


def factors(fs_in, fs_out):
    return resample_factors(None, None, fs_in, fs_out)


def scipy_reference(x, up, down, **kw):
    """resample_poly in float64 and the peak of what it filters."""
    x64 = x.detach().cpu().double().numpy()
    return scipy.signal.resample_poly(x64, up, down, axis=-1, **kw)


def assert_matches(out, ref, dtype, scale):
    assert out.dtype == dtype and tuple(out.shape) == ref.shape
    err = np.abs(out.detach().cpu().double().numpy() - ref).max(initial=0.0)
    assert err <= RTOL[dtype] * max(scale, 1e-300), f"max error {err:.3g} of peak {scale:.3g}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fs_in, fs_out", RATIOS)
@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_resample_poly(backend, fs_in, fs_out, n, dtype):
    up, down = factors(fs_in, fs_out)
    x = torch.randn(3, 2, n, generator=torch.Generator().manual_seed(n), dtype=dtype) * 2 + 0.5
    out = resample(x.to(device_for(backend)), fs_in=fs_in, fs_out=fs_out, backend=backend)
    assert_matches(out, scipy_reference(x, up, down), dtype, x.abs().max().item())
    assert out.shape[-1] == -(-n * up // down)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("padtype", ["mean", "median", "maximum", "minimum"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_padtypes(backend, padtype, dtype):
    x = torch.randn(4, 1031, generator=torch.Generator().manual_seed(1), dtype=dtype) + 3.0
    x[1, :5] = 40.0  # a level far from the mean: each background differs
    for up, down in [(1, 5), (18, 25), (3, 2)]:
        out = resample(x.to(device_for(backend)), up, down, padtype=padtype, backend=backend)
        level = {"mean": x.mean(-1), "median": x.median(-1).values, "maximum": x.amax(-1),
                 "minimum": x.amin(-1)}[padtype]
        scale = (x - level[:, None]).abs().max().item()
        assert_matches(out, scipy_reference(x, up, down, padtype=padtype), dtype, scale)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cval(backend):
    x = torch.randn(2, 3, 77, dtype=torch.float64)
    for up, down in [(1, 2), (3, 1), (18, 25)]:
        out = resample(x.to(device_for(backend)), up, down, cval=-1.5, backend=backend)
        assert_matches(out, scipy_reference(x, up, down, cval=-1.5), torch.float64, 1.5)


def test_even_length_median_is_numpys():
    x = torch.tensor([[0.0, 1.0, 5.0, 9.0]], dtype=torch.float64)  # np.median: 3, torch: 1
    assert_matches(resample(x, 1, 2, padtype="median"),
                   scipy_reference(x, 1, 2, padtype="median"), torch.float64, 9.0)


@pytest.mark.parametrize("window", ["hamming", ("kaiser", 8.0), 2.5, ("tukey", 0.3)])
def test_windows(window):
    x = torch.randn(2, 500, dtype=torch.float64)
    for up, down in [(1, 2), (18, 25)]:
        assert_matches(resample(x, up, down, window=window),
                       scipy_reference(x, up, down, window=window), torch.float64, 5.0)


def test_taps_given_as_array():
    x = torch.randn(3, 200, dtype=torch.float64)
    taps = scipy.signal.firwin(31, 0.3)
    ref = scipy_reference(x, 3, 2, window=taps)
    for window in (taps, list(taps), torch.from_numpy(taps)):
        assert_matches(resample(x, 3, 2, window=window), ref, torch.float64, 5.0)
    even = scipy.signal.firwin(30, 0.3)  # SciPy centres on (len - 1) // 2
    assert_matches(resample(x, 2, 3, window=even), scipy_reference(x, 2, 3, window=even),
                   torch.float64, 5.0)


def test_equal_factors_copy_without_filtering():
    x = torch.randn(2, 50)
    for out in (resample(x, 3, 3), resample(x, fs_in=250, fs_out=250)):
        torch.testing.assert_close(out, x, rtol=0, atol=0)
        assert out.data_ptr() != x.data_ptr()


def test_rates_and_factors_agree():
    x = torch.randn(2, 12, 1000)
    for (fs_in, fs_out), (up, down) in [((500, 360), (18, 25)), ((500.0, 250.0), (1, 2)),
                                        ((1000 / 3, 360), (27, 25)), ((128, 100), (25, 32))]:
        assert factors(fs_in, fs_out) == (up, down)
        torch.testing.assert_close(resample(x, fs_in=fs_in, fs_out=fs_out), resample(x, up, down),
                                   rtol=0, atol=0)
    torch.testing.assert_close(resample(x, 4, 6), resample(x, 2, 3), rtol=0, atol=0)


# ---- layouts, dtypes, edge cases ------------------------------------------------------------

def test_leading_dims_and_one_dimensional_input():
    x = torch.randn(2, 3, 4, 301, dtype=torch.float64)
    out = resample(x, 18, 25)
    assert out.shape == (2, 3, 4, 217)
    torch.testing.assert_close(out, resample(x.reshape(-1, 301), 18, 25).reshape(2, 3, 4, 217),
                               rtol=0, atol=0)
    torch.testing.assert_close(resample(x[0, 0, 0], 18, 25), out[0, 0, 0], rtol=0, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_input_and_caller_untouched(backend):
    base = torch.randn(4, 600, 12, device=device_for(backend))
    x = base.transpose(1, 2)  # (4, 12, 600), stride 1 across leads
    before = base.clone()
    out = resample(x, 1, 5, backend=backend)
    torch.testing.assert_close(out, resample(x.contiguous(), 1, 5, backend=backend), rtol=0, atol=0)
    torch.testing.assert_close(base, before, rtol=0, atol=0)
    y = torch.randn(4, 12, 1200, device=device_for(backend))[..., ::2]
    torch.testing.assert_close(resample(y, 3, 2, backend=backend),
                               resample(y.contiguous(), 3, 2, backend=backend), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_types_computed_in_float32(dtype):
    x = torch.randn(2, 12, 300).to(dtype)
    out = resample(x, 1, 2)
    assert out.dtype == dtype
    torch.testing.assert_close(out, resample(x.float(), 1, 2).to(dtype), rtol=0, atol=0)


def test_empty_inputs():
    assert resample(torch.randn(0, 12, 100), 1, 2).shape == (0, 12, 50)
    assert resample(torch.randn(3, 0), 18, 25).shape == (3, 0)
    assert scipy.signal.resample_poly(np.zeros((3, 0)), 18, 25, axis=-1).shape == (3, 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_stays_in_its_row(backend):
    x = torch.randn(40, 500, dtype=torch.float64, device=device_for(backend))
    x[7, 100] = float("nan")
    x[33, 10] = float("inf")
    out = resample(x, 18, 25, backend=backend)
    bad = ~out.isfinite().all(-1)
    assert bad.nonzero().flatten().tolist() == [7, 33]


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "torch"])
@pytest.mark.parametrize("down", [2, 5])
def test_non_finite_reaches_every_tap_float32(backend, down):
    """The float32 Kaiser designs at up = 1 have taps of ~1e-17 (the sinc's zeros) that the
    AVX-512 and AVX2 kernels leave out on finite rows; an Inf or NaN times them is not
    negligible, so the Inf and NaN outputs must be those of the torch reference, which
    multiplies every tap as SciPy does (SciPy's also spread over the exact zeros it pads the
    filter with, one output further at most: not reproduced by any backend). Inf and NaN at both ends of a
    row, in a last partial block of rows (32-39) and in every residue of `down`; the
    finite rows equal the same rows resampled without the others."""
    x = torch.randn(40, 5000, generator=torch.Generator().manual_seed(down))
    bad = {3: (100, float("inf")), 17: (2000, float("nan")), 20: (0, -float("inf")),
           35: (4997, float("inf")), 38: (1500, float("nan")), 9: (4999, -float("inf")),
           12: (2501, float("inf")), 25: (3003, float("nan"))}
    for row, (i, value) in bad.items():
        x[row, i] = value
    out = resample(x.to(device_for(backend)), 1, down, backend=backend).cpu().numpy()
    ref = resample(x, 1, down, backend="torch").numpy()
    for pattern in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(pattern(out), pattern(ref))
    ref64 = scipy_reference(x, 1, down)
    finite = np.isfinite(ref64)
    scale = np.abs(np.where(np.isfinite(x.numpy()), x.numpy(), 0)).max()
    assert np.abs(out[finite] - ref64[finite]).max() <= RTOL[torch.float32] * scale
    good = [r for r in range(40) if r not in bad]
    alone = resample(x[good].to(device_for(backend)), 1, down, backend=backend).cpu().numpy()
    np.testing.assert_array_equal(out[good], alone)


# ---- the kernels against each other -----------------------------------------------------------

def _isas():
    best = torch.ops.fastecg._cpu_isa()
    order = ["generic", "avx2", "avx512"]
    return order[:order.index(best) + 1] if best in order else ["generic"]


@pytest.mark.skipif(not available("cpu"), reason="fastecg._C not built")
@pytest.mark.parametrize("isa", _isas() if available("cpu") else [])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_kernel_equals_torch_reference(isa, dtype, monkeypatch):
    """The generic sum (any up, down, offset, cval, row count, length), every instruction set
    this CPU has, against the conv1d reference."""
    monkeypatch.setenv("FASTECG_CPU_ISA", isa)
    gen = torch.Generator().manual_seed(0)
    kernel = torch.ops.fastecg._resample_poly_kernel
    # Symmetric taps take the folded path (AVX-512, AVX2), long phases the sliding one.
    for rows, n_in, up, down, n_taps, offset, n_out, cval, symmetric in [
            (37, 5000, 1, 2, 41, 20, 2500, 0.0, False), (37, 5000, 1, 2, 41, 20, 2500, 0.0, True),
            (40, 999, 1, 5, 101, 50, 200, 0.5, True), (33, 3001, 2, 1, 41, 20, 6002, 0.0, True),
            (20, 301, 1, 3, 40, 19, 101, 0.0, True),  # even length: no middle tap
            (5, 1, 3, 1, 61, 30, 3, 0.5, False), (5, 1, 1, 2, 41, 20, 1, 0.5, True),
            (33, 2049, 18, 25, 501, 250, 1476, -1.0, True),
            # a last block of 18 rows: one 16-row tile (AVX-512) and 2 rows of 8-row tiles
            (50, 1001, 18, 25, 501, 250, 721, 0.5, False),
            (9, 700, 25, 18, 501, 250, 972, 0.0, False),
            (1, 300, 7, 3, 5, 0, 800, 2.0, False), (17, 90, 2, 7, 100, 99, 40, 0.0, False),
            (3, 50, 4, 1, 3, 2, 210, 1.0, False)]:  # more phases (4) than taps (3)
        x = torch.randn(rows, n_in, generator=gen, dtype=dtype)
        taps = torch.randn(n_taps, generator=gen, dtype=dtype)
        if symmetric:
            taps = taps + taps.flip(0)
        args = (taps, up, down, offset, n_out, cval)
        out = kernel(x, *args)
        ref = resample_module.resample_reference(x.double(), taps.double(), *args[1:])
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(out.double(), ref, rtol=0, atol=tol * ref.abs().max().item())


def test_forced_backend_errors():
    x = torch.randn(2, 100)
    with pytest.raises(ValueError, match="unknown backend"):
        resample(x, 1, 2, backend="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="cuda"):
            resample(x, 1, 2, backend="cuda")


# ---- arguments ---------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    (dict(up=0, down=2), "up must be a positive integer, got 0"),
    (dict(up=1, down=-2), "down must be a positive integer, got -2"),
    (dict(up=2.0, down=1), "up must be a positive integer, got 2.0"),
    (dict(up=True, down=1), "up must be a positive integer, got True"),
    (dict(up=2), "give up and down"),
    (dict(), "give up and down"),
    (dict(up=1, down=2, fs_in=500, fs_out=250), "not both"),
    (dict(fs_in=500), "fs_in and fs_out go together"),
    (dict(fs_in=500, fs_out=359.9), "not a ratio of integers"),
    (dict(fs_in=500, fs_out=0), "resample fs_out: fs must be"),
    (dict(fs_in="500", fs_out=250), "resample fs_in: fs must be"),
    (dict(up=1, down=2, padtype="line"), "unknown padtype 'line'"),
    (dict(up=1, down=2, padtype="mean", cval=1.0), "cval has no effect"),
    (dict(up=1, down=2, cval=float("nan")), "cval must be a finite number"),
    (dict(up=1, down=2, window="hamnig"), "window .*'hamnig'"),
    (dict(up=1, down=2, window=("kaiser", "5")), "window must be"),
    (dict(up=1, down=2, window=np.ones((2, 3))), "1-D"),
    (dict(up=1, down=2, window=[]), "1-D"),
    (dict(up=1, down=2, backend="gpu"), "unknown backend"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        resample(torch.randn(2, 100), **kwargs)


@pytest.mark.parametrize("bad, error, match", [
    ([1.0, 2.0], TypeError, "torch.Tensor"),
    (torch.arange(10), TypeError, "floating-point"),
    (torch.tensor(1.0), ValueError, "dimension"),
])
def test_bad_input(bad, error, match):
    with pytest.raises(error, match=match):
        resample(bad, 1, 2)


def test_bad_arguments_fail_before_any_work(monkeypatch):
    def no_work(*args):
        raise AssertionError("a kernel ran")

    monkeypatch.setitem(resample_module.__dict__, "_resample_poly", no_work)
    with pytest.raises(ValueError, match="padtype"):
        resample(torch.randn(2, 100), 1, 2, padtype="wrap")
    with pytest.raises(ValueError, match="window"):
        resample(torch.randn(2, 100), 1, 2, window="nope")


def test_taps_requiring_grad_are_refused():
    taps = torch.ones(5, requires_grad=True)
    with pytest.raises(ValueError, match="detach"):
        resample(torch.randn(2, 10), 1, 2, window=taps)


# ---- autograd, custom op, compile ------------------------------------------------------------

@pytest.mark.parametrize("backend, up, down", [
    *[("cpu", up, down) for up, down in [(1, 2), (3, 2), (18, 25), (3, 1)] if available("cpu")],
    ("torch", 1, 2), ("torch", 18, 25)])
def test_gradcheck(backend, up, down):
    x = torch.randn(2, 3, 17, dtype=torch.float64, requires_grad=True)
    fn = lambda t: resample(t, up, down, backend=backend, cval=0.5)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    if backend == "cpu":  # the backward is the same op: one backend shows it (conv1d is slow)
        assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("padtype", ["mean", "median", "maximum", "minimum"])
def test_gradcheck_padtypes(padtype):
    x = torch.randn(2, 19, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: resample(t, 18, 25, padtype=padtype), (x,))


def test_gradient_is_autograd_of_the_reference():
    """The adjoint kernel against autograd through the conv1d reference (an independent
    transpose)."""
    x = torch.randn(5, 700, dtype=torch.float64, requires_grad=True)
    for up, down in [(1, 5), (18, 25), (257, 500)]:
        y = resample(x, up, down)
        g = torch.randn_like(y)
        (ours,) = torch.autograd.grad(y, x, g)
        taps = resample_module.resample_design(up, down, "kaiser", [5.0], "cpu", torch.float64)
        ref_y = resample_module.resample_reference(x, taps, up, down, (taps.shape[0] - 1) // 2,
                                                   y.shape[-1])
        (ref,) = torch.autograd.grad(ref_y, x, g)
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


def test_opcheck():
    taps32 = resample_module.resample_design(3, 2, "kaiser", [5.0], "cpu", torch.float32)
    taps64 = taps32.double()
    samples = [
        (torch.randn(2, 3, 20, requires_grad=True), taps32, 3, 2, 30, 30, 0.0, "auto"),
        (torch.randn(4, 20, dtype=torch.float64), taps64, 3, 2, 30, 30, 0.5, "auto"),
        (torch.randn(2, 20, dtype=torch.float64, requires_grad=True), taps64, 3, 2, 30, 30, 0.0,
         "torch"),
        (torch.randn(2, 20, dtype=torch.float64, requires_grad=True), taps64, 2, 3, 30, 14, 0.0,
         "auto"),
    ]
    for args in samples:
        torch.library.opcheck(torch.ops.fastecg.resample_poly.default, args)
    torch.library.opcheck(torch.ops.fastecg.resample_design.default,
                          (18, 25, "kaiser", [5.0], "cpu", torch.float32))


def test_compile_fullgraph_matches_eager():
    def pipeline(x):
        return resample(x * 2.0, fs_in=500, fs_out=360).relu()

    x = torch.randn(2, 12, 256, requires_grad=True)
    compiled = torch.compile(pipeline, fullgraph=True)
    out = compiled(x)
    torch.testing.assert_close(out, pipeline(x))
    (g_compiled,) = torch.autograd.grad(out.sum(), x)
    (g_eager,) = torch.autograd.grad(pipeline(x).sum(), x)
    torch.testing.assert_close(g_compiled, g_eager)


@pytest.mark.parametrize("backend", BACKENDS)
def test_eager_call_equals_the_custom_op(backend):
    # A plain eager call runs the op's implementation without the custom op's dispatch; a
    # signal that needs a gradient goes through the custom op. Both give the same numbers, bit for bit.
    device = device_for(backend)
    x = torch.randn(2, 3, 700, device=device, dtype=torch.float64)
    plain = resample(x, fs_in=500, fs_out=360, backend=backend)
    tracked = resample(x.clone().requires_grad_(), fs_in=500, fs_out=360, backend=backend)
    assert tracked.grad_fn is not None and plain.grad_fn is None
    assert torch.equal(plain, tracked.detach())
    taps = resample_module.resample_design(18, 25, "kaiser", [5.0], str(device), torch.float64)
    op = torch.ops.fastecg.resample_poly(x, taps, 18, 25, (taps.shape[0] - 1) // 2, 504, 0.0,
                                         backend)
    assert torch.equal(plain, op)


def test_custom_op_runs_under_vmap_and_dispatch_modes(monkeypatch):
    calls = []
    op = resample_module._resample_poly._op

    def counted(*args):
        calls.append(1)
        return op(*args)

    monkeypatch.setattr(resample_module._resample_poly, "_op", counted)
    x = torch.randn(3, 2, 100)
    resample(x, 1, 2)
    assert not calls  # plain eager: the implementation directly
    out = torch.vmap(lambda r: resample(r, 1, 2))(x)
    assert len(calls) == 1
    torch.testing.assert_close(out, resample(x, 1, 2))
    from torch.utils._python_dispatch import TorchDispatchMode

    class Seen(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(str(func))
            return func(*args, **(kwargs or {}))

    seen = []
    with Seen():
        resample(x, 1, 2)
    assert "fastecg.resample_poly.default" in seen


def test_repeated_calls_keep_every_check():
    # Eager calls reuse their checked arguments; an argument that compares equal to an
    # accepted one but is not accepted itself (True == 1) is still refused.
    x = torch.randn(2, 100)
    torch.testing.assert_close(resample(x, 1, 2, cval=1), resample(x, 1, 2, cval=1.0))
    with pytest.raises(ValueError, match="cval must be a finite number, got True"):
        resample(x, 1, 2, cval=True)
    resample(x, 2, 1)
    with pytest.raises(ValueError, match="up must be a positive integer, got 2.0"):
        resample(x, 2.0, 1)
    with pytest.raises(ValueError, match="up must be a positive integer, got True"):
        resample(x, True, 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_func_grad_on_the_first_call_designs_the_taps(dtype, monkeypatch):
    # The first call of a ratio designs its taps; inside torch.func.grad that read the
    # dtype's NumPy type off a new tensor, which failed ("Cannot access data pointer").
    # Reference: the gradient of <resample_poly(x), w> is J^T w, J's columns SciPy's
    # resampling of unit impulses.
    monkeypatch.setattr(resample_module, "_PLANS", {})
    resample_module.resample_design.cache_clear()
    n, up, down = 60, 7, 11
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, n, dtype=dtype, generator=gen)
    jac = np.stack([scipy.signal.resample_poly(np.eye(n)[i], up, down) for i in range(n)],
                   axis=1)
    w = torch.randn(2, jac.shape[0], dtype=torch.float64, generator=gen)
    grad = torch.func.grad(lambda s: (resample(s, up, down).double() * w).sum())(x)
    ref = torch.from_numpy(w.numpy() @ jac)
    assert grad.dtype == dtype
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(grad.double(), ref, rtol=tol, atol=tol)
