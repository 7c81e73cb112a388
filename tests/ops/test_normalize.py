"""fastecg.ops.normalize against the NumPy path (float64 statistics), every backend."""

import math

import numpy as np
import pytest
import torch

import fastecg
from backends import CUDA, TRITON, device_for
from fastecg import numpy_path
from fastecg.data import synthetic_ecg
from fastecg.ops import normalize

# Kernels accumulate statistics in float64 and round once; the torch backend computes
# in the input dtype. Measured max errors vs float64 NumPy on unit-scale output:
# float32 ~3e-7 (kernels) / ~2e-6 (torch), float64 ~1e-15.
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-10, atol=1e-10)}
METHODS = ["z-score", "min-max", "naive"]


def available(backend):
    return fastecg.backends()[backend].available


BACKENDS = [b for b in ("cpu", "torch") if available(b)] + [
    p for p in (TRITON, CUDA) if available(p.values[0])]
SHAPES = [(2, 12, 500), (1, 1, 7), (3, 2, 4, 1031), (12, 2)]


def reference(x, **kw):
    return torch.from_numpy(numpy_path.normalize(x.double().numpy(), **kw)).to(x.dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_numpy_path(backend, shape, method, per_channel, dtype):
    if backend == "triton" and np.prod(shape) > 20_000:
        pytest.skip("Triton interpreter: small shapes only")
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=dtype) * 3 + 1.5
    kw = dict(method=method, mean=0.5, std=2.0, per_channel=per_channel)
    out = normalize(x.to(device_for(backend)), backend=backend, **kw).cpu()
    assert out.dtype == dtype and out.shape == x.shape
    torch.testing.assert_close(out, reference(x, **kw), **TOL[dtype])


def test_statistics_of_output():
    x = torch.from_numpy(synthetic_ecg(4, seed=1))
    z = normalize(x, "z-score", mean=1.0, std=3.0, per_channel=True)
    torch.testing.assert_close(z.mean(-1), torch.ones(4, 12), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(-1), torch.full((4, 12), 3.0), atol=1e-5, rtol=0)
    m = normalize(x, "min-max")
    flat = m.reshape(4, -1)
    torch.testing.assert_close(flat.amin(1), torch.zeros(4), atol=1e-6, rtol=0)
    torch.testing.assert_close(flat.amax(1), torch.ones(4), atol=1e-6, rtol=0)


def test_hand_computed():
    x = torch.tensor([[1.0, 2.0, 3.0, 6.0]], dtype=torch.float64)  # mean 3, unbiased std sqrt(14/3)
    sigma = (14 / 3) ** 0.5
    torch.testing.assert_close(normalize(x, "z-score", per_channel=True),
                               (x - 3) / (sigma + 1e-7))
    torch.testing.assert_close(normalize(x, "min-max", per_channel=True), (x - 1) / (5 + 1e-7))
    torch.testing.assert_close(normalize(x, "naive", mean=1.0, std=2.0, per_channel=True),
                               (x - 1) / 2)


def test_tensor_mean_std_per_lead():
    x = torch.randn(2, 3, 100, dtype=torch.float64)
    mean = torch.tensor([[0.0], [1.0], [2.0]], dtype=torch.float64)
    std = torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64)
    z = normalize(x, "z-score", mean=mean, std=std, per_channel=True)
    torch.testing.assert_close(z.mean(-1), mean.squeeze(-1).expand(2, 3))
    torch.testing.assert_close(z.std(-1), std.squeeze(-1).expand(2, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(normalize(x, "naive", mean=mean, std=std), (x - mean) / std)
    with pytest.raises(ValueError, match="positive"):
        normalize(x, "z-score", std=-std)


def test_real_records(cinc_records):
    sig = np.stack([fastecg.data.load_cinc_record(p)[0] for p in cinc_records[:8]])
    x = torch.from_numpy(sig)
    for method in METHODS:
        torch.testing.assert_close(normalize(x, method, per_channel=True),
                                   reference(x, method=method, per_channel=True),
                                   **TOL[torch.float32])


# ---- dtypes, layouts, edge cases ----------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_types_computed_in_float32(dtype):
    x = torch.randn(2, 12, 300).to(dtype)
    out = normalize(x)
    assert out.dtype == dtype
    expected = normalize(x.float()).to(dtype)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_non_contiguous_and_channels_last_views():
    base = torch.randn(4, 600, 12)
    x = base.transpose(1, 2)  # (4, 12, 600) with stride 1 across leads
    assert not x.is_contiguous()
    torch.testing.assert_close(normalize(x, per_channel=True),
                               normalize(x.contiguous(), per_channel=True), rtol=0, atol=0)
    y = torch.randn(4, 12, 1200)[..., ::2]
    torch.testing.assert_close(normalize(y), normalize(y.contiguous()), rtol=0, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_and_inf_poison_only_their_record(backend):
    x = torch.randn(3, 2, 50, dtype=torch.float64)
    x[1, 0, 7] = float("nan")
    x[2, 1, 3] = float("inf")
    x = x.to(device_for(backend))
    for method in ("z-score", "min-max"):
        out = normalize(x, method, backend=backend)
        assert out[1].isnan().all() and out[2].isnan().all()
        torch.testing.assert_close(out[0], normalize(x[:1], method)[0])
        per_lead = normalize(x, method, per_channel=True, backend=backend)
        assert per_lead[1, 0].isnan().all() and per_lead[2, 1].isnan().all()
        assert per_lead[1, 1].isfinite().all() and per_lead[2, 0].isfinite().all()
    naive = normalize(x, "naive", mean=1.0, std=2.0, backend=backend)
    assert naive.isnan().sum() == 1 and naive.isinf().sum() == 1


def test_constant_record_is_finite_and_centred():
    x = torch.full((2, 3, 10), 4.0)
    torch.testing.assert_close(normalize(x, "z-score", mean=1.0), torch.ones_like(x))
    torch.testing.assert_close(normalize(x, "min-max"), torch.zeros_like(x))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("shape", [(0, 12, 100), (2, 0, 100)])
def test_empty_input_gives_empty_result(method, per_channel, shape):
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    out = normalize(x, method, per_channel=per_channel)
    assert out.shape == shape and out.dtype == x.dtype
    out.sum().backward()
    assert x.grad.shape == shape


@pytest.mark.parametrize("bad, error, match", [
    (torch.arange(10).reshape(1, 10), TypeError, "floating-point"),
    (torch.randn(2, 3, dtype=torch.complex64), TypeError, "floating-point"),
    (torch.randn(10), ValueError, "at least 2 dimension"),
    (torch.tensor(1.0), ValueError, "dimension"),
    (torch.randn(3, 0), ValueError, "at least 1 sample"),
    (torch.randn(1, 1), ValueError, "at least 2 values"),
    ([1.0, 2.0], TypeError, "torch.Tensor"),
])
def test_bad_input(bad, error, match):
    with pytest.raises(error, match=match):
        normalize(bad)


def test_bad_arguments():
    x = torch.randn(2, 3, 10)
    with pytest.raises(ValueError, match="unknown method 'zscore'"):
        normalize(x, "zscore")
    with pytest.raises(ValueError, match="std must be positive"):
        normalize(x, std=0.0)
    with pytest.raises(ValueError, match="at least 2 sample"):
        normalize(torch.randn(3, 1), per_channel=True)
    with pytest.raises(ValueError, match="unknown backend"):
        normalize(x, backend="gpu")
    with pytest.raises(RuntimeError, match="cuda"):
        normalize(x, backend="cuda")


def test_numpy_path_names_a_bad_shape():
    with pytest.raises(ValueError, match=r"\(\.\.\., n_leads, n_samples\)"):
        numpy_path.normalize(np.zeros(10, dtype=np.float32))


@pytest.mark.parametrize("kwargs, shape, match", [
    (dict(method="naive", mean=np.arange(12.0)), (12, 12), "does not broadcast"),
    (dict(std=np.ones(12)), (12, 12), "does not broadcast"),
    (dict(ddof=-1), (2, 10), "ddof must be"),
    (dict(eps=-1.0), (2, 10), "eps must be"),
    (dict(per_channel=True), (3, 1), "at least 2 sample"),
    (dict(per_channel=True, ddof=0), (3, 0), "at least 1 sample"),
    (dict(method="naive"), (3, 0), "at least 1 sample"),
    (dict(), (1, 1), "at least 2 values"),
])
def test_numpy_path_refuses_what_the_torch_path_refuses(kwargs, shape, match):
    """Per-lead values as a 1-D array ran along time on the NumPy path, and too few
    samples gave NaN with a RuntimeWarning; both are the torch path's ValueErrors."""
    with pytest.raises(ValueError, match=match):
        normalize(torch.zeros(shape, dtype=torch.float64), **kwargs)
    with pytest.raises(ValueError, match=match):
        numpy_path.normalize(np.zeros(shape), **kwargs)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("per_channel", [False, True])
def test_numpy_path_empty_input_gives_empty_result(method, per_channel):
    import warnings

    for shape in ((0, 12, 100), (2, 0, 100)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # (it warned "Mean of empty slice")
            out = numpy_path.normalize(np.zeros(shape, np.float32), method,
                                       per_channel=per_channel)
        assert out.shape == shape and out.dtype == np.float32


def test_modules_check_their_arguments_when_built():
    from fastecg.preprocessors import Normalize, ZScoreNormalize

    with pytest.raises(ValueError, match="std must be positive"):
        ZScoreNormalize(std=0.0)
    with pytest.raises(ValueError, match="unknown method"):
        Normalize(method="x")
    with pytest.raises(ValueError, match="unknown backend"):
        Normalize(backend="gpu")


# ---- autograd, custom op, compile ------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("per_channel", [False, True])
def test_gradcheck(method, per_channel):
    x = torch.randn(2, 3, 9, dtype=torch.float64, requires_grad=True)
    fn = lambda t: normalize(t, method, mean=0.3, std=1.7, per_channel=per_channel)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_gradient_equals_autograd_of_torch_formula():
    x = torch.randn(2, 12, 50, dtype=torch.float64, requires_grad=True)
    g = torch.randn_like(x)
    (ours,) = torch.autograd.grad(normalize(x, per_channel=True), x, g)
    mu, sd = x.mean(-1, keepdim=True), x.std(-1, keepdim=True)
    (ref,) = torch.autograd.grad((x - mu) / (sd + 1e-7), x, g)
    torch.testing.assert_close(ours, ref)


def test_constant_record_gradient_is_finite():
    x = torch.full((1, 2, 8), 3.0, dtype=torch.float64, requires_grad=True)
    normalize(x).sum().backward()
    assert x.grad.isfinite().all()


@pytest.mark.parametrize("method", METHODS)
def test_opcheck(method):
    code = fastecg.ops.normalize.__globals__["NORMALIZE_METHODS"][method]
    samples = [
        (torch.randn(2, 3, 20, requires_grad=True), code, 0.0, 1.0, False, "auto"),
        (torch.randn(4, 20, dtype=torch.float64), code, 1.0, 2.0, True, "auto"),
        (torch.randn(2, 3, 20, dtype=torch.float64, requires_grad=True), code, 0.0, 1.0, True,
         "torch"),
    ]
    for args in samples:
        torch.library.opcheck(torch.ops.fastecg.normalize.default, args)


def test_compile_fullgraph_matches_eager():
    def pipeline(x):
        return normalize(x * 2.0, "z-score", per_channel=True).relu()

    x = torch.randn(2, 12, 256, requires_grad=True)
    compiled = torch.compile(pipeline, fullgraph=True)
    out = compiled(x)
    torch.testing.assert_close(out, pipeline(x))
    (g_compiled,) = torch.autograd.grad(out.sum(), x)
    (g_eager,) = torch.autograd.grad(pipeline(x).sum(), x)
    torch.testing.assert_close(g_compiled, g_eager)


@pytest.mark.parametrize("method", ["z-score", "min-max", "naive"])
def test_compile_with_dynamic_shapes(method):
    torch._dynamo.reset()
    compiled = torch.compile(lambda t: normalize(t, method), fullgraph=True, dynamic=True,
                             backend="aot_eager")
    for n in (40, 57):
        x = torch.randn(2, 3, n)
        assert torch.equal(compiled(x), normalize(x, method))


def test_module_wrappers():
    from fastecg.preprocessors import MinMaxNormalize, Normalize, ZScoreNormalize
    from fastecg.registry import PREPROCESSORS

    x = torch.randn(2, 12, 100)
    built = PREPROCESSORS.build({"name": "normalize", "method": "min-max", "per_channel": True})
    assert isinstance(built, Normalize)
    torch.testing.assert_close(built(x), MinMaxNormalize(per_channel=True)(x), rtol=0, atol=0)
    torch.testing.assert_close(ZScoreNormalize(mean=1.0)(x), normalize(x, mean=1.0), rtol=0,
                               atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_flat_lead_at_an_offset_centres_to_zero(backend):
    """A disconnected lead sits flat at a DC offset: z-score gives 0 there (as NumPy in
    float64), not the float32 mean's rounding divided by eps; the other lead is exact."""
    x = torch.full((1, 2, 5000), 1000.1)
    x[0, 1] = torch.randn(5000, generator=torch.Generator().manual_seed(0))
    y = normalize(x, per_channel=True, backend=backend)
    assert torch.equal(y[0, 0], torch.zeros(5000))
    torch.testing.assert_close(y, reference(x, per_channel=True), atol=2e-6, rtol=0)


def test_stats_of_another_shape_are_refused_and_arrays_are_taken():
    x = torch.randn(2, 3, 100, dtype=torch.float64)
    for mean in (torch.zeros(12, 1), torch.zeros(3), torch.zeros(5, 1, 1, 1)):
        with pytest.raises(ValueError, match=r"does not broadcast to x.shape\[:-1\] \+ \(1,\)"):
            normalize(x, "naive", mean=mean)
    with pytest.raises(ValueError, match="does not broadcast"):
        normalize(torch.randn(100), mean=torch.zeros(3, 1), per_channel=True)
    col = torch.tensor([[0.5], [1.0], [2.0]], dtype=torch.float64)
    want = normalize(x, "z-score", mean=col, std=2 * col, per_channel=True)
    for as_given in (col.numpy(), col.tolist()):
        torch.testing.assert_close(normalize(x, "z-score", mean=as_given, std=2 * np.asarray(
            as_given), per_channel=True), want, rtol=0, atol=0)
    assert torch.equal(normalize(x, "naive", mean=np.float32(2.0), std=np.array(4.0)),
                       (x - 2) / 4)


@pytest.mark.parametrize("backend", BACKENDS + ["numpy"])
def test_float64_at_a_large_dc_offset_keeps_its_digits(backend):
    """Error relative to the signal, not to a DC offset: a flat float64 lead at 1e6 + 0.3
    gives 0 (the compiled kernels' x * scale + shift gave up to 0.97) and 1e-3 of signal
    on 1e8 matches the exact (math.fsum) z-score and min-max to 1e-12 of the peak."""
    gen = torch.Generator().manual_seed(0)
    n = 200_000 if backend in ("cpu", "torch", "numpy") else 20_000
    x = torch.empty(1, 2, n, dtype=torch.float64)
    x[0, 0] = 1e6 + 0.3
    x[0, 1] = 1e8 + 1e-3 * torch.randn(n, dtype=torch.float64, generator=gen)
    row = x[0, 1].numpy()
    mu = math.fsum(row) / n
    c = row - mu
    c -= math.fsum(c) / n
    z_ref = c / (math.sqrt(math.fsum(c * c) / (n - 1)) + 1e-7)
    mm_ref = (row - row.min()) / (row.max() - row.min() + 1e-7)

    def run(method):
        if backend == "numpy":
            return torch.from_numpy(numpy_path.normalize(x.numpy(), method, per_channel=True))
        return normalize(x.to(device_for(backend)), method, per_channel=True,
                         backend=backend).cpu()

    z = run("z-score")
    assert torch.equal(z[0, 0], torch.zeros(n, dtype=torch.float64))
    assert np.abs(z[0, 1].numpy() - z_ref).max() / np.abs(z_ref).max() < 1e-12
    mm = run("min-max")
    assert np.abs(mm[0, 1].numpy() - mm_ref).max() < 1e-12



def test_gradient_of_a_flat_lead_at_an_offset_matches_its_forward():
    """The backward centres as the forward does (mean refined by the leftover's mean):
    a flat float32 lead at 1e4 + 0.3 normalises to 0, so its gradient is
    (g - mean g) / eps; it was 1e4 times too small."""
    x = torch.full((1, 1, 500), 1e4 + 0.3, requires_grad=True)
    g = torch.randn(1, 1, 500, generator=torch.Generator().manual_seed(0))
    for backend in ("cpu", "torch"):
        x.grad = None
        y = normalize(x, per_channel=True, backend=backend)
        assert torch.equal(y, torch.zeros_like(y))
        y.backward(g)
        torch.testing.assert_close(x.grad, (g - g.mean()) / 1e-7, rtol=1e-5, atol=0)
