"""No record may touch another: poisoning one row (NaN, +-Inf, a 1e30 sample, the whole
row scaled by 1e30 or 1e-30) changes no other row's output beyond the op's rounding, and
the poisoned row's output is the torch reference's. Every op, method and backend that
runs here (CPU kernels, torch reference, Triton under TRITON_INTERPRET=1 on small
shapes, CUDA kernels on a GPU).

Rows are what an op treats as one record: a lead for the filters, a record (all its
leads) for per-record normalisation.
"""

import zlib

import numpy as np
import pytest
import torch

from fastecg.ops import (bandpass, median_filter1d, normalize, remove_baseline, sosfilt,
                         sosfiltfilt)
from fastecg.ops.bandpass import butter_sos

from backends import CUDA, TRITON, device_for, need

# Change allowed in an untouched row, relative to that row's peak output. Exact kernels
# (median, per-row filters) change nothing; the fft kernel may regroup the rows that
# share a transform, which moves a row's rounding (~1e-7 of its peak in float32).
TOL = {torch.float32: 2e-6, torch.float64: 1e-13}

_SOS = butter_sos(4, 0.5, 45.0, 500.0)


# op name -> (function(x, backend), backends, record dims: 1 = a lead, 2 = a record)
OPS = {
    "bandpass_iir": (lambda x, b: bandpass(x, 500.0, backend=b), ["cpu", "torch", TRITON, CUDA], 1),
    "bandpass_fft": (lambda x, b: bandpass(x, 500.0, method="fft", backend=b), ["cpu", "torch"], 1),
    "bandpass_fir": (lambda x, b: bandpass(x, 500.0, method="fir", numtaps=31, backend=b),
                     ["torch"], 1),
    "sosfiltfilt": (lambda x, b: sosfiltfilt(_SOS, x, backend=b), ["cpu", "torch", TRITON, CUDA], 1),
    "sosfilt": (lambda x, b: sosfilt(_SOS, x, backend=b), ["cpu", "torch", TRITON, CUDA], 1),
    "median": (lambda x, b: remove_baseline(x, 100.0, backend=b), ["cpu", "torch", TRITON, CUDA], 1),
    "median_reflect": (lambda x, b: median_filter1d(x, 7, mode="reflect", backend=b),
                       ["cpu", "torch", TRITON, CUDA], 1),
    "mean": (lambda x, b: remove_baseline(x, 100.0, method="mean", backend=b), ["cpu", "torch"], 1),
    "zscore_record": (lambda x, b: normalize(x, backend=b), ["cpu", "torch", TRITON, CUDA], 2),
    "zscore_lead": (lambda x, b: normalize(x, per_channel=True, backend=b),
                    ["cpu", "torch", TRITON, CUDA], 1),
    "minmax_record": (lambda x, b: normalize(x, "min-max", backend=b),
                      ["cpu", "torch", TRITON, CUDA], 2),
}
POISONS = ["nan", "+inf", "-inf", "1e30 sample", "scale 1e30", "scale 1e-30"]


def _cases():
    for name, (_, backends, _) in OPS.items():
        for backend in backends:
            values = backend.values if hasattr(backend, "values") else (backend,)
            marks = backend.marks if hasattr(backend, "marks") else ()
            yield pytest.param(name, values[0], id=f"{name}-{values[0]}", marks=marks)


def _poison(x: torch.Tensor, record: tuple, kind: str, rng: np.random.Generator) -> None:
    t = int(rng.integers(x.shape[-1]))
    row = x[record]
    if kind == "nan":
        row[..., t] = float("nan")
    elif kind == "+inf":
        row[..., t] = float("inf")
    elif kind == "-inf":
        row[..., t] = float("-inf")
    elif kind == "1e30 sample":
        row[..., t] = 1e30
    elif kind == "scale 1e30":
        row.mul_(1e30)
    else:
        row.mul_(1e-30)


def _peak(y: torch.Tensor, dims: int) -> torch.Tensor:
    return y.abs().flatten(-dims).amax(-1).clamp_min(torch.finfo(y.dtype).tiny)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name, backend", list(_cases()))
def test_one_poisoned_record_touches_no_other(name, backend, dtype):
    need(backend)
    fn, _, dims = OPS[name]
    device = device_for(backend)
    # A stable seed per case (Python's str hash changes from process to process).
    rng = np.random.default_rng(zlib.crc32(f"{name}/{backend}/{dtype}".encode()))
    small = backend == "triton" and device == "cpu"  # the interpreter is slow
    for trial in range(1 if small else 3):
        batch = int(rng.integers(1, 3 if small else 6))
        n_leads = int(rng.integers(1, 4 if small else 13))
        # Longer than every op's edge extension (fir: 3 * 31 taps).
        n = int(rng.integers(64, 100) if small else rng.integers(100, 900))
        x = torch.from_numpy(rng.standard_normal((batch, n_leads, n))).to(dtype).to(device)
        clean = fn(x, backend)
        for kind in POISONS:
            b = int(rng.integers(batch))
            record = (b,) if dims == 2 else (b, int(rng.integers(n_leads)))
            xp = x.clone()
            _poison(xp, record, kind, rng)
            out = fn(xp, backend)
            others = torch.ones(out.shape[:out.dim() - dims], dtype=torch.bool, device=device)
            others[record] = False
            change = (out - clean).abs().flatten(-dims).amax(-1) / _peak(clean, dims)
            worst = change[others].max().item() if others.any() else 0.0
            assert worst <= TOL[dtype], (f"{name}/{backend}: poisoning record {record} with "
                                         f"{kind} changed another record by {worst:.3g} of its peak")
            ref = fn(xp.cpu(), "torch")[record]
            got = out[record].cpu()
            assert torch.equal(got.isnan(), ref.isnan()), f"{name}/{backend}: {kind}: NaN pattern"
            assert torch.equal(got.isposinf(), ref.isposinf()), f"{name}/{backend}: {kind}: +Inf"
            assert torch.equal(got.isneginf(), ref.isneginf()), f"{name}/{backend}: {kind}: -Inf"
            finite = ref.isfinite()
            scale = ref[finite].abs().max() if finite.any() else torch.tensor(0.0)
            err = (got[finite] - ref[finite]).abs().max() if finite.any() else torch.tensor(0.0)
            assert err <= 1e-4 * scale + 1e-30, (f"{name}/{backend}: {kind}: poisoned record "
                                                 f"differs from the torch reference by {err:.3g}"
                                                 f" (its peak {scale:.3g})")


def test_fft_kernel_pairing_is_exercised():
    """The fft CPU kernel pairs rows per transform: a batch whose rows span 1e-30..1e30
    (every neighbour out of pairing range) must equal the torch reference row by row."""
    need("cpu")
    x = torch.randn(3, 12, 700, dtype=torch.float64)
    x *= torch.logspace(-30, 30, 36, dtype=torch.float64).view(3, 12, 1)
    got = bandpass(x, 500.0, method="fft", backend="cpu")
    ref = bandpass(x, 500.0, method="fft", backend="torch")
    rel = (got - ref).abs().amax(-1) / ref.abs().amax(-1)
    assert rel.max() < 1e-13
