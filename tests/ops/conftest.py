"""Fixtures of the op tests."""

import pytest
import torch


@pytest.fixture(params=["generic", "avx2", "avx512"])
def cpu_isa(request, monkeypatch):
    """Forces each instruction set of the CPU kernels in turn (FASTECG_CPU_ISA); skips
    those this CPU lacks."""
    monkeypatch.setenv("FASTECG_CPU_ISA", request.param)
    from fastecg import _C  # noqa: F401  (registers fastecg::_cpu_isa)
    try:
        torch.ops.fastecg._cpu_isa()
    except RuntimeError as err:
        assert "supports at most" in str(err)
        pytest.skip(f"this CPU has no {request.param}")
    return request.param
