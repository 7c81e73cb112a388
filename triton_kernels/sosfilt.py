"""Triton kernels of fastecg's ``sosfilt`` / ``sosfiltfilt``: a block scan along time.

A recurrence offers only n_rows independent channels, too few for a GPU, so time is
split into blocks of L samples (Nehab et al. 2011; CuPy's ``_iir_utils``). The whole
cascade is one linear system with K = 2 * n_sections float64 states (SciPy's
transposed direct form II, section after section), so the output of a block is its
zero-state response plus the zero-input response of the state it starts from:

1. ``_block_filter_kernel``: every (row, block) filters its block from zero state,
   sequentially inside the block, and keeps its final ("zero-state") state;
2. ``_carry_scan_kernel``: per row, a scan over blocks gives each block's incoming
   state, ``s_in[b + 1] = A^L s_in[b] + s_zero[b]``, ``s_in[0] = zi``; the state after
   the last block is ``zf``;
3. ``_add_carry_kernel``: every sample adds ``sum_i s_in[b][i] * zir[i, t - b L]``,
   fully parallel over time.

``A^L`` and the zero-input responses ``zir`` (K, L) are the block filter itself run on
zeros from the K unit states (one launch, and one more for a shorter last block's
map; on the device, so no host sync and no cache to invalidate).
csrc/cuda/sosfilt.cu has the same three kernels.
"""

import torch
import triton
import triton.language as tl

from fastecg._rows import extend_rows

from ._common import row_and_tile

BLOCK = 128  # samples per block L (untuned): phase 1 is L steps long, phase 2 n / L
_LANES = 128  # (row, block) pairs per program: one per thread with 4 warps
_TILE = 256  # samples per program in phase 3


@triton.jit
def _block_filter_kernel(y_ptr, z0_ptr, zf_ptr, sos_ptr, n_lanes, n, n_blocks, n_sections,
                         block, HAS_Z0: tl.constexpr, LANES: tl.constexpr):
    """Filter each block of y (n_rows, n) float64 in place, one lane per (row, block),
    from state z0 (n_lanes, n_sections, 2) (HAS_Z0) or zero; final state to zf."""
    lane = (tl.program_id(0) * LANES + tl.arange(0, LANES)).to(tl.int64)
    live = lane < n_lanes
    start = (lane % n_blocks) * block
    length = tl.minimum(n - start, block)
    y_lane = y_ptr + (lane // n_blocks) * n + start
    # Section after section over the whole block: the states stay scalars per lane.
    for s in range(n_sections):
        b0 = tl.load(sos_ptr + 6 * s)
        b1 = tl.load(sos_ptr + 6 * s + 1)
        b2 = tl.load(sos_ptr + 6 * s + 2)
        a1 = tl.load(sos_ptr + 6 * s + 4)
        a2 = tl.load(sos_ptr + 6 * s + 5)
        z_lane = (lane * n_sections + s) * 2
        z1 = tl.zeros([LANES], tl.float64)
        z2 = tl.zeros([LANES], tl.float64)
        if HAS_Z0:
            z1 = tl.load(z0_ptr + z_lane, mask=live, other=0.0)
            z2 = tl.load(z0_ptr + z_lane + 1, mask=live, other=0.0)
        for t in range(block):
            m = live & (t < length)
            v = tl.load(y_lane + t, mask=m, other=0.0)
            out = b0 * v + z1
            z1 = tl.where(m, b1 * v - a1 * out + z2, z1)
            z2 = tl.where(m, b2 * v - a2 * out, z2)
            tl.store(y_lane + t, out, mask=m)
        tl.store(zf_ptr + z_lane, z1, mask=live)
        tl.store(zf_ptr + z_lane + 1, z2, mask=live)
        # The next section reads what this one wrote: make it visible to every thread.
        tl.debug_barrier()


@triton.jit
def _carry_scan_kernel(zi_ptr, zero_ptr, power_ptr, power_last_ptr, s_in_ptr, zf_ptr,
                       n_blocks, K, KP: tl.constexpr):
    """One program per row: s_in (n_rows, n_blocks, K) and zf (n_rows, K) from zi (n_rows,
    K) and the zero-state final states (n_rows, n_blocks, K). power[i, :] = A^L e_i
    (power_last: the last block's length), so ``A^L s = sum_i s[i] power[i, :]``."""
    row = tl.program_id(0).to(tl.int64)
    i = tl.arange(0, KP)
    ok = i < K
    square = i[:, None] * K + i[None, :]
    ok2 = ok[:, None] & ok[None, :]
    power = tl.load(power_ptr + square, mask=ok2, other=0.0)
    state = tl.load(zi_ptr + row * K + i, mask=ok, other=0.0)
    blocks = row * n_blocks * K
    for b in range(n_blocks - 1):
        tl.store(s_in_ptr + blocks + b * K + i, state, mask=ok)
        zero = tl.load(zero_ptr + blocks + b * K + i, mask=ok, other=0.0)
        state = tl.sum(power * state[:, None], axis=0) + zero
    last = (n_blocks - 1) * K
    tl.store(s_in_ptr + blocks + last + i, state, mask=ok)
    power = tl.load(power_last_ptr + square, mask=ok2, other=0.0)
    zero = tl.load(zero_ptr + blocks + last + i, mask=ok, other=0.0)
    tl.store(zf_ptr + row * K + i, tl.sum(power * state[:, None], axis=0) + zero, mask=ok)


@triton.jit
def _add_carry_kernel(y_ptr, s_in_ptr, zir_ptr, out_ptr, n, tiles, n_blocks, block, K,
                      TILE: tl.constexpr):
    """out[r, t] = y[r, t] + sum_i s_in[r, b, i] * zir[i, t - b L] (b = t // L), rounded
    once to out's dtype; y (n_rows, n) float64, zir (K, L) float64."""
    row, t = row_and_tile(tiles, TILE)
    m = t < n
    b = t // block
    j = t - b * block
    acc = tl.load(y_ptr + row * n + t, mask=m, other=0.0)
    s_in = s_in_ptr + (row * n_blocks + b) * K
    for i in range(K):
        acc += tl.load(s_in + i, mask=m, other=0.0) * tl.load(zir_ptr + i * block + j, mask=m,
                                                                other=0.0)
    tl.store(out_ptr + row * n + t, acc.to(out_ptr.dtype.element_ty), mask=m)


def _filter_blocks(y: torch.Tensor, sos: torch.Tensor, block: int, z0=None) -> torch.Tensor:
    """Phase 1 on y (n_rows, n) float64, in place; returns the final states (n_rows,
    n_blocks, n_sections, 2) float64 of blocks started from z0 (same shape) or zero."""
    n_rows, n = y.shape
    n_sections = sos.shape[0]
    n_blocks = triton.cdiv(n, block)
    zf = torch.empty(n_rows, n_blocks, n_sections, 2, dtype=torch.float64, device=y.device)
    n_lanes = n_rows * n_blocks
    _block_filter_kernel[(triton.cdiv(n_lanes, _LANES),)](
        y, y if z0 is None else z0, zf, sos, n_lanes, n, n_blocks, n_sections, block,
        HAS_Z0=z0 is not None, LANES=_LANES)
    return zf


def _bases(sos: torch.Tensor, n: int, block: int):
    """The block filter run on zeros from the K unit states: zero-input responses
    (K, block) and the state maps (K, K), row i = A^L e_i, for a full block and for the
    last block (n - (n_blocks - 1) * block samples). All float64."""
    k = 2 * sos.shape[0]
    unit = torch.eye(k, dtype=torch.float64, device=sos.device).view(k, 1, -1, 2)
    zir = torch.zeros(k, block, dtype=torch.float64, device=sos.device)
    power = _filter_blocks(zir, sos, block, unit).view(k, k)
    last = n - (triton.cdiv(n, block) - 1) * block
    power_last = power
    if last != block:
        zeros = torch.zeros(k, last, dtype=torch.float64, device=sos.device)
        power_last = _filter_blocks(zeros, sos, last, unit).view(k, k)
    return zir, power, power_last


def _scan_filter(y: torch.Tensor, sos: torch.Tensor, zi: torch.Tensor, out: torch.Tensor,
                 bases, block: int) -> torch.Tensor:
    """sosfilt of y (n_rows, n) float64 (overwritten) from zi (n_rows, n_sections, 2)
    float64 into out (n_rows, n, any float dtype); returns zf like zi. n >= 1."""
    n_rows, n = y.shape
    k = 2 * sos.shape[0]
    zir, power, power_last = bases
    n_blocks = triton.cdiv(n, block)
    zero = _filter_blocks(y, sos, block)
    s_in = torch.empty_like(zero)
    zf = torch.empty_like(zi)
    _carry_scan_kernel[(n_rows,)](zi, zero, power, power_last, s_in, zf, n_blocks, k,
                                  KP=triton.next_power_of_2(k))
    tiles = triton.cdiv(n, _TILE)
    _add_carry_kernel[(n_rows * tiles,)](y, s_in, zir, out, n, tiles, n_blocks, block, k,
                                         TILE=_TILE)
    return zf


def sosfilt(rows: torch.Tensor, sos: torch.Tensor, zi: torch.Tensor, block=None):
    """``(y, zf) = scipy.signal.sosfilt(sos, rows, zi=zi)`` along each row by block scan.

    rows (n_rows, n) float32/float64; sos (n_sections, 6) float64 with a0 == 1;
    zi (n_rows, n_sections, 2) float64. Returns y like rows (computed in float64,
    rounded once) and zf (n_rows, n_sections, 2) float64. ``block``: samples per block
    (default :data:`BLOCK`).
    """
    n_rows, n = rows.shape
    zi = zi.to(torch.float64).contiguous()
    y = torch.empty_like(rows, memory_format=torch.contiguous_format)
    if n_rows == 0 or n == 0:
        return y, zi.clone()
    block = min(block or BLOCK, n)
    work = rows.to(torch.float64, memory_format=torch.contiguous_format, copy=True)
    sos = sos.contiguous()
    zf = _scan_filter(work, sos, zi, y, _bases(sos, n, block), block)
    return y, zf


def sosfiltfilt(rows: torch.Tensor, sos: torch.Tensor, zi: torch.Tensor, padlen: int,
                padtype: int, block=None) -> torch.Tensor:
    """``scipy.signal.sosfiltfilt`` along each row: extension in rows' dtype (padtype
    codes of ``fastecg._rows.PADTYPES``), forward and reversed block-scan passes
    in float64 from ``zi`` (n_sections, 2) times the first sample, crop, one rounding.

    rows (n_rows, n) float32/float64, n > padlen; returns the same shape and dtype.
    """
    n_rows, n = rows.shape
    if n_rows == 0:
        return torch.empty_like(rows)
    ext = extend_rows(rows, padlen, padtype)
    length = ext.shape[-1]
    block = min(block or BLOCK, length)
    sos = sos.contiguous()
    bases = _bases(sos, length, block)
    work = ext.to(torch.float64, memory_format=torch.contiguous_format, copy=True)
    fwd = torch.empty_like(work)
    _scan_filter(work, sos, (zi[None] * work[:, :1, None]).contiguous(), fwd, bases, block)
    work = fwd.flip(-1)  # a contiguous copy: the reversed pass's work buffer
    out = torch.empty_like(work)
    _scan_filter(work, sos, (zi[None] * work[:, :1, None]).contiguous(), out, bases, block)
    return out.flip(-1)[:, padlen:padlen + n].to(rows.dtype, memory_format=torch.contiguous_format)
