"""Triton kernel of fastecg's ``normalize``: one program per row, statistics in
float64 accumulated over column blocks, then one centred affine pass,
``((x - center) - fine) * scale + offset`` (as the CPU kernel: a DC offset far above the
record's spread keeps its digits; the mean is refined by the deviations' mean)."""

import torch
import triton
import triton.language as tl

from fastecg._spec import NormalizeMethod

from ._common import float64_on_device

# a jit function reads globals only as constexpr
_MIN_MAX = tl.constexpr(int(NormalizeMethod.MIN_MAX))
_Z_SCORE = tl.constexpr(int(NormalizeMethod.Z_SCORE))



@triton.jit
def _normalize_forward_kernel(x_ptr, y_ptr, n, method, ddof, params_ptr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    mean = tl.load(params_ptr)  # float64 from memory: scalar float arguments are float32
    std = tl.load(params_ptr + 1)
    eps = tl.load(params_ptr + 2)
    x_row = x_ptr + row * n
    y_row = y_ptr + row * n
    cols = tl.arange(0, BLOCK)
    center = mean  # naive: (x - mean) / std
    fine = 0.0 * mean
    scale = 1.0 / std
    offset = 0.0 * mean
    if method == _MIN_MAX:
        lo = tl.full([BLOCK], float("inf"), tl.float64)
        hi = tl.full([BLOCK], float("-inf"), tl.float64)
        bad = tl.zeros([BLOCK], tl.float64)
        for start in range(0, n, BLOCK):
            mask = start + cols < n
            v = tl.load(x_row + start + cols, mask=mask, other=0.0).to(tl.float64)
            # abs(v - v) is 0 for finite v and NaN for NaN/Inf.
            bad += tl.where(mask & ~(tl.abs(v - v) == 0.0), 1.0, 0.0)
            lo = tl.minimum(lo, tl.where(mask, v, float("inf")))
            hi = tl.maximum(hi, tl.where(mask, v, float("-inf")))
        lo_all = tl.min(lo, axis=0)
        span = tl.max(hi, axis=0) - lo_all + eps
        span = tl.where(tl.sum(bad, axis=0) == 0.0, span, float("nan"))
        center = lo_all
        scale = 1.0 / span
    elif method == _Z_SCORE:
        acc = tl.zeros([BLOCK], tl.float64)
        for start in range(0, n, BLOCK):
            mask = start + cols < n
            acc += tl.load(x_row + start + cols, mask=mask, other=0.0).to(tl.float64)
        mu = tl.sum(acc, axis=0) / n
        acc = tl.zeros([BLOCK], tl.float64)
        acc_d = tl.zeros([BLOCK], tl.float64)
        for start in range(0, n, BLOCK):
            mask = start + cols < n
            d = tl.where(mask, tl.load(x_row + start + cols, mask=mask, other=0.0).to(tl.float64)
                         - mu, 0.0)
            acc_d += d
            acc += d * d
        d_sum = tl.sum(acc_d, axis=0)
        sigma = tl.sqrt(tl.maximum(tl.sum(acc, axis=0) - d_sum * d_sum / n, 0.0) / (n - ddof))
        center = mu
        fine = d_sum / n
        scale = std / (sigma + eps)
        offset = mean
    for start in range(0, n, BLOCK):
        mask = start + cols < n
        v = tl.load(x_row + start + cols, mask=mask, other=0.0).to(tl.float64)
        y = ((v - center) - fine) * scale + offset
        tl.store(y_row + start + cols, y.to(y_ptr.dtype.element_ty), mask=mask)


def normalize_forward(rows: torch.Tensor, method: int, mean: float, std: float, eps: float,
                      ddof: int) -> torch.Tensor:
    """Launch on ``rows`` of shape (n_rows, n); returns a new contiguous tensor."""
    rows = rows.contiguous()
    out = torch.empty_like(rows)
    n_rows, n = rows.shape
    if n_rows:
        block = min(1024, triton.next_power_of_2(n))
        params = float64_on_device((float(mean), float(std), float(eps)), rows.device)
        _normalize_forward_kernel[(n_rows,)](rows, out, n, method, ddof, params,
                                                BLOCK=block)
    return out
