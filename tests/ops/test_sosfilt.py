"""sosfilt / sosfiltfilt against scipy.signal (float64): designs, padding, every instruction
set of the CPU kernel, state across tiles, exact adjoints, compile."""

import numpy as np
import pytest
import scipy.signal as ss
import torch

from fastecg.ops import sosfilt, sosfiltfilt
from helpers import rel_err, signal
from sos_designs import DESIGNS

# Error relative to the output's peak. Measured: float32 ~4e-8 (state in float64,
# float32 padding as SciPy), float64 ~1e-14.
TOL = {torch.float32: 1e-6, torch.float64: 1e-11}
CPU_BACKENDS = ["cpu", "torch"]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("padtype", ["odd", "even", "constant", None])
@pytest.mark.parametrize("padlen", [None, 0, 5, 60])
def test_sosfiltfilt_padding_matches_scipy(backend, padtype, padlen):
    sos = ss.butter(4, [0.5, 45.0], btype="bandpass", fs=500.0, output="sos")
    x = signal((2, 3, 257), torch.float64)
    ref = ss.sosfiltfilt(sos, x.numpy(), padtype=padtype, padlen=padlen)
    out = sosfiltfilt(sos, x, padtype=padtype, padlen=padlen, backend=backend)
    assert rel_err(out, ref) < TOL[torch.float64]


@pytest.mark.parametrize("design", list(DESIGNS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_other_designs_match_scipy(design, dtype):
    sos = DESIGNS[design]()
    x = signal((4, 3, 400), dtype)
    assert rel_err(sosfiltfilt(sos, x), ss.sosfiltfilt(sos, x.numpy())) < TOL[dtype]
    assert rel_err(sosfilt(sos, x), ss.sosfilt(sos, x.numpy())) < TOL[dtype]
    zi = ss.sosfilt_zi(sos)[:, None, None, :] * x.numpy()[None, ..., :1].astype(np.float64)
    y_ref, zf_ref = ss.sosfilt(sos, x.numpy(), zi=zi)
    y, zf = sosfilt(sos, x, zi=torch.from_numpy(zi))
    assert rel_err(y, y_ref) < TOL[dtype]
    assert zf.dtype == torch.float64 and rel_err(zf, zf_ref) < 1e-9


def test_sos_as_nested_tuples_or_lists():
    # Tuples of number tuples take a cached validation; lists, tuples of lists and
    # tuples of tensor rows are validated on every call.
    sos = ss.butter(4, [0.5, 45.0], btype="bandpass", fs=500.0, output="sos")
    x = signal((2, 3, 400), torch.float64)
    ref = ss.sosfiltfilt(sos, x.numpy())
    for form in (tuple(map(tuple, sos)), tuple(map(list, sos)), sos.tolist()):
        assert rel_err(sosfiltfilt(form, x), ref) < TOL[torch.float64]
    with pytest.raises(ValueError, match="should be all ones"):
        sosfiltfilt(tuple(tuple(r) for r in sos * 2), x)
    # rows that are tensors are read on every call: an in-place change is seen
    sos_t = torch.from_numpy(sos.copy())
    rows = tuple(sos_t)
    assert rel_err(sosfiltfilt(rows, x), ref) < TOL[torch.float64]
    sos_t[0, :3] *= 2  # twice the gain: 4x after both passes
    assert rel_err(sosfiltfilt(rows, x), 4 * ref) < TOL[torch.float64]


# 35 rows: full 4- and 8-lane blocks and a partial one; 1001 and 1030 samples: tiles
# inside the rows, which AVX2 filters on the rows themselves (forward from them,
# backward into them), beside edge tiles that go through copies; lengths not a multiple
# of the four samples the passes on rows take at a time.
@pytest.mark.parametrize("shape", [(5, 7, 333), (2, 4, 1001), (9, 1030)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_instruction_set_the_cpu_runs(cpu_isa, shape, dtype):
    sos = ss.butter(4, [0.5, 45.0], btype="bandpass", fs=500.0, output="sos")
    x = signal(shape, dtype)
    out = sosfiltfilt(sos, x, backend="cpu")
    assert out.dtype == dtype
    assert rel_err(out, ss.sosfiltfilt(sos, x.numpy())) < TOL[dtype]


@pytest.mark.parametrize("rows", [3, 4])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 256, 257, 258, 259, 515])
def test_sosfilt_state_across_tiles(cpu_isa, n, rows):
    # The CPU kernel filters 256-sample tiles (AVX2, 4 rows: the whole row in one pass on
    # the rows); with zeros at +-1 (Butterworth) the FMA targets run a pass in direct
    # form I, its first two steps in DF2T, and convert the state back on return; passes
    # of fewer than 4 samples run in DF2T, and the steps go in groups of four with the
    # rest one by one: each length takes a different mix of those branches.
    sos = ss.butter(4, [0.5, 45.0], btype="bandpass", fs=500.0, output="sos")
    x = signal((rows, n), torch.float64, seed=n)
    zi = torch.randn(sos.shape[0], rows, 2, dtype=torch.float64,
                     generator=torch.Generator().manual_seed(n))
    y, zf = sosfilt(sos, x, zi=zi, backend="cpu")
    y_ref, zf_ref = ss.sosfilt(sos, x.numpy(), zi=zi.numpy())
    assert rel_err(y, y_ref) < TOL[torch.float64] and rel_err(zf, zf_ref) < 1e-11


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("padtype", ["odd", "even", "constant", None])
def test_gradcheck_sosfiltfilt(backend, padtype):
    sos = ss.butter(2, [5.0, 40.0], btype="bandpass", fs=200.0, output="sos")
    x = torch.randn(2, 40, dtype=torch.float64, requires_grad=True)
    fn = lambda t: sosfiltfilt(sos, t, padtype=padtype, backend=backend)  # noqa: E731
    # The torch reference is a Python loop over time: its checks run in fast mode.
    fast = backend == "torch"
    assert torch.autograd.gradcheck(fn, (x,), fast_mode=fast)
    assert torch.autograd.gradgradcheck(fn, (x,), fast_mode=fast)


@pytest.mark.parametrize("padtype", ["odd", "even", "constant", None])
@pytest.mark.parametrize("n", [30, 301, 300_000])
def test_fused_adjoint_is_the_transpose(padtype, n):
    # <A x, g> == <x, A^T g> for the fused CPU adjoint, in float64, for rows shorter
    # than the extension's reach, ECG-length rows and Holter-length rows (segmented
    # kernel path); the composed adjoint (torch backend) agrees on the short ones.
    sos = torch.tensor(ss.butter(4, [0.5, 45.0], btype="bandpass", fs=500.0, output="sos"))
    x, g = signal((3, n), torch.float64, seed=1), signal((3, n), torch.float64, seed=2)
    x.requires_grad_()
    y = sosfiltfilt(sos, x, padtype=padtype, padlen=None if n > 27 else n - 1)
    (xg,) = torch.autograd.grad(y, x, g)
    lhs, rhs = float((y * g).sum()), float((x * xg).sum())
    assert abs(lhs - rhs) <= 1e-11 * float(y.abs().sum() * g.abs().max())
    if n < 1000:
        y_ref = sosfiltfilt(sos, x, padtype=padtype, padlen=None if n > 27 else n - 1,
                            backend="torch")
        (xg_ref,) = torch.autograd.grad(y_ref, x, g)
        assert rel_err(xg, xg_ref) < 1e-11
    # float32 gradients: the same kernel; the edge terms are float32 dot products over
    # the whole row (measured 1.4e-5 of the peak for 300 000 samples, 1e-6 for 30).
    x32 = x.detach().float().requires_grad_()
    y32 = sosfiltfilt(sos, x32, padtype=padtype, padlen=None if n > 27 else n - 1)
    (xg32,) = torch.autograd.grad(y32, x32, g.float())
    assert xg32.dtype == torch.float32
    assert rel_err(xg32, xg.detach()) < (1e-5 if n < 1000 else 5e-5)


@pytest.mark.parametrize("design", ["butter", "butter8", "ellip"])
@pytest.mark.parametrize("lead_shape", [(), (2,), (2, 3)])
def test_gradcheck_sosfilt_through_y_and_zf(design, lead_shape):
    sos = {"butter": lambda: ss.butter(2, [5.0, 40.0], btype="bandpass", fs=200.0, output="sos"),
           "butter8": lambda: ss.butter(8, 30.0, fs=200.0, output="sos"),
           "ellip": DESIGNS["ellip"]}[design]()
    g = torch.Generator().manual_seed(len(lead_shape))
    x = torch.randn(*lead_shape, 25, generator=g, dtype=torch.float64, requires_grad=True)
    zi = torch.randn(sos.shape[0], *lead_shape, 2, generator=g, dtype=torch.float64,
                     requires_grad=True)
    w, v = torch.randn(x.shape, dtype=torch.float64), torch.randn(zi.shape, dtype=torch.float64)

    def loss(a, b):
        y, zf = sosfilt(sos, a, zi=b)
        return (y * w).sum() + (zf * v).sum()

    assert torch.autograd.gradcheck(loss, (x, zi))
    if lead_shape == (2,):  # second order costs one backward per input: one shape only
        assert torch.autograd.gradgradcheck(lambda a, b: sosfilt(sos, a, zi=b), (x, zi))
    if lead_shape == ():
        assert torch.autograd.gradcheck(lambda a, b: sosfilt(sos, a, zi=b, backend="torch")[1],
                                        (x, zi))


def test_sos_requiring_grad_is_refused():
    # The filter is a constant: rather than a silent sos.grad of None, an error.
    sos = torch.tensor(DESIGNS["cheby1"](), requires_grad=True)
    x = signal((2, 300), torch.float64)
    for op in (sosfiltfilt, sosfilt):
        with pytest.raises(ValueError, match="sos.detach"):
            op(sos, x)
    with torch.no_grad():
        torch.testing.assert_close(sosfiltfilt(sos, x), sosfiltfilt(sos.detach(), x))


def test_compiled_filters_follow_the_design_they_are_given():
    # sos is read when the graph runs: another design (same shape or not, another
    # default padlen: C has a first-order section, D does not) is filtered as that design.
    designs = [ss.butter(4, [0.5, 40.0], "bandpass", fs=250.0, output="sos"),
               ss.butter(4, [5.0, 20.0], "bandpass", fs=250.0, output="sos"),
               ss.butter(5, 30.0, "lowpass", fs=250.0, output="sos"),
               ss.butter(3, [5.0, 20.0], "bandpass", fs=250.0, output="sos")]
    x = signal((2, 400), torch.float64)
    torch.compiler.reset()
    both = torch.compile(lambda sos, t: sosfiltfilt(sos, t), fullgraph=True)
    causal = torch.compile(lambda sos, t: sosfilt(sos, t), fullgraph=True)
    for sos in designs:
        assert rel_err(both(sos, x), ss.sosfiltfilt(sos, x.numpy())) < 1e-11
        assert rel_err(both(torch.tensor(sos), x), ss.sosfiltfilt(sos, x.numpy())) < 1e-11
        assert rel_err(causal(sos, x), ss.sosfilt(sos, x.numpy())) < 1e-11
    for sos in designs[:2]:  # a closure per design, one code object
        key = tuple(map(tuple, sos.tolist()))
        fn = torch.compile(lambda t, key=key: sosfiltfilt(key, t), fullgraph=True)
        assert rel_err(fn(x), ss.sosfiltfilt(sos, x.numpy())) < 1e-11
    with pytest.raises(ValueError, match="greater than padlen"):
        both(designs[0], signal((2, 20), torch.float64))


def test_sosfiltfilt_numpy_sos_compile_fullgraph():
    sos = DESIGNS["ellip"]()
    x = signal((2, 300))
    compiled = torch.compile(lambda t: sosfiltfilt(sos, t, padtype="even"), fullgraph=True)
    torch.testing.assert_close(compiled(x), sosfiltfilt(sos, x, padtype="even"))


def test_one_section_as_a_1d_tensor_and_complex_filters_refused():
    """A 1-D sos is one section as a tensor too (SciPy's atleast_2d; the array form was
    already taken); a complex sos or zi is a TypeError, not a warning that drops the
    imaginary part."""
    sos = ss.butter(2, 10.0, fs=500.0, output="sos")
    x = torch.randn(2, 300, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    want = ss.sosfiltfilt(sos[0], x.numpy())
    for given in (sos[0], torch.from_numpy(sos[0])):
        assert rel_err(sosfiltfilt(given, x), want) < 1e-12
    for bad in (sos.astype(complex), torch.from_numpy(sos.astype(complex))):
        with pytest.raises(TypeError, match="sos must be real"):
            sosfiltfilt(bad, x)
        with pytest.raises(TypeError, match="sos must be real"):
            sosfilt(bad, x)
    with pytest.raises(TypeError, match="zi must be real"):
        sosfilt(sos, x, zi=torch.zeros(1, 2, 2, dtype=torch.complex128))
