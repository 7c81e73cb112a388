"""The public ops end to end on a CUDA GPU: every method on a record batch, against the
CPU path (itself tested against SciPy), under torch.compile, with gradients, and without
a hidden host synchronisation once the designs are cached. Skipped without a GPU.
"""

import numpy as np
import pytest
import scipy.signal as ss
import torch

from fastecg.ops import bandpass, normalize, remove_baseline

pytestmark = pytest.mark.cuda

FS = 500.0


def records(shape=(4, 12, 5000), dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    wander = torch.randn(shape, generator=g, dtype=torch.float64).cumsum(-1) * 0.02
    return (wander + torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)


def peak_rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    ref = ref.double().cpu()
    return ((ours.double().cpu() - ref).abs().max() / ref.abs().max()).item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ["iir", "fft", "fir"])
def test_bandpass_on_the_gpu_matches_the_cpu(method, dtype):
    x = records(dtype=dtype)
    out = bandpass(x.cuda(), FS, method=method)
    assert out.device.type == "cuda" and out.dtype == dtype and out.shape == x.shape
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    assert peak_rel_err(out, bandpass(x, FS, method=method)) < tol
    if method == "iir":
        sos = ss.butter(4, [0.5, 45.0], btype="bandpass", fs=FS, output="sos")
        assert peak_rel_err(out, torch.from_numpy(ss.sosfiltfilt(sos, x.double().numpy()).copy())) < tol


@pytest.mark.parametrize("method", ["median", "mean"])
def test_remove_baseline_on_the_gpu_matches_the_cpu(method):
    x = records()
    out = remove_baseline(x.cuda(), FS, method=method)
    ref = remove_baseline(x, FS, method=method)
    if method == "median":
        assert torch.equal(out.cpu(), ref)
    else:
        assert peak_rel_err(out, ref) < 1e-5


CASES = {
    "bandpass_iir": lambda t: bandpass(t, FS),
    "bandpass_fft": lambda t: bandpass(t, FS, method="fft"),
    "bandpass_fir": lambda t: bandpass(t, FS, method="fir"),
    "baseline_median": lambda t: remove_baseline(t, FS),
    "baseline_mean": lambda t: remove_baseline(t, FS, method="mean"),
    "normalize": lambda t: normalize(t, "z-score", per_channel=True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_compile_fullgraph_on_the_gpu(name):
    torch.compiler.reset()
    x = records().cuda()
    fn = CASES[name]
    out = torch.compile(fn, fullgraph=True)(x)
    assert out.device.type == "cuda"
    assert peak_rel_err(out, fn(x)) < 1e-6


@pytest.mark.parametrize("name", ["bandpass_iir", "bandpass_fft", "baseline_median", "baseline_mean",
                                  "normalize"])
def test_gradients_on_the_gpu_match_the_cpu(name):
    x = records((2, 3, 600), torch.float64, seed=3)
    g = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    grads = []
    for device in ("cuda", "cpu"):
        xd = x.to(device).requires_grad_()
        (CASES[name](xd) * g.to(device)).sum().backward()
        grads.append(xd.grad.cpu())
    assert peak_rel_err(grads[0], grads[1]) < 1e-9


@pytest.mark.parametrize("name", list(CASES))
def test_no_host_synchronisation_once_cached(name):
    # The designs are cached per (design, device) on the first call; after that a call
    # must only queue device work (a sync per call stalls a training loop's pipeline).
    x = records().cuda()
    CASES[name](x)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = CASES[name](x)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert np.isfinite(out.cpu().numpy()).all()
