"""Triton kernel of fastecg's running median (``median_filter1d`` / ``remove_baseline``).

A GPU gets rows x samples outputs of independent work, so each program takes one row
and a tile of ``BLOCK_OUT`` outputs and finds every window's median by a bitwise radix
select on order-preserving integer keys: for each key bit, from the top, count the
window elements that share the prefix chosen so far and have a 0 there, and keep the
half that holds rank ``size // 2``. Exact (keys are compared as integers), no sorting,
no per-thread state: O(key_bits * w) work per output. Windows up to 1024 samples keep
the tile's keys in registers for all bits (``_median_stage_resident_kernel``); longer
ones re-read the window from L1/L2 once per bit (``_median_stage_kernel``).
"""

import torch
import triton
import triton.language as tl

from fastecg._rows import gather_selected

from ._common import float64_on_device, row_and_tile

# Boundary modes, as in python/fastecg/ops/baseline.py.
_REFLECT, _MIRROR, _NEAREST, _CONSTANT, _WRAP = 0, 1, 2, 3, 4


@triton.jit
def _extended_index(q, n, MODE: tl.constexpr):
    """Stage-input position read at extended position q (-1: cval), SciPy's rules."""
    if MODE == 2:  # nearest
        j = tl.minimum(tl.maximum(q, 0), n - 1)
    elif MODE == 4:  # wrap
        j = ((q % n) + n) % n
    elif MODE == 0:  # reflect: d c b a | a b c d | d c b a
        r = ((q % (2 * n)) + 2 * n) % (2 * n)
        j = tl.where(r < n, r, 2 * n - 1 - r)
    elif MODE == 1:  # mirror: d c b | a b c d | c b a
        p = tl.maximum(2 * n - 2, 1)
        r = ((q % p) + p) % p
        j = tl.where(r < n, r, 2 * n - 2 - r)
        j = tl.where(n == 1, 0, j)
    else:  # constant
        j = tl.where((q >= 0) & (q < n), q, -1)
    return j


@triton.jit
def _order_key(v, KEY_BITS: tl.constexpr):
    """Unsigned keys ordered as the floats; -0.0 as +0.0, NaN above +inf."""
    if KEY_BITS == 32:
        u = v.to(tl.uint32, bitcast=True)
        u = tl.where(u == 0x80000000, 0, u)
        key = tl.where((u & 0x80000000) != 0, ~u, u | 0x80000000).to(tl.uint64)
        key = tl.where(v != v, 0xFFFFFFFF, key)
    else:
        u = v.to(tl.uint64, bitcast=True)
        sign = tl.full(u.shape, 0x8000000000000000, tl.uint64)
        u = tl.where(u == sign, 0, u)
        key = tl.where((u & sign) != 0, ~u, u | sign)
        key = tl.where(v != v, 0xFFFFFFFFFFFFFFFF, key)
    return key


@triton.jit
def _window_keys(x_row, src_row, i, t, n, start, size, cval, MODE: tl.constexpr,
                 HAS_SRC: tl.constexpr, KEY_BITS: tl.constexpr):
    """Keys and row indices of window slots t of outputs i (tile [BLOCK_OUT, BLOCK_W])."""
    valid = (t[None, :] < size) & (i[:, None] < n)
    j = _extended_index(i[:, None] + start + t[None, :], n, MODE)
    src = j
    if HAS_SRC:
        src = tl.load(src_row + tl.maximum(j, 0), mask=valid & (j >= 0), other=-1)
        src = tl.where(j >= 0, src, -1)
    v = tl.load(x_row + tl.maximum(src, 0), mask=valid & (src >= 0), other=0.0)
    v = tl.where(src >= 0, v, cval.to(v.dtype))
    return _order_key(v, KEY_BITS), src, valid


@triton.jit
def _median_stage_kernel(x_ptr, src_ptr, sel_ptr, n, tiles, start, size, cval_ptr,
                         MODE: tl.constexpr, HAS_SRC: tl.constexpr, KEY_BITS: tl.constexpr,
                         BLOCK_OUT: tl.constexpr, BLOCK_W: tl.constexpr):
    row, i = row_and_tile(tiles, BLOCK_OUT)
    cval = tl.load(cval_ptr)  # float64: a float argument would arrive as float32
    t0 = tl.arange(0, BLOCK_W)
    x_row = x_ptr + row * n
    src_row = src_ptr + row * n
    nan_key = 0xFFFFFFFF if KEY_BITS == 32 else 0xFFFFFFFFFFFFFFFF
    # NaN anywhere in the window makes the output NaN.
    n_nan = tl.zeros([BLOCK_OUT], tl.int32)
    for w0 in range(0, size, BLOCK_W):
        key, src, valid = _window_keys(x_row, src_row, i, w0 + t0, n, start, size, cval,
                                       MODE, HAS_SRC, KEY_BITS)
        n_nan += tl.sum((valid & (key == nan_key)).to(tl.int32), axis=1)
    prefix = tl.zeros([BLOCK_OUT], tl.uint64)
    rank = tl.zeros([BLOCK_OUT], tl.int32) + size // 2
    for step in range(KEY_BITS):
        bit = KEY_BITS - 1 - step
        zeros = tl.zeros([BLOCK_OUT], tl.int32)
        for w0 in range(0, size, BLOCK_W):
            key, src, valid = _window_keys(x_row, src_row, i, w0 + t0, n, start, size, cval,
                                           MODE, HAS_SRC, KEY_BITS)
            match = valid & ((key >> bit) == (prefix[:, None] >> bit))
            zeros += tl.sum(match.to(tl.int32), axis=1)
        take_one = rank >= zeros
        rank = tl.where(take_one, rank - zeros, rank)
        prefix = tl.where(take_one, prefix | (tl.full([BLOCK_OUT], 1, tl.uint64) << bit), prefix)
    target = tl.where(n_nan > 0, nan_key, prefix)
    # the first window slot holding the selected key gives the selected sample
    best = tl.full([BLOCK_OUT], 2147483647, tl.int32)
    chosen = tl.full([BLOCK_OUT], -1, tl.int64)
    for w0 in range(0, size, BLOCK_W):
        key, src, valid = _window_keys(x_row, src_row, i, w0 + t0, n, start, size, cval,
                                       MODE, HAS_SRC, KEY_BITS)
        slot = tl.where(valid & (key == target[:, None]), (w0 + t0)[None, :], 2147483647)
        first = tl.min(slot, axis=1)
        pick = tl.sum(tl.where(slot == first[:, None], src.to(tl.int64), 0), axis=1)
        chosen = tl.where(first < best, pick, chosen)
        best = tl.minimum(best, first)
    tl.store(sel_ptr + row * n + i, chosen, mask=i < n)


@triton.jit
def _median_stage_resident_kernel(x_ptr, src_ptr, sel_ptr, n, tiles, start, size, cval_ptr,
                                  MODE: tl.constexpr, HAS_SRC: tl.constexpr,
                                  KEY_BITS: tl.constexpr, BLOCK_OUT: tl.constexpr,
                                  BLOCK_W: tl.constexpr):
    """The same select for windows of at most BLOCK_W samples: the tile's keys are read
    once and stay in registers for every bit (the kernel above re-reads them per bit)."""
    row, i = row_and_tile(tiles, BLOCK_OUT)
    cval = tl.load(cval_ptr)  # float64: a float argument would arrive as float32
    t = tl.arange(0, BLOCK_W)
    key, src, valid = _window_keys(x_ptr + row * n, src_ptr + row * n, i, t, n, start, size,
                                   cval, MODE, HAS_SRC, KEY_BITS)
    if KEY_BITS == 32:  # half-width integer arithmetic for float32 keys
        key = key.to(tl.uint32)
    nan_key = 0xFFFFFFFF if KEY_BITS == 32 else 0xFFFFFFFFFFFFFFFF
    has_nan = tl.sum((valid & (key == nan_key)).to(tl.int32), axis=1) > 0
    one = tl.full([BLOCK_OUT], 1, key.dtype)
    prefix = tl.zeros([BLOCK_OUT], key.dtype)
    rank = tl.zeros([BLOCK_OUT], tl.int32) + size // 2
    for step in range(KEY_BITS):
        bit = KEY_BITS - 1 - step
        match = valid & ((key >> bit) == (prefix[:, None] >> bit))
        zeros = tl.sum(match.to(tl.int32), axis=1)
        take_one = rank >= zeros
        rank = tl.where(take_one, rank - zeros, rank)
        prefix = tl.where(take_one, prefix | (one << bit), prefix)
    target = tl.where(has_nan, nan_key, prefix)
    slot = tl.where(valid & (key == target[:, None]), t[None, :], 2147483647)
    first = tl.min(slot, axis=1)
    chosen = tl.sum(tl.where(slot == first[:, None], src.to(tl.int64), 0), axis=1)
    tl.store(sel_ptr + row * n + i, chosen, mask=i < n)


# Window slots held in registers by the resident kernel (outputs per program shrink as
# windows grow, so that a program holds RESIDENT_SLOTS keys).
RESIDENT_SLOTS = 4096


def median_filter_forward(rows: torch.Tensor, sizes, origins, mode: int, cval: float,
                          subtract: bool, need_index: bool):
    """Chain of running medians on ``rows`` (n_rows, n); returns (out, index) like the
    C++ kernel ``fastecg::_median_filter_kernel``."""
    rows = rows.contiguous()
    n_rows, n = rows.shape
    key_bits = 32 if rows.dtype == torch.float32 else 64
    index = None
    cval_t = float64_on_device((float(cval),), rows.device)
    for size, origin in zip(sizes, origins):
        sel = torch.empty((n_rows, n), dtype=torch.int64, device=rows.device)
        width = triton.next_power_of_2(size)
        if width <= RESIDENT_SLOTS // 4:  # 8 warps: 16 keys and indices per thread
            kernel, block_w, block_out, warps = (_median_stage_resident_kernel, width,
                                                 RESIDENT_SLOTS // width, 8)
        else:
            kernel, block_w, block_out, warps = _median_stage_kernel, 128, 32, 4
        tiles = triton.cdiv(n, block_out)
        kernel[(n_rows * tiles,)](rows, index if index is not None else sel, sel, n, tiles,
                                  -(size // 2) - origin, size, cval_t, MODE=mode,
                                  HAS_SRC=index is not None, KEY_BITS=key_bits,
                                  BLOCK_OUT=block_out, BLOCK_W=block_w, num_warps=warps)
        index = sel
    return gather_selected(rows, index, cval, subtract, need_index)
