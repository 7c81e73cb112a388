"""Every CPU kernel honours FASTECG_CPU_ISA (csrc/cpu/isa.h): each instruction set this CPU
runs gives the generic variant's results, and a name that is no instruction set raises."""

import pytest
import torch

from fastecg import backends
from fastecg.ops import bandpass, median_filter1d, normalize, remove_baseline, resample
from fastecg.ops.augment import OpCode, augment_pass

ORDER = ["generic", "avx2", "avx512"]

pytestmark = pytest.mark.skipif(not backends()["cpu"].available, reason="fastecg._C not built")


def ecg_like(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    wander = torch.randn(shape, generator=g, dtype=torch.float64).cumsum(-1) * 0.02
    return (wander + torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)


def with_bad_values(x):
    """A copy with a NaN in one row and infinities in another (the kernels' exact paths)."""
    x = x.clone()
    flat = x.reshape(-1, x.shape[-1])
    flat[1, 17] = float("nan")
    flat[2, 5] = float("inf")
    flat[2, 40] = float("-inf")
    return x


def generic_result(monkeypatch, fn):
    monkeypatch.setenv("FASTECG_CPU_ISA", "generic")
    return fn()


def peak_error(out, ref):
    finite = ref.isfinite()
    assert torch.equal(finite, out.isfinite())
    assert torch.equal(ref.isnan(), out.isnan())
    assert torch.equal(ref[ref.isinf()], out[ref.isinf()])
    diff = (out.double() - ref.double())[finite].abs().max()
    return float(diff / ref.double()[finite].abs().max())


TOL = {torch.float32: 1e-6, torch.float64: 1e-12}
DTYPES = [torch.float32, torch.float64]


# Rows of one chunk and of several (the median's chunks are 8192 outputs); wrap mode over
# several chunks takes the stage-by-stage path, the others one ranking for both stages.
MEDIAN_CASES = [((3, 5, 1000), "nearest"), ((2, 3, 5000), "reflect"), ((5, 20000), "mirror"),
                ((4, 20000), "wrap"), ((3, 777), "constant")]


@pytest.mark.parametrize("shape,mode", MEDIAN_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_median_bit_for_bit_on_every_isa(cpu_isa, monkeypatch, shape, mode, dtype):
    x = with_bad_values(ecg_like(shape, dtype))
    calls = [
        lambda: median_filter1d(x, 101, mode=mode, backend="cpu"),
        lambda: median_filter1d(x, 30, mode=mode, origin=7, backend="cpu"),
        lambda: remove_baseline(x, 500.0, mode=mode, backend="cpu"),
        lambda: remove_baseline(x.abs() + 1, 500.0, mode=mode, backend="cpu"),  # all finite
    ]
    outs = [fn() for fn in calls]
    for fn, out in zip(calls, outs):
        ref = generic_result(monkeypatch, fn)
        monkeypatch.setenv("FASTECG_CPU_ISA", cpu_isa)
        assert torch.equal(out.view(-1).view(torch.uint8), ref.view(-1).view(torch.uint8))


@pytest.mark.parametrize("shape", [(3, 5, 1000), (5, 40000)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_moving_average_on_every_isa(cpu_isa, monkeypatch, shape, dtype):
    x = ecg_like(shape, dtype)
    x_bad = with_bad_values(x)  # rows with Inf/NaN take the direct sums, one row at a time
    for inp in (x, x_bad):
        out = remove_baseline(inp, 500.0, method="mean", backend="cpu")
        ref = generic_result(monkeypatch, lambda: remove_baseline(inp, 500.0, method="mean",
                                                                   backend="cpu"))
        monkeypatch.setenv("FASTECG_CPU_ISA", cpu_isa)
        assert peak_error(out, ref) <= TOL[dtype]


# 1000 and 5000 samples: one-piece transforms; 12000: the four-step form (from 16384 points).
@pytest.mark.parametrize("shape", [(3, 5, 1000), (2, 12, 5000), (5, 12000)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_fft_bandpass_on_every_isa(cpu_isa, monkeypatch, shape, dtype):
    x = with_bad_values(ecg_like(shape, dtype)).requires_grad_()
    g = ecg_like(shape, dtype, seed=1)

    def run():
        y = bandpass(x, 500.0, method="fft", backend="cpu")
        (grad,) = torch.autograd.grad(y, x, g)  # the kernel's adjoint
        return y.detach(), grad

    out, out_grad = run()
    ref, ref_grad = generic_result(monkeypatch, run)
    assert peak_error(out, ref) <= TOL[dtype]
    assert peak_error(out_grad, ref_grad) <= TOL[dtype]


@pytest.mark.parametrize("method", ["z-score", "min-max", "naive"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_normalize_on_every_isa(cpu_isa, monkeypatch, method, dtype):
    x = ecg_like((6, 12, 1003), dtype) * 3 + 0.5
    x = torch.cat([x, with_bad_values(x)])
    fn = lambda: normalize(x, method, mean=0.25, std=2.0, backend="cpu")  # noqa: E731
    out = fn()
    ref = generic_result(monkeypatch, fn)
    assert peak_error(out, ref) <= TOL[dtype]


@pytest.mark.parametrize("up,down", [(1, 2), (5, 2), (18, 25)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_resample_on_every_isa(cpu_isa, monkeypatch, up, down, dtype):
    x = ecg_like((3, 12, 2001), dtype)
    fn = lambda: resample(x, up, down, backend="cpu")  # noqa: E731
    out = fn()
    ref = generic_result(monkeypatch, fn)
    assert peak_error(out, ref) <= TOL[dtype]


# Per sample: stretches and compressions (AVX-512 interpolates from a window of 32 inputs
# while a vector's inputs fit in it: ratios below ~2; beyond, gathers), shifts past either
# end (zeros there), and rows that end mid-vector.
WARP_RATIOS = [0.55, 0.93, 1.0, 1.07, 1.9, 2.05, 10.0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_augment_warp_on_every_isa(cpu_isa, monkeypatch, dtype):
    x = with_bad_values(ecg_like((len(WARP_RATIOS), 12, 1003), dtype))
    ratio = torch.tensor(WARP_RATIOS, dtype=torch.float64)
    offset = torch.tensor([0, -37, 120, 5, -3, 0, 0])
    limit = torch.tensor([1003, 1003, 900, 1003, 528, 490, 101])
    fn = lambda: augment_pass(x, [OpCode.WARP], [997], [], [offset, limit, ratio],  # noqa: E731
                              backend="cpu")[0]
    out = fn()
    ref = generic_result(monkeypatch, fn)
    assert peak_error(out, ref) <= TOL[dtype]


def every_kernel():
    x = ecg_like((2, 3, 600), torch.float32)
    return {
        "sosfiltfilt": lambda: bandpass(x, 500.0, backend="cpu"),
        "median": lambda: median_filter1d(x, 31, backend="cpu"),
        "dual median": lambda: remove_baseline(x, 500.0, backend="cpu"),
        "moving average": lambda: remove_baseline(x, 500.0, method="mean", backend="cpu"),
        "fft": lambda: bandpass(x, 500.0, method="fft", backend="cpu"),
        "normalize": lambda: normalize(x, backend="cpu"),
        "resample": lambda: resample(x, 2, 5, backend="cpu"),
        "_cpu_isa": lambda: torch.ops.fastecg._cpu_isa(),
    }


@pytest.mark.parametrize("kernel", list(every_kernel()))
def test_unknown_isa_raises_for_every_kernel(monkeypatch, kernel):
    fn = every_kernel()[kernel]
    fn()  # warm: caches filled outside the checked call
    monkeypatch.setenv("FASTECG_CPU_ISA", "bogus")
    with pytest.raises(RuntimeError, match="FASTECG_CPU_ISA must be generic, avx2 or avx512"):
        fn()


@pytest.mark.parametrize("kernel", list(every_kernel()))
def test_isa_beyond_the_cpu_raises_for_every_kernel(monkeypatch, kernel):
    monkeypatch.delenv("FASTECG_CPU_ISA", raising=False)
    best = torch.ops.fastecg._cpu_isa()
    if best == ORDER[-1]:
        pytest.skip("this CPU runs every instruction set")
    monkeypatch.setenv("FASTECG_CPU_ISA", ORDER[ORDER.index(best) + 1])
    with pytest.raises(RuntimeError, match="FASTECG_CPU_ISA="):
        every_kernel()[kernel]()


def test_cpu_isa_reports_the_forced_isa(cpu_isa):
    assert torch.ops.fastecg._cpu_isa() == cpu_isa
