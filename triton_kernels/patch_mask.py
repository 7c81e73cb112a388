"""Triton kernels of fastecg's MAE patch masking (python/fastecg/ops/patch_mask.py): one
program per token, the token's ``D`` values in one block.

Token ``l`` of a record ``(n_leads, n_samples)`` is ``groups`` runs of ``P`` samples, run
``g`` at ``l * P + g * n_samples`` (``groups = n_leads`` for temporal tokens, 1 for the
per-lead ones). The loss reads each token once into registers: its statistics are
centred exactly (two passes over registers, float64), the target is never stored.
"""

import torch
import triton
import triton.language as tl

from fastecg._spec import MaskMode

_TEMPORAL = int(MaskMode.TEMPORAL)


def _layout(n_leads: int, n_samples: int, patch_size: int, mode: int):
    t = n_samples // patch_size
    if mode == _TEMPORAL:
        return t, n_leads * patch_size  # tokens, dim
    return n_leads * t, patch_size


@triton.jit
def _token_offsets(cols, P: tl.constexpr, n_samples):
    """Where value j of a token lies, relative to the token's first sample."""
    g = cols // P
    return g * n_samples + (cols - g * P)


@triton.jit
def _patch_copy_kernel(src_ptr, ids_ptr, dst_ptr, keep, record, n_samples, DIM: tl.constexpr,
                       P: tl.constexpr, BLOCK: tl.constexpr, GATHER: tl.constexpr):
    i = tl.program_id(0).to(tl.int64)  # kept token i = b * keep + k
    b = i // keep
    cols = tl.arange(0, BLOCK)
    valid = cols < DIM
    at = b * record + tl.load(ids_ptr + i) * P + _token_offsets(cols, P, n_samples)
    if GATHER:
        tl.store(dst_ptr + i * DIM + cols, tl.load(src_ptr + at, mask=valid), mask=valid)
    else:
        tl.store(dst_ptr + at, tl.load(src_ptr + i * DIM + cols, mask=valid), mask=valid)


def _copy(src, ids, dst, patch_size, n_leads, n_samples, dim, gather):
    batch, keep = ids.shape
    if batch * keep:
        _patch_copy_kernel[(batch * keep,)](src, ids, dst, keep, n_leads * n_samples, n_samples,
                                            DIM=dim, P=patch_size,
                                            BLOCK=triton.next_power_of_2(dim), GATHER=gather)
    return dst


def patch_gather(x: torch.Tensor, ids_keep: torch.Tensor, patch_size: int,
                 mode: int) -> torch.Tensor:
    """kept (B, n_keep, D): the tokens ``ids_keep`` of x (B, n_leads, n_samples), copied."""
    x, ids = x.contiguous(), ids_keep.contiguous()
    b, c, n = x.shape
    _, dim = _layout(c, n, patch_size, mode)
    kept = x.new_empty(b, ids.shape[1], dim)
    return _copy(x, ids, kept, patch_size, c, n, dim, True)


def patch_scatter(kept: torch.Tensor, ids_keep: torch.Tensor, patch_size: int, mode: int,
                  n_leads: int, n_samples: int) -> torch.Tensor:
    """The adjoint of :func:`patch_gather`: a zero signal with the kept tokens written."""
    kept, ids = kept.contiguous(), ids_keep.contiguous()
    out = kept.new_zeros(kept.shape[0], n_leads, n_samples)
    return _copy(kept, ids, out, patch_size, n_leads, n_samples, kept.shape[2], False)


@triton.jit
def _token_stats(x_ptr, pred_ptr, tok, tokens, record, n_samples, eps, NORM_PIX: tl.constexpr,
                 DIM: tl.constexpr, P: tl.constexpr, BLOCK: tl.constexpr):
    """The token's target z (float64, exactly centred and scaled), its prediction and the
    valid-lane mask."""
    b = tok // tokens
    l = tok - b * tokens
    cols = tl.arange(0, BLOCK)
    valid = cols < DIM
    xs = tl.load(x_ptr + b * record + l * P + _token_offsets(cols, P, n_samples), mask=valid,
                 other=0.0).to(tl.float64)
    ps = tl.load(pred_ptr + tok * DIM + cols, mask=valid, other=0.0).to(tl.float64)
    if NORM_PIX:  # a compile-time branch: its variables differ in type from the other's
        mean = tl.sum(xs, axis=0) / DIM
        u = tl.where(valid, xs - mean, 0.0)
        inv = 1.0 / tl.sqrt(tl.sum(u * u, axis=0) / (DIM - 1) + eps)
        z = u * inv
    else:
        inv = 1.0
        z = xs
    return z, ps, valid, inv


@triton.jit
def _loss_terms_kernel(pred_ptr, x_ptr, mask_ptr, terms_ptr, tokens, record, n_samples,
                       eps_ptr, NORM_PIX: tl.constexpr, DIM: tl.constexpr, P: tl.constexpr,
                       BLOCK: tl.constexpr):
    tok = tl.program_id(0).to(tl.int64)
    m = tl.load(mask_ptr + tok).to(tl.float64)
    eps = tl.load(eps_ptr)
    if m != 0.0:  # masked patches only: the kept ones are never read
        z, ps, valid, inv = _token_stats(x_ptr, pred_ptr, tok, tokens, record, n_samples,
                                         eps, NORM_PIX, DIM, P, BLOCK)
        r = tl.where(valid, ps - z, 0.0)
        tl.store(terms_ptr + tok, m * tl.sum(r * r, axis=0) / DIM)
    else:
        tl.store(terms_ptr + tok, 0.0)


@triton.jit
def _loss_backward_kernel(scalars_ptr, pred_ptr, x_ptr, mask_ptr, dpred_ptr, dx_ptr, tokens,
                          record, n_samples, eps_ptr, NORM_PIX: tl.constexpr,
                          NEED_DX: tl.constexpr, DIM: tl.constexpr, P: tl.constexpr,
                          BLOCK: tl.constexpr):
    tok = tl.program_id(0).to(tl.int64)
    # scalars: the incoming gradient and the mask's sum, on the device (no sync)
    w = tl.load(scalars_ptr) * 2.0 / (DIM * tl.load(scalars_ptr + 1)) \
        * tl.load(mask_ptr + tok).to(tl.float64)
    eps = tl.load(eps_ptr)
    b = tok // tokens
    l = tok - b * tokens
    cols = tl.arange(0, BLOCK)
    valid = cols < DIM
    at = b * record + l * P + _token_offsets(cols, P, n_samples)
    z, ps, valid, inv = _token_stats(x_ptr, pred_ptr, tok, tokens, record, n_samples,
                                     eps, NORM_PIX, DIM, P, BLOCK)
    # w == 0 (a kept token) gives exact zeros below, as the other kernels write.
    kept_token = w == 0.0
    r = tl.where(valid, w * (ps - z), 0.0)
    r = tl.where(kept_token, 0.0, r)
    tl.store(dpred_ptr + tok * DIM + cols, r.to(dpred_ptr.dtype.element_ty), mask=valid)
    if NEED_DX:
        if NORM_PIX:
            # dx = -(r - mean(r) - z sum(r z) / (D - 1)) / std
            dx = (tl.sum(r, axis=0) / DIM - r + z * (tl.sum(r * z, axis=0) / (DIM - 1))) * inv
            dx = tl.where(kept_token, 0.0, dx)
        else:
            dx = -r
        tl.store(dx_ptr + at, dx.to(dx_ptr.dtype.element_ty), mask=valid)


def _wide(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def _eps(eps: float, device) -> torch.Tensor:
    # a Python float reaches a Triton kernel as float32: pass eps in float64 memory
    return torch.full((1,), eps, dtype=torch.float64, device=device)


def masked_recon_loss(pred: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, patch_size: int,
                      mode: int, norm_pix: bool, eps: float) -> torch.Tensor:
    """The masked reconstruction loss, a 0-d tensor of x's dtype (per-token terms in
    float64, summed by torch in one fixed order)."""
    pred, x, mask = pred.contiguous(), x.contiguous(), mask.contiguous()
    b, c, n = x.shape
    tokens, dim = _layout(c, n, patch_size, mode)
    terms = torch.empty(b * tokens, dtype=torch.float64, device=x.device)
    if terms.numel():
        _loss_terms_kernel[(b * tokens,)](pred, x, mask, terms, tokens, c * n, n,
                                          _eps(eps, x.device), NORM_PIX=bool(norm_pix), DIM=dim,
                                          P=patch_size, BLOCK=triton.next_power_of_2(dim))
    return (terms.sum() / mask.double().sum()).to(x.dtype)


def masked_recon_loss_backward(grad: torch.Tensor, pred: torch.Tensor, x: torch.Tensor,
                               mask: torch.Tensor, patch_size: int, mode: int, norm_pix: bool,
                               eps: float, need_dx: bool):
    """(dpred, dx) of the loss times grad; dx empty unless need_dx."""
    pred, x, mask = pred.contiguous(), x.contiguous(), mask.contiguous()
    b, c, n = x.shape
    tokens, dim = _layout(c, n, patch_size, mode)
    # Half types get float32 buffers (rounded by the caller, as the compiled kernels'
    # float32 results are): the interpreter's float64 -> bfloat16 store writes garbage.
    dpred = torch.empty(pred.shape, dtype=_wide(pred.dtype), device=pred.device)
    dx = torch.empty(x.shape, dtype=_wide(x.dtype), device=x.device) if need_dx \
        else x.new_empty(0)
    if b * tokens:
        scalars = torch.stack([grad.detach().reshape(()).double(), mask.double().sum()])
        _loss_backward_kernel[(b * tokens,)](scalars, pred, x, mask, dpred, dx, tokens, c * n, n,
                                             _eps(eps, x.device), NORM_PIX=bool(norm_pix),
                                             NEED_DX=bool(need_dx), DIM=dim, P=patch_size,
                                             BLOCK=triton.next_power_of_2(dim))
    return dpred, dx
