"""fastecg ops: differentiable, ``torch.compile``-safe custom ops with compiled kernels.

Every op takes ``backend="auto" | "cuda" | "triton" | "cpu" | "torch"``.
"""

from .normalize import normalize

__all__ = ["normalize"]
