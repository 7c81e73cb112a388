"""Helpers shared by the Triton kernels."""

import functools

import torch
import triton
import triton.language as tl


@triton.jit
def row_and_tile(tiles, TILE: tl.constexpr):
    """Row and column positions of this program. One grid axis over (row, tile): a
    second axis would cap rows or tiles at 65535 (a Holter row has 225 000 tiles of 8)."""
    pid = tl.program_id(0).to(tl.int64)
    return pid // tiles, (pid % tiles) * TILE + tl.arange(0, TILE)


@functools.lru_cache(maxsize=64)
def float64_on_device(values: tuple, device: torch.device) -> torch.Tensor:
    """Float scalars for a kernel to load: a Python float argument reaches a Triton
    kernel as float32. Cached: a fresh tensor would be a host-to-device copy (and a
    sync) on every call."""
    return torch.tensor(values, dtype=torch.float64, device=device)
