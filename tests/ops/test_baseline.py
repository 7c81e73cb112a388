"""median_filter1d / remove_baseline against scipy.ndimage (bit-for-bit) and avg_pool1d."""

import zlib

import numpy as np
import pytest
import scipy.ndimage as nd
import torch
import torch.nn.functional as F

from backends import CUDA, TRITON_ON_GPU, device_for, need
from fastecg.data.wfdb import load_cinc_record
from fastecg.numpy_path import remove_baseline as numpy_remove_baseline
from fastecg.ops import median_filter1d, remove_baseline
from fastecg.ops.baseline import MEDIAN_MODES
from fastecg.preprocessors import BaselineRemove
from fastecg.registry import PREPROCESSORS

MODES = ["nearest", "reflect", "mirror", "constant", "wrap"]
CPU_BACKENDS = ["cpu", "torch"]
KERNEL_BACKENDS = CPU_BACKENDS + [TRITON_ON_GPU, CUDA]
# mean method vs dual avg_pool1d in float32: measured 2.4e-7 (ours sums in float64).
MEAN_TOL = {torch.float32: 1e-5, torch.float64: 1e-12}


def scipy_median(x: np.ndarray, size: int, mode: str, cval: float = 0.0, origin: int = 0):
    """SciPy's N-D rank filter along the last axis only (the reference semantics)."""
    return nd.median_filter(x, size=(1,) * (x.ndim - 1) + (size,), mode=mode, cval=cval,
                            origin=(0,) * (x.ndim - 1) + (origin,))


def numpy_median(x: np.ndarray, size: int, mode: str, cval: float = 0.0, origin: int = 0):
    """Brute force with np.pad (periodic extension at any length) and a full sort."""
    left = size // 2 + origin
    right = size - 1 - left
    pad_mode = {"nearest": "edge", "reflect": "symmetric", "mirror": "reflect",
                "wrap": "wrap", "constant": "constant"}[mode]
    kw = {"constant_values": cval} if mode == "constant" else {}
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(max(left, 0), max(right, 0))], pad_mode, **kw)
    padded = padded[..., max(-left, 0):padded.shape[-1] - max(-right, 0)]
    windows = np.lib.stride_tricks.sliding_window_view(padded, size, axis=-1)
    return np.sort(windows, axis=-1)[..., size // 2]


def scipy_reads_out_of_bounds(n: int, size: int, mode: str, origin: int) -> bool:
    # SciPy's offset arithmetic for "reflect" maps positions -4n, -6n, ... to -1.
    return mode == "reflect" and size // 2 + origin >= 4 * n


def ecg_like(shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    wander = torch.randn(shape, generator=g, dtype=torch.float64).cumsum(-1) * 0.02
    return (wander + torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)


# ---- median: bit-for-bit ---------------------------------------------------------------------

@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_median_filter_matches_scipy_random(backend, mode, dtype):
    need(backend)
    rng = np.random.default_rng(zlib.crc32(f"{backend}/{mode}/{dtype}".encode()))
    for trial in range(12):
        n = int(rng.integers(1, 300))
        size = int(rng.choice([1, 2, 3, 4, 7, 10, 51, 100, 101, 301, 1001]))
        origin = int(rng.integers(-(size // 2), (size - 1) // 2 + 1))
        shape = (int(rng.integers(1, 3)), int(rng.integers(1, 4)), n)
        if trial % 3 == 0:  # many ties
            x = torch.from_numpy(rng.integers(-3, 3, size=shape)).to(dtype)
        else:
            x = ecg_like(shape, dtype, seed=trial)
        out = median_filter1d(x.to(device_for(backend)), size, mode=mode, cval=0.5,
                              origin=origin, backend=backend).cpu()
        assert out.dtype == dtype and out.shape == x.shape
        ref = (numpy_median(x.numpy(), size, mode, 0.5, origin)
               if scipy_reads_out_of_bounds(n, size, mode, origin)
               else scipy_median(x.numpy(), size, mode, 0.5, origin))
        assert np.array_equal(out.numpy(), ref), (n, size, origin)


@pytest.mark.parametrize("mode", MODES)
def test_median_filter_brute_force_long_windows(mode):
    # Windows many times the signal: periodic extension, as np.pad does.
    x = ecg_like((2, 5), torch.float64)
    for size, origin in [(41, 0), (40, 7), (33, -16)]:
        out = median_filter1d(x, size, mode=mode, cval=-0.25, origin=origin)
        assert np.array_equal(out.numpy(), numpy_median(x.numpy(), size, mode, -0.25, origin))


def test_median_filter_constant_and_tied_signals():
    x = torch.full((2, 3, 400), 1.25)
    assert torch.equal(median_filter1d(x, 101), x)
    steps = torch.arange(400.0).div(50).floor().expand(2, 3, 400).contiguous()
    assert np.array_equal(median_filter1d(steps, 31, mode="reflect").numpy(),
                          scipy_median(steps.numpy(), 31, "reflect"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_median_filter_values_closer_than_the_key_resolution(dtype):
    # The CPU kernel ranks finite rows by floor((v - min) * scale) on 22 bits and re-sorts
    # runs of one key by value: next to spikes of +-1e6, most samples share a key.
    x = ecg_like((2, 3, 1500), dtype) * 1e-3
    x[..., 700] = 1e6
    x[0, 1, 100] = -1e6
    x[1, 2, 200:210] = -0.0  # equal to +0.0: ties, broken by position
    x[1, 2, 210:220] = 0.0
    x[1, 0, 50] = float("inf")  # not finite: ranked by exact keys
    if dtype == torch.float64:
        x[0, 2, 9] = -1.5e308  # a range that overflows a double: exact keys too
        x[0, 2, 900] = 1.5e308
    for mode in ["nearest", "constant"]:
        out = median_filter1d(x, 101, mode=mode, cval=0.25)
        assert np.array_equal(out.numpy(), scipy_median(x.numpy(), 101, mode, 0.25))
    dual = remove_baseline(x, 500.0)
    base = scipy_median(scipy_median(x.numpy(), 101, "nearest"), 301, "nearest")
    assert np.array_equal(dual.numpy(), x.numpy() - base)


def test_median_filter_window_of_over_2m_samples():
    # Positions past 2**21 do not pack beside a linear key: the CPU kernel ranks by exact keys.
    x = ecg_like((1, 2, 5), torch.float64)
    for mode in ["nearest", "reflect"]:
        out = median_filter1d(x, 2**21 + 1, mode=mode)
        assert np.array_equal(out.numpy(), numpy_median(x.numpy(), 2**21 + 1, mode))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("mode", ["constant", "nearest", "wrap"])
def test_one_stage_baseline_step_subtracts_in_the_kernel(dtype, mode):
    """BaselineRemove(window2=None) has the kernel write x - median in one pass: bit for bit
    x - scipy.ndimage.median_filter(x) (scipy.signal.medfilt in constant mode), and its
    gradient is the identity minus the one-hot at each window's median."""
    x = torch.randn(3, 2, 700, generator=torch.Generator().manual_seed(3)).to(dtype)
    step = BaselineRemove(fs=500.0, window1=0.4, window2=None, mode=mode)
    out = step(x)
    ref = x.double().numpy() - nd.median_filter(x.double().numpy(), size=(1, 1, 201), mode=mode)
    assert out.dtype == dtype
    assert torch.equal(out, torch.from_numpy(ref).to(dtype))
    assert torch.equal(out, x - median_filter1d(x, 201, mode=mode))
    if dtype == torch.float64:
        xg = x[0, :1, :300].clone().requires_grad_()
        small = BaselineRemove(fs=500.0, window1=0.1, window2=None, mode=mode)
        assert torch.autograd.gradcheck(lambda t: small(t), (xg,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_remove_baseline_matches_scipy_dual_median(dtype):
    x = ecg_like((3, 12, 2500), dtype)
    base = scipy_median(scipy_median(x.numpy(), 101, "nearest"), 301, "nearest")
    out = remove_baseline(x, fs=500.0)
    assert out.dtype == dtype
    assert np.array_equal(out.numpy(), x.numpy() - base)
    assert np.array_equal(out.numpy(), numpy_remove_baseline(x.numpy(), 500.0))


def test_remove_baseline_long_rows_use_chunks():
    # Rows longer than one 8192-sample chunk go through the chunked two-ranking path.
    x = ecg_like((2, 20000))
    rows = x.numpy()
    ref = np.stack([r - nd.median_filter(nd.median_filter(r, 101, mode="nearest"), 301,
                                         mode="nearest") for r in rows])
    assert np.array_equal(remove_baseline(x, fs=500.0).numpy(), ref)
    assert np.array_equal(median_filter1d(x, 1001, mode="wrap").numpy(),
                          scipy_median(rows, 1001, "wrap"))


@pytest.mark.parametrize("mode", MODES)
def test_two_stages_over_long_rows_match_scipy(mode):
    # Rows longer than one 8192-output chunk: both stages run chunk by chunk on one
    # ranking of the chunk and its halo (wrap mode: stage by stage, an edge chunk reads
    # the row's far end). Even first size, shifted origins, the index of each selection.
    x = ecg_like((2, 17000), torch.float64, seed=5)
    rows, cval = x.numpy(), 0.25
    ref = scipy_median(scipy_median(rows, 100, mode, cval, origin=-3), 301, mode, cval, origin=7)
    out, index = torch.ops.fastecg.median_filter(x, [100, 301], [-3, 7], MEDIAN_MODES[mode],
                                                 cval, False, True, "cpu")
    assert np.array_equal(out.numpy(), ref)
    picked = torch.where(index >= 0, x.gather(-1, index.clamp(min=0)),
                         torch.tensor(cval, dtype=x.dtype))
    assert torch.equal(picked, out)


def test_remove_baseline_on_real_records(cinc_records):
    for path in cinc_records[:10]:
        sig, header = load_cinc_record(path)
        fs = float(header["fs"])
        out = remove_baseline(torch.from_numpy(sig), fs=fs)
        w1, w2 = 2 * (int(0.2 * fs) // 2) + 1, 2 * (int(0.6 * fs) // 2) + 1
        ref = sig - scipy_median(scipy_median(sig, w1, "nearest"), w2, "nearest")
        assert np.array_equal(out.numpy(), ref), path


def test_window_longer_than_signal_works_as_scipy():
    x = ecg_like((2, 3, 150))
    ref = x.numpy() - scipy_median(scipy_median(x.numpy(), 101, "nearest"), 301, "nearest")
    assert np.array_equal(remove_baseline(x, fs=500.0).numpy(), ref)


# ---- NaN / Inf -------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_nan_makes_its_windows_nan(backend):
    need(backend)
    x = ecg_like((2, 200), torch.float64)
    x[0, 50] = float("nan")
    x[1, 10] = float("inf")
    out = median_filter1d(x.to(device_for(backend)), 21, backend=backend).cpu()
    nan_rows = np.zeros((2, 200), bool)
    nan_rows[0, 40:61] = True  # every window that holds sample 50
    assert np.array_equal(out.isnan().numpy(), nan_rows)
    clean = ~nan_rows
    assert np.array_equal(out.numpy()[clean], numpy_median(x.numpy(), 21, "nearest")[clean])
    base = remove_baseline(x[:, None], fs=100.0, window1=0.1, window2=0.3)
    assert base[0, 0, 30:71].isnan().all() and not base[0, 0, :20].isnan().any()
    assert not base[1].isnan().any()


@pytest.mark.parametrize("mode", ["nearest", "constant"])
def test_nan_makes_windows_longer_than_the_row_nan(mode):
    """Windows over 2 n + 2 samples take the edge shortcuts (edge values, a shorter
    window), which used to drop a NaN the full window holds."""
    x = torch.tensor([[0.3, float("nan"), -0.2, 0.9], [0.3, 0.5, -0.2, 0.9]],
                     dtype=torch.float64)
    for size, origin in ((11, 0), (13, 0), (45, 0), (11, 5), (11, -5)):
        out = median_filter1d(x, size, mode=mode, origin=origin)
        ref = numpy_median(x.numpy(), size, mode, origin=origin)
        # output i's window: samples i - size // 2 - origin .. + size - 1 of the extension
        start = np.arange(4) - size // 2 - origin
        end = start + size - 1
        if mode == "nearest":
            held = (np.clip(start, 0, 3) <= 1) & (np.clip(end, 0, 3) >= 1)
        else:
            held = (start <= 1) & (end >= 1)
        assert held.any()
        ref[0, held] = np.nan
        np.testing.assert_array_equal(out.numpy(), ref)


def test_mean_nan_stays_in_its_windows():
    x = ecg_like((1, 300), torch.float64)
    x[0, 150] = float("nan")
    out = remove_baseline(x, fs=100.0, window1=0.1, window2=0.3, method="mean")
    assert out[0, 150 - 20:150 + 21].isnan().all()
    assert not out[0, :125].isnan().any() and not out[0, 176:].isnan().any()


def test_mean_block_with_nan_matches_rows_alone():
    # rows run four at a time; a block holding a NaN, and the rows left over, run one by one
    x = ecg_like((9, 300), torch.float64)
    x[1, 150] = float("nan")
    kw = dict(fs=100.0, window1=0.1, window2=0.3, method="mean")
    out = remove_baseline(x, **kw)
    alone = torch.cat([remove_baseline(r[None], **kw) for r in x])
    assert torch.allclose(out, alone, rtol=0, atol=1e-12, equal_nan=True)
    assert out[1].isnan().any() and not out[[0, 2, 3, 4, 5, 6, 7, 8]].isnan().any()


# ---- mean ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(2, 12, 5000), (1, 1, 777), (3, 2, 400)])
def test_mean_matches_dual_avg_pool(dtype, shape):
    x = ecg_like(shape, dtype)
    y = x.reshape(-1, 1, shape[-1])
    for w in (101, 301):
        y = F.avg_pool1d(F.pad(y, (w // 2, w // 2), mode="reflect"), w, stride=1)
    ref = x - y.view(shape)
    out = remove_baseline(x, fs=500.0, method="mean")
    assert out.dtype == dtype
    assert (out - ref).abs().max() / ref.abs().max() < MEAN_TOL[dtype]
    assert np.allclose(out.numpy(), numpy_remove_baseline(x.numpy(), 500.0, method="mean"),
                       atol=1e-5 if dtype == torch.float32 else 1e-12)


@pytest.mark.parametrize("path", ["cpu", "torch", "numpy"])
def test_mean_error_scales_with_the_signal_not_a_dc_offset(path):
    """float32 ECG at a 1e4 DC offset: against the exact float64 result of the record
    less its offset, every path stays ~1e-7 of the peak (float32 pooling was 4% off, the
    NumPy path's rounded baseline 6e-4)."""
    sig = ecg_like((2, 3, 5000), torch.float64)
    x = (sig + 1e4).float()
    exact = x.double() - 1e4  # the float32 record, its offset removed exactly
    y = exact.reshape(-1, 1, 5000)
    for w in (101, 301):
        y = F.avg_pool1d(F.pad(y, (w // 2, w // 2), mode="reflect"), w, stride=1)
    ref = exact - y.view(exact.shape)
    out = (torch.from_numpy(numpy_remove_baseline(x.numpy(), 500.0, method="mean"))
           if path == "numpy" else remove_baseline(x, 500.0, method="mean", backend=path))
    assert (out.double() - ref).abs().max() / ref.abs().max() < 1e-6


def test_mean_does_not_drift_on_holter_length():
    n = 500 * 3600
    x = (torch.randn(1, n, dtype=torch.float64) + 100.0)  # large offset: worst case for sums
    out = remove_baseline(x, fs=500.0, method="mean")
    tail = slice(n - 8000, n - 3000)
    ref = numpy_remove_baseline(x[:, tail.start - 1000:tail.stop + 1000].numpy(), 500.0,
                                method="mean")[:, 1000:-1000]
    assert np.abs(out[:, tail].numpy() - ref).max() < 1e-9


# ---- autograd, opcheck, compile --------------------------------------------------------------

@pytest.mark.parametrize("method", ["median", "mean"])
def test_gradcheck(method):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 30, dtype=torch.float64, generator=g).requires_grad_(True)  # no ties
    fn = lambda t: remove_baseline(t, fs=20.0, window1=0.2, window2=0.6, method=method)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,), fast_mode=True)
    assert torch.autograd.gradcheck(lambda t: median_filter1d(t, 6, mode="reflect", origin=1),
                                    (x,))


def test_median_gradient_is_one_hot_at_the_median():
    x = torch.tensor([[3.0, 1.0, 2.0, 5.0, 4.0]], requires_grad=True)
    # nearest windows: [3,3,1]->3 (x0), [3,1,2]->2 (x2), [1,2,5]->2 (x2), [2,5,4]->4 (x4),
    # [5,4,4]->4 (x4)
    median_filter1d(x, 3).sum().backward()
    assert torch.equal(x.grad, torch.tensor([[1.0, 0.0, 2.0, 0.0, 2.0]]))


@pytest.mark.parametrize("method", ["median", "mean"])
def test_opcheck(method):
    from fastecg.ops.baseline import _median_filter, _moving_average

    x = ecg_like((2, 3, 64), torch.float64)
    xg = x.clone().requires_grad_(True)
    if method == "median":
        for args in [(x, [5, 9], [0, 0], 2, 0.0, True, False, "auto"),
                     (xg, [4], [1], 0, 0.0, False, True, "auto")]:
            torch.library.opcheck(_median_filter._op, args)
    else:
        for t in (x, xg):
            torch.library.opcheck(_moving_average._op, (t, [5, 9], True, "auto"))


@pytest.mark.parametrize("method", ["median", "mean"])
def test_compile_fullgraph(method):
    module = BaselineRemove(fs=500.0, method=method)
    x = ecg_like((2, 12, 1000))
    compiled = torch.compile(module, fullgraph=True)
    assert torch.equal(compiled(x), module(x))


@pytest.mark.parametrize("mode", ["reflect", "mirror", "wrap"])
def test_periodic_modes_compile_with_dynamic_shapes_and_long_windows(mode):
    """The periodic extensions trace whole: symbolic lengths (no divmod on them) and
    windows longer than the signal (a loop bounded by the sizes, not by the data)."""
    for size, n, dynamic in ((5, 40, True), (301, 57, True), (301, 57, False)):
        x = ecg_like((2, 3, n)).double()
        torch._dynamo.reset()
        compiled = torch.compile(lambda t: median_filter1d(t, size, mode=mode),
                                 fullgraph=True, dynamic=dynamic, backend="aot_eager")
        assert torch.equal(compiled(x), median_filter1d(x, size, mode=mode)), (size, n)
    x = ecg_like((2, 3, 57)).double()
    compiled = torch.compile(lambda t: remove_baseline(t, 100.0, 1.0, 3.0, mode=mode),
                             fullgraph=True, dynamic=True, backend="aot_eager")
    assert torch.equal(compiled(x), remove_baseline(x, 100.0, 1.0, 3.0, mode=mode))


def test_numpy_path_mean_keeps_nonfinite_values_in_their_windows():
    """A NaN or an Inf changes only the windows that hold it, on the NumPy path as on the
    torch path (SciPy's running sum alone would carry it to the row's end)."""
    rng = np.random.default_rng(0)
    for _ in range(60):
        x = rng.standard_normal((1, 200))
        for _ in range(int(rng.integers(1, 4))):
            x[0, rng.integers(0, 200)] = rng.choice([np.nan, np.inf, -np.inf])
        ref = remove_baseline(torch.from_numpy(x), 100.0, method="mean").numpy()
        got = numpy_remove_baseline(x, 100.0, method="mean")
        for kind in (np.isnan, np.isposinf, np.isneginf):
            np.testing.assert_array_equal(kind(got), kind(ref))
        finite = np.isfinite(ref)
        np.testing.assert_allclose(got[finite], ref[finite], atol=1e-9)


@pytest.mark.parametrize("mode", MODES)
def test_numpy_path_median_matches_the_torch_path(mode):
    """NaN makes every window holding it NaN on the NumPy path too (SciPy left it at its
    own sample), and windows longer than the row use the mode's true extension (SciPy
    1.17 returns garbage for ``reflect`` on a 2-sample row, a wrong median for
    ``mirror``)."""
    rng = np.random.default_rng(0)
    for n in (2, 3, 7, 40, 400):
        x = rng.standard_normal((3, n))
        if n > 2:
            x[1, n // 2] = np.nan
        x[2, 0] = np.nan
        got = numpy_remove_baseline(x, 100.0, window1=0.17, window2=0.5, mode=mode)
        want = remove_baseline(torch.from_numpy(x), 100.0, window1=0.17, window2=0.5,
                               mode=mode).numpy()
        np.testing.assert_array_equal(got, want)
    x = np.array([[-1.0, 2.0], [2.0, -1.0]])  # windows of 17 and 51 over reflections
    got = numpy_remove_baseline(x, 100.0, window1=0.17, window2=0.51, mode="reflect")
    np.testing.assert_array_equal(got, x - numpy_median(numpy_median(x, 17, "reflect"), 51,
                                                        "reflect"))


# ---- Triton (interpreter on the CPU) ---------------------------------------------------------

@pytest.mark.triton
@pytest.mark.parametrize("mode,size,origin,dtype", [
    ("nearest", 7, 0, torch.float32), ("reflect", 8, 1, torch.float32),
    ("constant", 5, -2, torch.float64), ("wrap", 40, 0, torch.float32),
    ("mirror", 1100, 3, torch.float64)])  # longer than the resident kernel holds
def test_triton_kernel_matches_scipy(mode, size, origin, dtype):
    pytest.importorskip("triton")
    x = ecg_like((2, 19), dtype, seed=size)
    x[0, 3] = x[0, 4]  # a tie
    out = median_filter1d(x.to(device_for("triton")), size, mode=mode, cval=0.5, origin=origin,
                          backend="triton").cpu()
    assert np.array_equal(out.numpy(), scipy_median(x.numpy(), size, mode, 0.5, origin))


@pytest.mark.triton
def test_triton_constant_mode_cval_in_float64():
    # cval reaches the kernel as float64: 0.1 is not a float32 value, and a sample
    # between float32(0.1) and 0.1 must rank on the right side of it
    pytest.importorskip("triton")
    x = torch.tensor([[0.1 + 1e-12, 0.1 - 1e-12, 0.3, -0.2, 0.1 + 2e-12]], dtype=torch.float64)
    out = median_filter1d(x.to(device_for("triton")), 5, mode="constant", cval=0.1,
                          backend="triton").cpu()
    assert np.array_equal(out.numpy(), scipy_median(x.numpy(), 5, "constant", 0.1, 0))


@pytest.mark.parametrize("mode,size", [("reflect", 500), ("wrap", 81), ("nearest", 500),
                                       ("constant", 500), ("nearest", 5)])
def test_forced_backend_is_checked_whatever_the_window(mode, size):
    # Windows far longer than the signal are answered without a kernel: a backend that
    # cannot run (CUDA on a CPU tensor) or does not exist is refused all the same, as
    # remove_baseline refuses it.
    x = torch.randn(2, 40)
    with pytest.raises(RuntimeError, match="backend 'cuda'"):
        median_filter1d(x, size, mode=mode, backend="cuda")
    with pytest.raises(ValueError, match="unknown backend"):
        median_filter1d(x, size, mode=mode, backend="gpu")
    with pytest.raises(ValueError, match="unknown backend"):
        median_filter1d(x[:0], size, mode=mode, backend="gpu")
    with pytest.raises(ValueError, match="unknown backend"):
        remove_baseline(x[:0], fs=500.0, backend="gpu")


@pytest.mark.triton
def test_triton_dual_median_and_nan():
    pytest.importorskip("triton")
    x = ecg_like((1, 2, 23), torch.float32)
    x[0, 1, 11] = float("nan")
    out = remove_baseline(x.to(device_for("triton")), fs=20.0, window1=0.2, window2=0.4,
                          backend="triton").cpu()
    ref = remove_baseline(x, fs=20.0, window1=0.2, window2=0.4, backend="cpu")
    assert torch.equal(out.nan_to_num(7.0), ref.nan_to_num(7.0))
    assert out[0, 1].isnan().any() and not out[0, 0].isnan().any()


@pytest.mark.parametrize("backend", [TRITON_ON_GPU, CUDA])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gpu_kernels_equal_cpu_on_an_ecg_batch(backend, dtype):
    need(backend)
    x = ecg_like((4, 12, 5000), dtype, seed=5)
    out = remove_baseline(x.to(device_for(backend)), fs=500.0, backend=backend)
    assert out.device.type == "cuda" and torch.equal(out.cpu(), remove_baseline(x, fs=500.0))


# ---- validation, modules ---------------------------------------------------------------------

def test_bad_input():
    x = torch.randn(2, 100)
    with pytest.raises(ValueError, match="window"):
        remove_baseline(x, fs=500.0, window1=0.0)
    with pytest.raises(ValueError, match="fs"):
        remove_baseline(x, fs=-1.0)
    with pytest.raises(ValueError, match="size"):
        median_filter1d(x, 0)
    with pytest.raises(ValueError, match="origin"):
        median_filter1d(x, 5, origin=3)
    with pytest.raises(ValueError, match="mode"):
        median_filter1d(x, 5, mode="edge")
    with pytest.raises(ValueError, match="method"):
        remove_baseline(x, fs=500.0, method="median3")
    with pytest.raises(TypeError, match="floating"):
        remove_baseline(torch.ones(2, 100, dtype=torch.int32), fs=500.0)
    for window in (float("inf"), 1e12):  # beyond the kernels' 2**30 - 1 samples
        with pytest.raises(ValueError, match="at most"):
            remove_baseline(x, fs=500.0, window1=window)
    with pytest.raises(ValueError, match="window must be positive"):
        remove_baseline(x, fs=500.0, window2=float("nan"))
    with pytest.raises(ValueError, match="size"):
        median_filter1d(x, 2**31)
    from fastecg import numpy_path

    with pytest.raises(ValueError, match="method"):
        numpy_path.BaselineRemove(500.0, method="foo")
    with pytest.raises(ValueError, match="window"):
        numpy_path.BaselineRemove(500.0, window1=-1.0)
    with pytest.raises(ValueError, match="0-d"):
        numpy_remove_baseline(np.float32(1.0), 500.0)
    with pytest.raises(ValueError, match="unknown backend"):
        BaselineRemove(500.0, backend="cuda2")
    # NumPy integers are integers (as SciPy takes them)
    assert torch.equal(median_filter1d(x, np.int64(5)), median_filter1d(x, 5))
    empty = torch.empty(0, 12, 5000)
    assert remove_baseline(empty, fs=500.0).shape == empty.shape
    assert median_filter1d(torch.empty(3, 0), 5).shape == (3, 0)
    assert remove_baseline(torch.empty(2, 0), fs=500.0).shape == (2, 0)


def test_half_types_and_strides():
    x = ecg_like((2, 12, 600))
    view = x.transpose(0, 1)  # non-contiguous
    assert torch.equal(remove_baseline(view, 500.0), remove_baseline(view.contiguous(), 500.0))
    half = x.to(torch.bfloat16)
    out = remove_baseline(half, 500.0)
    assert out.dtype == torch.bfloat16
    base = scipy_median(scipy_median(half.float().numpy(), 101, "nearest"), 301, "nearest")
    assert torch.equal(out, (half.float() - torch.from_numpy(base)).to(torch.bfloat16))


@pytest.mark.parametrize("method", ["median", "mean"])
def test_numpy_path_takes_float16_as_the_torch_path(method):
    """float16 keeps its dtype on the NumPy path (the mean computed in float32, as the
    torch path computes half types; ndimage has no float16 filters) and equals it."""
    x = ecg_like((2, 3, 1000)).to(torch.float16)
    out = numpy_remove_baseline(x.numpy(), 500.0, method=method)
    assert out.dtype == np.float16
    want = remove_baseline(x, 500.0, method=method).numpy()
    np.testing.assert_allclose(out.astype(np.float32), want.astype(np.float32), rtol=0,
                               atol=float(np.spacing(np.float16(abs(want).max()))))


def test_module_registered_and_keyword_compatible():
    m = PREPROCESSORS.build({"name": "baseline_remove", "fs": 500, "window1": 0.2,
                             "window2": 0.6})
    x = ecg_like((1, 12, 1000))
    assert torch.equal(m(x), remove_baseline(x, 500.0))
    inplace = BaselineRemove(fs=500, inplace=True)
    y = x.clone()
    assert inplace(y) is y and torch.equal(y, m(x))
    with pytest.raises(ValueError, match="method"):
        BaselineRemove(fs=500, method="median3")
