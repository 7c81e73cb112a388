"""normalize: fastecg's backends against the NumPy path and plain PyTorch, same input.

Workload: (64, 12, 5000) float32 (PhysioNet/CinC scale), per-lead z-score and
per-record min-max, forward and forward+backward, 2 threads.
"""

import numpy as np
import pytest
import torch

import fastecg
from fastecg import numpy_path
from fastecg.bench.workloads import SIZES, make_input
from fastecg.bench.workloads import plain_torch_normalize as plain_torch

torch.set_num_threads(2)
SHAPE = SIZES["ecg"].shape  # (64, 12, 5000)
X = torch.from_numpy(make_input(SIZES["ecg"]))
REF = {m: numpy_path.normalize(X.double().numpy(), method=m, per_channel=True).astype(np.float32)
       for m in ("z-score", "min-max")}


CANDIDATES = {
    "numpy_path": lambda x, m: torch.from_numpy(numpy_path.normalize(x.numpy(), m, per_channel=True)),
    "plain_torch": plain_torch,
    "fastecg_cpu": lambda x, m: fastecg.ops.normalize(x, m, per_channel=True, backend="cpu"),
}


def _info(label, method, mode, out=None):
    info = {"op": "normalize", "label": label, "method": method, "mode": mode,
            "shape": list(SHAPE), "dtype": "float32", "device": "cpu"}
    if out is not None:
        info["max_abs_error"] = float(np.abs(out.detach().numpy() - REF[method]).max())
    return info


@pytest.mark.parametrize("method", ["z-score", "min-max"])
@pytest.mark.parametrize("label", list(CANDIDATES))
def test_forward(benchmark, label, method):
    benchmark.group = f"normalize forward {method}"
    fn = CANDIDATES[label]
    benchmark.extra_info.update(_info(label, method, "forward", fn(X, method)))
    benchmark(fn, X, method)


@pytest.mark.parametrize("label", ["plain_torch", "fastecg_cpu"])
def test_forward_backward(benchmark, label):
    benchmark.group = "normalize forward+backward z-score"
    benchmark.extra_info.update(_info(label, "z-score", "forward+backward"))
    fn = CANDIDATES[label]
    grad = torch.randn(SHAPE)

    def step():
        x = X.clone().requires_grad_()
        fn(x, "z-score").backward(grad)
        return x.grad

    benchmark(step)
