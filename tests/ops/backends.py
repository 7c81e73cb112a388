"""Where each backend's kernels run in this test session, and skips for missing ones.

On a GPU machine the Triton and CUDA kernels run on the GPU; on a CPU machine Triton
runs under TRITON_INTERPRET=1 (set by tests/conftest.py) on CPU tensors and CUDA is
skipped.
"""

import pytest
import torch

import fastecg

GPU = torch.cuda.is_available()
TRITON = pytest.param("triton", marks=pytest.mark.triton)
CUDA = pytest.param("cuda", marks=pytest.mark.cuda)
# Triton on the GPU only: the interpreter is too slow for the larger parity sweeps.
TRITON_ON_GPU = pytest.param("triton", marks=[
    pytest.mark.triton, pytest.mark.skipif(not GPU, reason="interpreter too slow here")])


def device_for(backend: str) -> str:
    return "cuda" if GPU and backend in ("cuda", "triton") else "cpu"


def need(backend: str) -> None:
    """Skip the test when `backend` cannot run in this session, saying why."""
    if backend == "triton":
        pytest.importorskip("triton")
    info = fastecg.backends()[backend]
    if not info.available:
        pytest.skip(info.reason)
