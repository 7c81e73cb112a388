"""Input checks shared by every op: one message for one mistake."""

from __future__ import annotations

import torch

KERNEL_DTYPES = (torch.float32, torch.float64)
UPCAST_DTYPES = (torch.float16, torch.bfloat16)


def check_signal(x, op: str, min_dim: int = 1, min_samples: int = 1) -> None:
    """Reject what no fastecg op can process: non-tensors, non-float dtypes, too few
    dimensions or samples. Zero-size leading dims are fine (empty in, empty out)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{op}: expected a floating-point tensor (float16, bfloat16, float32, "
                        f"float64), got {x.dtype}; convert with x.float()")
    if x.dim() < min_dim:
        shape = "(..., n_leads, n_samples)" if min_dim >= 2 else "(..., n_samples)"
        raise ValueError(f"{op}: expected a tensor of shape {shape} with at least {min_dim} "
                         f"dimension(s), got shape {tuple(x.shape)}")
    if x.shape[-1] < min_samples:
        raise ValueError(f"{op}: needs at least {min_samples} sample(s) along the last axis, "
                         f"got shape {tuple(x.shape)}")


def kernel_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a kernel computes in: half types are computed in float32."""
    return torch.float32 if x.dtype in UPCAST_DTYPES else x.dtype
