"""Block-scan sosfilt / sosfiltfilt (parallel along time) against scipy.signal.

The Triton kernels run on a GPU, or here on the CPU under TRITON_INTERPRET=1 (set by
conftest.py before triton is imported); the interpreter is slow, so shapes are small
and most tests use 16-sample blocks (``small_blocks``) to get several blocks per row
cheaply. The CUDA kernels run only where a GPU and a CUDA build are present.
"""

import numpy as np
import pytest
import scipy.signal as ss
import torch

from backends import CUDA, TRITON, device_for, need
from fastecg.ops import sosfilt, sosfiltfilt
from helpers import rel_err, signal
from sos_designs import random_stable_sos

# Error relative to the reference's peak. Measured (interpreter): float32 ~1e-7 (the
# float32 output rounding), float64 ~3e-14.
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
DTYPES = [torch.float32, torch.float64]
DEVICE = device_for("triton")
BACKENDS = [TRITON, CUDA]


DESIGNS = {
    "butter4": lambda: ss.butter(4, [0.5, 45.0], btype="bandpass", fs=500.0, output="sos"),
    "ellip": lambda: ss.ellip(3, 0.5, 40, [1.0, 40.0], btype="bandpass", fs=500.0,
                              output="sos"),
    "cheby1": lambda: ss.cheby1(4, 1, 30.0, fs=250.0, output="sos"),
    "random": lambda: random_stable_sos(np.random.default_rng(7), 3),
}


@pytest.fixture
def small_blocks(monkeypatch):
    # Several Triton blocks per row at interpreter-friendly lengths (the default is 128;
    # the CUDA kernels' block length is fixed at build time).
    try:
        from fastecg.triton_kernels import sosfilt as kernels
    except ImportError:
        return
    monkeypatch.setattr(kernels, "BLOCK", 16)


def check_sosfilt(sos, x, backend):
    """sosfilt without and with zi (zf compared) against SciPy on x (CPU)."""
    ref = ss.sosfilt(sos, x.numpy())
    y = sosfilt(sos, x.to(DEVICE), backend=backend)
    assert y.dtype == x.dtype and rel_err(y, ref) < TOL[x.dtype]
    zi = np.random.default_rng(1).standard_normal((sos.shape[0],) + tuple(x.shape[:-1]) + (2,))
    y_ref, zf_ref = ss.sosfilt(sos, x.numpy(), zi=zi)
    y, zf = sosfilt(sos, x.to(DEVICE), zi=torch.from_numpy(zi).to(DEVICE), backend=backend)
    assert rel_err(y, y_ref) < TOL[x.dtype]
    assert zf.dtype == torch.float64 and rel_err(zf, zf_ref) < 1e-10


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("design", list(DESIGNS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_sosfilt_matches_scipy(backend, design, dtype, small_blocks):
    need(backend)
    # 100 = 6 blocks of 16 + 4: a ragged last block.
    check_sosfilt(DESIGNS[design](), signal((3, 1, 100), dtype), backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("design", list(DESIGNS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_sosfiltfilt_matches_scipy(backend, design, dtype, small_blocks):
    need(backend)
    sos = DESIGNS[design]()
    x = signal((3, 1, 101), dtype, seed=2)
    out = sosfiltfilt(sos, x.to(DEVICE), backend=backend)
    assert out.dtype == dtype and out.shape == x.shape
    assert rel_err(out, ss.sosfiltfilt(sos, x.numpy())) < TOL[dtype]


@pytest.mark.parametrize("backend", BACKENDS)
def test_long_cascade(backend, small_blocks):
    # 19 sections: the CUDA scan keeps at most 8 in registers and chains groups of 8
    # (8 + 8 + 3), each from its own rows of zi.
    need(backend)
    sos = random_stable_sos(np.random.default_rng(11), 19)
    n = 1000 if DEVICE == "cuda" else 150  # > padlen 117
    x = signal((2, 1, n), torch.float64, seed=6)
    check_sosfilt(sos, x, backend)
    out = sosfiltfilt(sos, x.to(DEVICE), backend=backend)
    assert rel_err(out, ss.sosfiltfilt(sos, x.numpy())) < TOL[torch.float64]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("padtype,padlen", [("odd", None), ("even", 10), ("constant", 33),
                                            (None, None)])
def test_sosfiltfilt_padding(backend, padtype, padlen, small_blocks):
    need(backend)
    sos = DESIGNS["butter4"]()
    x = signal((1, 2, 70), torch.float64, seed=3)
    out = sosfiltfilt(sos, x.to(DEVICE), padtype=padtype, padlen=padlen, backend=backend)
    ref = ss.sosfiltfilt(sos, x.numpy(), padtype=padtype, padlen=padlen)
    assert rel_err(out, ref) < TOL[torch.float64]


@pytest.mark.parametrize("backend", BACKENDS)
def test_default_block_length(backend):
    # The shipped block length (128): 200 samples give a full and a ragged block; with
    # the default padding of 15 the extended signal has 230. Two sections: the
    # interpreter's time grows with sections x block length.
    need(backend)
    sos = ss.butter(2, [0.5, 45.0], btype="bandpass", fs=500.0, output="sos")
    x = signal((2, 200), torch.float32, seed=4)
    zi = np.random.default_rng(1).standard_normal((sos.shape[0], 2, 2))
    y_ref, zf_ref = ss.sosfilt(sos, x.numpy(), zi=zi)
    y, zf = sosfilt(sos, x.to(DEVICE), zi=torch.from_numpy(zi).to(DEVICE), backend=backend)
    assert rel_err(y, y_ref) < TOL[x.dtype] and rel_err(zf, zf_ref) < 1e-10
    out = sosfiltfilt(sos, x.to(DEVICE), backend=backend)
    assert rel_err(out, ss.sosfiltfilt(sos, x.numpy())) < TOL[x.dtype]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n", [1, 2, 5, 13])
def test_signals_shorter_than_a_block(backend, n, small_blocks):
    need(backend)
    sos = DESIGNS["ellip"]()
    for dtype in DTYPES:
        x = signal((3, n), dtype, seed=n)
        check_sosfilt(sos, x, backend)
        padlen = min(n - 1, 6)
        out = sosfiltfilt(sos, x.to(DEVICE), padlen=padlen, backend=backend)
        assert rel_err(out, ss.sosfiltfilt(sos, x.numpy(), padlen=padlen)) < TOL[dtype]


@pytest.mark.triton
def test_block_lengths_agree():
    # The block scan is exact in exact arithmetic whatever the block length (1: the
    # scan alone is the recurrence; 39: a last block of one sample; >= n: one block).
    need("triton")
    from fastecg.triton_kernels import sosfilt as kernels

    sos_np = DESIGNS["butter4"]()
    sos = torch.from_numpy(sos_np).to(DEVICE)
    x = signal((2, 40), torch.float64, seed=5)
    zi = torch.randn(2, sos.shape[0], 2, dtype=torch.float64,
                     generator=torch.Generator().manual_seed(6))
    y_ref, zf_ref = ss.sosfilt(sos_np, x.numpy(), zi=zi.movedim(-2, 0).numpy())
    outs = []
    for block in [1, 7, 39, 40, 500]:
        y, zf = kernels.sosfilt(x.to(DEVICE), sos, zi.to(DEVICE), block=block)
        assert rel_err(y, y_ref) < 1e-12 and rel_err(zf.movedim(-2, 0), zf_ref) < 1e-12
        outs.append(y.cpu())
    for y in outs[1:]:
        assert rel_err(y, outs[0].numpy()) < 1e-12


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("padtype", ["odd", "even", "constant", None])
def test_gradient_matches_cpu_kernel(backend, padtype, small_blocks):
    # The adjoint: CUDA's fused kernel, or composed from the backend's sosfilt (Triton).
    need(backend)
    sos = DESIGNS["butter4"]()
    n = 300 if DEVICE == "cuda" else 50  # several 64-sample CUDA blocks
    x = signal((1, 2, n), torch.float64, seed=8)
    g = signal((1, 2, n), torch.float64, seed=9)
    grads = []
    for b, device in [(backend, DEVICE), ("cpu", "cpu")]:
        xb = x.to(device).requires_grad_()
        (sosfiltfilt(sos, xb, padtype=padtype, backend=b) * g.to(device)).sum().backward()
        grads.append(xb.grad.cpu())
    assert rel_err(grads[0], grads[1].numpy()) < 1e-10


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_ecg_batch_on_a_gpu(backend, dtype):
    # Full-size 12-lead records: many blocks per row, rows spread over the device.
    if DEVICE != "cuda":
        pytest.skip("a 5000-sample batch is too slow for the Triton interpreter")
    need(backend)
    sos = DESIGNS["butter4"]()
    x = signal((8, 12, 5000), dtype, seed=10)
    check_sosfilt(sos, x, backend)
    out = sosfiltfilt(sos, x.to(DEVICE), backend=backend)
    assert rel_err(out, ss.sosfiltfilt(sos, x.numpy())) < TOL[dtype]
