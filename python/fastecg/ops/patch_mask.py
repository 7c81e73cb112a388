"""MAE patch masking: random masking with exact counts, the gather of kept patches straight
from the raw signal, the patch embedding of kept patches only, and the masked
reconstruction loss without a materialised target.

Tokens (``mode``):

* ``"temporal"`` (MAE-1D): token ``t`` is every lead of time patch ``t``, ``L = N // P``
  tokens of ``D = n_leads * P`` values laid out lead-major, i.e. the token sequence is
  ``x.unfold(-1, P, P).permute(0, 2, 1, 3).flatten(2)``.
* ``"lead_temporal"`` (ST-MEM): token ``c * T + t`` is lead ``c``'s patch ``t``,
  ``L = n_leads * T`` tokens of ``D = P`` values; each lead loses exactly
  ``round(T * mask_ratio)`` of its patches.
* ``"lead"``: the same tokens as ``"lead_temporal"``, but whole leads are masked:
  ``round(n_leads * mask_ratio)`` leads lose all their patches.

The random draw (uniform noise, argsort) is plain torch so that it traces under
``torch.compile``; the gather/scatter and the loss are ``torch.library`` custom ops with
fake kernels and exact backwards, their kernels registered per backend through
:mod:`fastecg.ops._dispatch`.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .._spec import MaskMode
from ._dispatch import (check_backend_name, check_no_tangent, compiled_op, custom_op,
                        kernel_for, register_kernel, resolve_backend)
from ._validate import check_signal

__all__ = ["patch_mask", "masked_patch_embed", "masked_reconstruction_loss", "PatchMask",
           "MASK_MODES", "patchify", "unpatchify", "num_tokens"]

# Plain ints (the kernels' schema type), valued as fastecg._spec.MaskMode / codes.h.
MASK_MODES = {m.name.lower(): int(m) for m in MaskMode}
TEMPORAL, LEAD_TEMPORAL, LEAD = (int(m) for m in MaskMode)
NORM_PIX_EPS = 1e-6  # MAE's: added to each patch's variance before the square root


class PatchMask(NamedTuple):
    """What :func:`patch_mask` returns."""

    kept: Tensor         # (B, L_keep, D) kept patches, in ids_keep order
    mask: Tensor         # (B, L) 1 = masked, 0 = kept, in token order; x's dtype
    ids_keep: Tensor     # (B, L_keep) int64 token ids of the kept patches
    ids_restore: Tensor  # (B, L) int64: cat(kept, masked) gathered with it is token order


# ---- token views ---------------------------------------------------------------------------
# Every token is G groups of P contiguous samples of x; the 4-D view (B, L, G, P) of a
# contiguous x addresses them without copying, so gathers read straight from the signal.

def _token_view(x: Tensor, patch_size: int, mode: int) -> Tensor:
    b, c, n = x.shape
    t = n // patch_size
    if mode == TEMPORAL:
        return x.view(b, c, t, patch_size).permute(0, 2, 1, 3)
    return x.view(b, c * t, 1, patch_size)


def num_tokens(n_leads: int, n_samples: int, patch_size: int, mode: str = "temporal") -> int:
    """Number of tokens ``L`` of a ``(n_leads, n_samples)`` signal."""
    t = n_samples // patch_size
    return t if MASK_MODES[mode] == TEMPORAL else n_leads * t


def patchify(x: Tensor, patch_size: int, mode: str = "temporal") -> Tensor:
    """All tokens, ``(B, L, D)`` (a copy: for reference and display, not the hot path)."""
    v = _token_view(x.contiguous(), patch_size, MASK_MODES[mode])
    return v.flatten(2)  # (not reshape(..., -1): ambiguous for an empty batch)


def unpatchify(tokens: Tensor, n_leads: int, patch_size: int, mode: str = "temporal") -> Tensor:
    """Inverse of :func:`patchify`: ``(B, L, D)`` -> ``(B, n_leads, L_t * patch_size)``."""
    b = tokens.shape[0]
    if MASK_MODES[mode] == TEMPORAL:
        t = tokens.shape[1]
        return tokens.view(b, t, n_leads, patch_size).permute(0, 2, 1, 3).reshape(
            b, n_leads, t * patch_size)
    return tokens.reshape(b, n_leads, tokens.shape[1] * tokens.shape[2] // n_leads)


# ---- kernels -------------------------------------------------------------------------------

@register_kernel("patch_gather", "torch")
def patch_gather_reference(x: Tensor, ids_keep: Tensor, patch_size: int, mode: int) -> Tensor:
    """kept[b, k] = token ids_keep[b, k] of x, read through the strided token view."""
    view = _token_view(x, patch_size, mode)
    b, _, g, p = view.shape
    k = ids_keep.shape[1]
    kept = view.gather(1, ids_keep.view(b, k, 1, 1).expand(b, k, g, p))
    return kept.reshape(b, k, g * p)


@register_kernel("patch_scatter", "torch")
def patch_scatter_reference(kept: Tensor, ids_keep: Tensor, patch_size: int, mode: int,
                            n_leads: int, n_samples: int) -> Tensor:
    """Adjoint of the gather: kept patches written back into a zero signal."""
    b, k, d = kept.shape
    out = kept.new_zeros(b, n_leads, n_samples)
    view = _token_view(out, patch_size, mode)
    g, p = view.shape[2], view.shape[3]
    view.scatter_(1, ids_keep.view(b, k, 1, 1).expand(b, k, g, p), kept.view(b, k, g, p))
    return out


@register_kernel("masked_recon_loss", "torch")
def masked_recon_loss_reference(pred: Tensor, x: Tensor, mask: Tensor, patch_size: int,
                                mode: int, norm_pix: bool, eps: float) -> Tensor:
    """The loss, the target read from x in its own layout (no patchified copy of x)."""
    residual, _, _ = _residual(pred, x, patch_size, mode, norm_pix, eps)
    d = residual.shape[1] * residual.shape[3]
    per_patch = _sq_sum(residual) / d
    # Patches of weight 0 are not read, as by the kernels: NaN or Inf there (a kept
    # patch's prediction, a gap in the signal) stays out of the loss.
    return torch.where(mask != 0, per_patch * mask, 0).sum() / mask.sum()


@register_kernel("masked_recon_loss_backward", "torch")
def masked_recon_loss_backward_reference(grad: Tensor, pred: Tensor, x: Tensor, mask: Tensor,
                                         patch_size: int, mode: int, norm_pix: bool, eps: float,
                                         need_dx: bool) -> tuple[Tensor, Tensor]:
    """(dpred, dx) of the loss; dx empty unless need_dx."""
    return masked_recon_loss_backward(grad, pred, x, mask, patch_size, mode, norm_pix, eps,
                                      need_dx)


def _one_dtype(pred: Tensor, x: Tensor, mask: Tensor):
    """pred, x and mask in one float dtype, as the compiled loss kernels take them (a
    bfloat16 prediction beside a float32 signal is widened)."""
    dtype = torch.promote_types(torch.promote_types(pred.dtype, x.dtype), torch.float32)
    return pred.to(dtype), x.to(dtype), mask.to(dtype)


_loss_kernel = compiled_op("_masked_recon_loss_kernel")
_loss_backward_kernel = compiled_op("_masked_recon_loss_backward_kernel")


def masked_recon_loss_compiled(pred, x, mask, *args):
    """The C++ / CUDA loss kernel (its device's implementation of the private op)."""
    return _loss_kernel(*_one_dtype(pred, x, mask), *args)


def masked_recon_loss_backward_compiled(grad, pred, x, mask, *args):
    """The C++ / CUDA kernel of the loss's backward."""
    return _loss_backward_kernel(grad, *_one_dtype(pred, x, mask), *args)


# Compiled kernels: the same entry points on CPU and CUDA tensors (the dispatcher picks
# the device's implementation of the private op).
for _backend in ("cpu", "cuda"):
    register_kernel("patch_gather", _backend, compiled_op("_patch_gather_kernel"))
    register_kernel("patch_scatter", _backend, compiled_op("_patch_scatter_kernel"))
    register_kernel("masked_recon_loss", _backend, masked_recon_loss_compiled)
    register_kernel("masked_recon_loss_backward", _backend, masked_recon_loss_backward_compiled)
# Triton: launchers of the same names, imported when first picked.
for _name in ("patch_gather", "patch_scatter", "masked_recon_loss", "masked_recon_loss_backward"):
    register_kernel(_name, "triton", f"fastecg.triton_kernels.patch_mask:{_name}")


def _sq_sum(v: Tensor) -> Tensor:
    """Sum of squares over the token's (G, P) values, (B, G, L, P) -> (B, L), without a
    squared temporary (vector_norm reduces in one pass)."""
    return torch.linalg.vector_norm(v, dim=-1).square().sum(1)


def _sample_view(x: Tensor, patch_size: int, mode: int) -> Tensor:
    """x as (B, G, L, P), token l = the G rows [:, :, l, :], a view in x's own order so
    that per-token reductions run over contiguous memory (the (B, L, G, P) token view of
    the temporal mode is strided: reducing over it was 4x slower)."""
    b, c, n = x.shape
    t = n // patch_size
    if mode == TEMPORAL:
        return x.view(b, c, t, patch_size)
    return x.view(b, 1, c * t, patch_size)


def _pred_view(pred: Tensor, g: int, mode: int) -> Tensor:
    b, l, d = pred.shape
    p = d // g
    if mode == TEMPORAL:
        return pred.view(b, l, g, p).permute(0, 2, 1, 3)
    return pred.view(b, 1, l, p)


def _residual(pred: Tensor, x: Tensor, patch_size: int, mode: int, norm_pix: bool, eps: float):
    """(pred - target), the normalised target z and its per-patch std, all (B, G, L, P)
    in x's layout (z and std None without norm_pix)."""
    xv = _sample_view(x, patch_size, mode)
    pv = _pred_view(pred, xv.shape[1], mode)
    if not norm_pix:
        return pv - xv, None, None
    d = xv.shape[1] * xv.shape[3]
    mean = xv.sum(-1, keepdim=True).sum(1, keepdim=True) / d
    # Two passes (centre, then square): the one-pass formula loses float32 precision
    # when a patch's offset dwarfs its spread, as baseline wander makes it in ECG.
    z = xv - mean
    var = _sq_sum(z).view(mean.shape) / (d - 1)
    std = (var + eps).sqrt()
    z = z.div_(std)
    return pv - z, z, std


# ---- custom ops ----------------------------------------------------------------------------

@custom_op("fastecg::patch_gather")
def _patch_gather(x: Tensor, ids_keep: Tensor, patch_size: int, mode: int,
                  backend: str) -> Tensor:
    return kernel_for("patch_gather", x, backend)(x.contiguous(), ids_keep, patch_size, mode)


@_patch_gather.register_fake
def _(x, ids_keep, patch_size, mode, backend):
    b, c, _ = x.shape
    d = c * patch_size if mode == TEMPORAL else patch_size
    return x.new_empty(b, ids_keep.shape[1], d)


@custom_op("fastecg::patch_scatter")
def _patch_scatter(kept: Tensor, ids_keep: Tensor, patch_size: int, mode: int, n_leads: int,
                   n_samples: int, backend: str) -> Tensor:
    return kernel_for("patch_scatter", kept, backend)(kept.contiguous(), ids_keep, patch_size,
                                                      mode, n_leads, n_samples)


@_patch_scatter.register_fake
def _(kept, ids_keep, patch_size, mode, n_leads, n_samples, backend):
    return kept.new_empty(kept.shape[0], n_leads, n_samples)


def _gather_setup(ctx, inputs, output):
    x, ids_keep, patch_size, mode, backend = inputs
    ctx.save_for_backward(ids_keep)
    ctx.args = (patch_size, mode, x.shape[1], x.shape[2], backend)


def _gather_backward(ctx, grad):
    (ids_keep,) = ctx.saved_tensors
    patch_size, mode, n_leads, n_samples, backend = ctx.args
    # The gather is a selection: its adjoint writes the gradient back, zeros elsewhere.
    return _patch_scatter(grad, ids_keep, patch_size, mode, n_leads, n_samples,
                          backend), None, None, None, None


def _scatter_setup(ctx, inputs, output):
    _, ids_keep, patch_size, mode, _, _, backend = inputs
    ctx.save_for_backward(ids_keep)
    ctx.args = (patch_size, mode, backend)


def _scatter_backward(ctx, grad):
    (ids_keep,) = ctx.saved_tensors
    patch_size, mode, backend = ctx.args
    return (_patch_gather(grad, ids_keep, patch_size, mode, backend),
            None, None, None, None, None, None)


_patch_gather.register_autograd(_gather_backward, setup_context=_gather_setup)
_patch_scatter.register_autograd(_scatter_backward, setup_context=_scatter_setup)


@custom_op("fastecg::masked_recon_loss")
def _masked_recon_loss(pred: Tensor, x: Tensor, mask: Tensor, patch_size: int, mode: int,
                       norm_pix: bool, eps: float, backend: str) -> Tensor:
    loss = kernel_for("masked_recon_loss", x, backend)(pred, x.contiguous(), mask, patch_size,
                                                       mode, norm_pix, eps)
    return loss.to(pred.dtype)  # x may be wider (float32 beside a bf16 prediction)


@_masked_recon_loss.register_fake
def _(pred, x, mask, patch_size, mode, norm_pix, eps, backend):
    return pred.new_empty(())


@custom_op("fastecg::masked_recon_loss_backward")
def _masked_recon_loss_backward(grad: Tensor, pred: Tensor, x: Tensor, mask: Tensor,
                                patch_size: int, mode: int, norm_pix: bool, eps: float,
                                need_dx: bool, backend: str) -> tuple[Tensor, Tensor]:
    dpred, dx = kernel_for("masked_recon_loss_backward", x, backend)(
        grad, pred, x.contiguous(), mask, patch_size, mode, norm_pix, eps, need_dx)
    return dpred.to(pred.dtype), (dx.to(x.dtype) if need_dx else x.new_empty(0))


@_masked_recon_loss_backward.register_fake
def _(grad, pred, x, mask, patch_size, mode, norm_pix, eps, need_dx, backend):
    return pred.new_empty(pred.shape), x.new_empty(x.shape if need_dx else (0,))


def _loss_setup(ctx, inputs, output):
    pred, x, mask, patch_size, mode, norm_pix, eps, backend = inputs
    ctx.save_for_backward(pred, x, mask)
    ctx.args = (patch_size, mode, norm_pix, eps, backend)


def _loss_backward(ctx, grad):
    pred, x, mask = ctx.saved_tensors
    patch_size, mode, norm_pix, eps, backend = ctx.args
    need_dx = ctx.needs_input_grad[1]
    dpred, dx = _masked_recon_loss_backward(grad, pred, x, mask, patch_size, mode, norm_pix,
                                            eps, need_dx, backend)
    return dpred, dx if need_dx else None, None, None, None, None, None, None


_masked_recon_loss.register_autograd(_loss_backward, setup_context=_loss_setup)


def _loss_backward_setup(ctx, inputs, output):
    pass


def _loss_backward_backward(ctx, *grads):
    raise RuntimeError("masked_reconstruction_loss: its gradient is computed by its own kernel "
                       "and is not differentiable (no second derivative)")


# A formula, though it only refuses: torch.func.grad / vjp / jacrev run the loss's
# backward on tensors they track, where the stand-in torch.library gives an op without a
# formula is an autograd.Function that they reject, while EagerOp runs a registered one
# (under them, and a second derivative is then refused in words of the user's call).
_masked_recon_loss_backward.register_autograd(_loss_backward_backward,
                                              setup_context=_loss_backward_setup)


def masked_recon_loss_backward(grad: Tensor, pred: Tensor, x: Tensor, mask: Tensor,
                               patch_size: int, mode: int, norm_pix: bool, eps: float,
                               need_dx: bool = True):
    """Exact vector-Jacobian product of the masked loss with respect to pred and x
    (plain torch ops, traceable); dx empty unless need_dx."""
    x = x.contiguous()
    residual, z, std = _residual(pred, x, patch_size, mode, norm_pix, eps)
    b, g, l, p = residual.shape
    d = g * p
    weight = (grad * 2.0 / d) * mask / mask.sum()
    # Patches of weight 0 get exact zeros, whatever their (unread) values, as from the
    # kernels: NaN * 0 is NaN. (No mask at all: 0 / 0 weights, NaN on every backend.)
    unread = (weight == 0).view(b, 1, l, 1)
    dres = residual.mul_(weight.view(b, 1, l, 1)).masked_fill_(unread, 0.0)  # ours: in place
    # dpred may share dres's memory (reshape returns a view when strides allow): dres is
    # not written after this point.
    if mode == TEMPORAL:
        dpred = dres.permute(0, 2, 1, 3).reshape(b, l, d)
    else:
        dpred = dres.view(b, l, d)
    if not need_dx:
        return dpred, x.new_empty(0)
    if not norm_pix:
        return dpred, dres.neg().reshape(x.shape)
    # d target = -dres; z = (u - mean) / sqrt(var + eps), var unbiased over the D values
    # of a patch, so du = (dz - mean(dz) - z * sum(dz z) / (D - 1)) / std with dz = -dres.
    dres_mean = dres.sum(-1, keepdim=True).sum(1, keepdim=True) / d
    dres_z = (dres * z).sum(-1, keepdim=True).sum(1, keepdim=True) / (d - 1)
    dx = dres.sub(dres_mean).addcmul_(z, dres_z, value=-1.0).div_(std).neg_()
    return dpred, dx.masked_fill_(unread, 0.0).reshape(x.shape)


# ---- argument checks -------------------------------------------------------------------------

def _check_args(x: Tensor, patch_size: int, mask_ratio: float, mode: str, op: str) -> int:
    check_signal(x, op, min_dim=3)
    if x.dim() != 3:
        raise ValueError(f"{op}: expected x of shape (batch, n_leads, n_samples), got "
                         f"{tuple(x.shape)}")
    if isinstance(patch_size, bool) or not isinstance(patch_size, numbers.Integral) \
            or patch_size < 1:
        raise ValueError(f"{op}: patch_size must be a positive int, got {patch_size!r}")
    n = x.shape[-1]
    if n % patch_size:
        raise ValueError(f"{op}: n_samples={n} is not a multiple of patch_size={patch_size}; "
                         f"crop the signal to {n - n % patch_size} samples first "
                         f"(x[..., :{n - n % patch_size}])")
    if not isinstance(mask_ratio, numbers.Real) or not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"{op}: mask_ratio must be in [0, 1), got {mask_ratio!r}")
    if mode not in MASK_MODES:
        raise ValueError(f"{op}: unknown mode {mode!r}; expected one of {sorted(MASK_MODES)}")
    return MASK_MODES[mode]


def _argsort_noise(shape, x: Tensor, generator: Optional[torch.Generator]) -> Tensor:
    noise = torch.rand(shape, device=x.device, generator=generator)
    return noise.argsort(dim=-1)


def _draw_ids(x: Tensor, patch_size: int, mask_ratio: float, mode: int,
              generator: Optional[torch.Generator]):
    """ids_keep (B, L_keep), ids_restore (B, L), mask (B, L): argsort of uniform noise,
    so every subset of the same size is equally likely."""
    b, c, n = x.shape
    t = n // patch_size
    if mode == TEMPORAL:
        n_mask = round(t * mask_ratio)
        ids_shuffle = _argsort_noise((b, t), x, generator)
        ids_keep = ids_shuffle[:, :t - n_mask]
    else:
        # Per lead (lead_temporal) or per record over leads (lead): shuffle, then turn
        # (lead, patch) pairs into lead-major token ids; kept tokens come first.
        if mode == LEAD_TEMPORAL:
            n_mask = round(t * mask_ratio)
            order = _argsort_noise((b, c, t), x, generator)
            lead = torch.arange(c, device=x.device).view(1, c, 1)
            tok = order + lead * t
            n_keep = t - n_mask
            keep, drop = tok[:, :, :n_keep], tok[:, :, n_keep:]
        else:
            n_mask = round(c * mask_ratio)
            order = _argsort_noise((b, c), x, generator)
            tok = order.unsqueeze(-1) * t + torch.arange(t, device=x.device)
            n_keep = c - n_mask
            keep, drop = tok[:, :n_keep], tok[:, n_keep:]
        ids_keep = keep.flatten(1)  # (reshape(b, -1) is ambiguous for an empty batch)
        ids_shuffle = torch.cat([ids_keep, drop.flatten(1)], dim=1)
    ids_restore = ids_shuffle.argsort(dim=-1)
    n_tokens = ids_shuffle.shape[1]
    mask = (torch.arange(n_tokens, device=x.device) >= ids_keep.shape[1]).to(x.dtype)
    mask = mask.expand(b, n_tokens).gather(1, ids_restore)
    return ids_keep, ids_restore, mask


# ---- public functions ------------------------------------------------------------------------

def patch_mask(x: Tensor, patch_size: int, mask_ratio: float, mode: str = "temporal",
               generator: Optional[torch.Generator] = None, backend: str = "auto") -> PatchMask:
    """MAE random masking of ECG patches, with the kept patches gathered from `x`.

    Parameters
    ----------
    x : Tensor, shape (batch, n_leads, n_samples)
        float32/float64 (half types too), CPU or CUDA. ``n_samples`` must be a multiple
        of `patch_size` (crop first: the op never crops silently).
    patch_size : int
        Samples per patch ``P``.
    mask_ratio : float
        In ``[0, 1)``: exactly ``round(T * mask_ratio)`` of the ``T = n_samples // P``
        patches are masked per record (``temporal``), per lead (``lead_temporal``);
        ``round(n_leads * mask_ratio)`` whole leads per record (``lead``).
    mode : {"temporal", "lead_temporal", "lead"}, optional
        Token layout and masking unit; see the module docstring.
    generator : torch.Generator, optional
        Source of the uniform noise (on `x`'s device); the global one if None.
    backend : {"auto", "cuda", "triton", "cpu", "torch"}, optional

    Returns
    -------
    PatchMask
        ``kept (B, L_keep, D)``, ``mask (B, L)`` (1 = masked), ``ids_keep (B, L_keep)``,
        ``ids_restore (B, L)``. ``kept`` equals ``patchify(x)[b, ids_keep[b]]``; it is
        differentiable in `x` (the gradient scatters back to the kept samples).

    Raises
    ------
    ValueError
        Bad shape, a length not divisible by `patch_size`, `mask_ratio` outside
        ``[0, 1)``, an unknown `mode`.

    Notes
    -----
    Under ``torch.compile(fullgraph=True)`` leave `generator` None: Dynamo cannot trace a
    Generator object. Compiled code then draws from Inductor's own generator; set
    ``torch._inductor.config.fallback_random = True`` for the same draws as eager.

    Examples
    --------
    >>> out = patch_mask(torch.randn(2, 12, 5000), 50, 0.75)
    >>> out.kept.shape, out.mask.shape
    (torch.Size([2, 25, 600]), torch.Size([2, 100]))
    """
    code = _check_args(x, patch_size, mask_ratio, mode, "patch_mask")
    check_backend_name(backend)
    if not torch.compiler.is_compiling():
        resolve_backend("patch_gather", x, backend)
        check_no_tangent((x,), "patch_mask")
    ids_keep, ids_restore, mask = _draw_ids(x, patch_size, mask_ratio, code, generator)
    kept = _patch_gather(x, ids_keep, patch_size, code, backend)
    return PatchMask(kept, mask, ids_keep, ids_restore)


def masked_patch_embed(x: Tensor, weight: Tensor, bias: Optional[Tensor], pos_embed: Tensor,
                       patch_size: int, mask_ratio: float, mode: str = "temporal",
                       generator: Optional[torch.Generator] = None,
                       lead_embed: Optional[Tensor] = None, backend: str = "auto"):
    """Linear patch embedding of the kept patches only, plus positional (and lead)
    embeddings: ``tokens = kept @ weight.T + bias + pos_embed[t] (+ lead_embed[c])``.

    Parameters
    ----------
    x : Tensor, shape (batch, n_leads, n_samples)
    weight : Tensor, shape (embed_dim, D)
        ``D = n_leads * patch_size`` (``temporal``) or ``patch_size``.
    bias : Tensor, shape (embed_dim,), or None
    pos_embed : Tensor, shape (T, embed_dim) or (1, T, embed_dim)
        One row per time patch, shared by all leads in the lead modes.
    patch_size, mask_ratio, mode, generator, backend
        As :func:`patch_mask`.
    lead_embed : Tensor, shape (n_leads, embed_dim), optional
        Added to lead ``c``'s tokens (lead modes only).

    Returns
    -------
    tokens : Tensor, shape (batch, L_keep, embed_dim)
    mask : Tensor, shape (batch, L)
    ids_restore : Tensor, shape (batch, L)

    Notes
    -----
    Only the ``1 - mask_ratio`` kept patches are read and multiplied: the embedding
    FLOPs fall by ``1 / (1 - mask_ratio)`` against embedding every patch and dropping
    most of them. Gradients reach `x`, `weight`, `bias`, `pos_embed` and `lead_embed`.

    Examples
    --------
    >>> x = torch.randn(2, 12, 5000)
    >>> w, pos = torch.randn(256, 600), torch.randn(100, 256)
    >>> tokens, mask, ids_restore = masked_patch_embed(x, w, None, pos, 50, 0.75)
    >>> tokens.shape, mask.shape
    (torch.Size([2, 25, 256]), torch.Size([2, 100]))
    """
    code = _check_args(x, patch_size, mask_ratio, mode, "masked_patch_embed")
    t = x.shape[-1] // patch_size
    d = x.shape[1] * patch_size if code == TEMPORAL else patch_size
    if weight.dim() != 2 or weight.shape[1] != d:
        raise ValueError(f"masked_patch_embed: weight must be (embed_dim, {d}) for mode "
                         f"{mode!r} with {x.shape[1]} leads and patch_size {patch_size}, got "
                         f"{tuple(weight.shape)}")
    pos = pos_embed.reshape(-1, pos_embed.shape[-1])
    if pos.shape[0] != t or pos.shape[1] != weight.shape[0]:
        raise ValueError(f"masked_patch_embed: pos_embed must be ({t}, {weight.shape[0]}), got "
                         f"{tuple(pos_embed.shape)}")
    if lead_embed is not None and (code == TEMPORAL or lead_embed.shape[0] != x.shape[1]):
        raise ValueError(f"masked_patch_embed: lead_embed must be (n_leads={x.shape[1]}, "
                         f"embed_dim) and needs a lead mode, got {tuple(lead_embed.shape)} "
                         f"with mode {mode!r}")
    kept, mask, ids_keep, ids_restore = patch_mask(x, patch_size, mask_ratio, mode, generator,
                                                   backend)
    tokens = F.linear(kept, weight, bias)
    time_idx = ids_keep if code == TEMPORAL else ids_keep % t
    tokens = tokens + pos[time_idx]
    if lead_embed is not None:
        tokens = tokens + lead_embed[torch.div(ids_keep, t, rounding_mode="floor")]
    return tokens, mask, ids_restore


def masked_reconstruction_loss(pred: Tensor, x: Tensor, mask: Tensor, patch_size: int,
                               norm_pix: bool = True, mode: str = "temporal",
                               eps: float = NORM_PIX_EPS, backend: str = "auto") -> Tensor:
    r"""Mean squared error over masked patches only (MAE's loss), target read from `x`.

    .. math::

        \frac{\sum_{l} m_l \tfrac1D \lVert \hat y_l - y_l \rVert^2}{\sum_l m_l}, \qquad
        y_l = \frac{x_l - \bar x_l}{\sqrt{\operatorname{var}(x_l) + \epsilon}}
        \ \text{(norm\_pix; unbiased variance, as MAE)}

    Parameters
    ----------
    pred : Tensor, shape (batch, L, D)
        Reconstruction of every token, in token order (the layout of :func:`patchify`).
    x : Tensor, shape (batch, n_leads, n_samples)
        The unmasked signal.
    mask : Tensor, shape (batch, L)
        1 where masked (the loss's weights); at least one must be nonzero. A constant:
        one that requires grad raises ValueError.
    patch_size : int
    norm_pix : bool, optional
        Normalise each target patch by its own mean and standard deviation.
    mode : {"temporal", "lead_temporal", "lead"}, optional
    eps : float, optional

    Returns
    -------
    Tensor
        Scalar, pred's dtype. Exact gradients with respect to `pred` and `x`.

    Notes
    -----
    The compiled kernels (``cpu``, ``cuda``, ``triton``) read only the patches with a
    nonzero weight and accumulate each patch's statistics in float64 from `x` directly;
    the gradient is their own kernel too (not differentiable twice).

    Examples
    --------
    >>> x = torch.randn(2, 12, 5000)
    >>> mask = patch_mask(x, 50, 0.75).mask
    >>> pred = torch.randn(2, 100, 600, requires_grad=True)
    >>> loss = masked_reconstruction_loss(pred, x, mask, 50)
    >>> loss.backward()
    >>> loss.shape, pred.grad.shape
    (torch.Size([]), torch.Size([2, 100, 600]))
    """
    code = _check_args(x, patch_size, 0.0, mode, "masked_reconstruction_loss")
    l = num_tokens(x.shape[1], x.shape[2], patch_size, mode)
    d = x.shape[1] * patch_size if code == TEMPORAL else patch_size
    if tuple(pred.shape) != (x.shape[0], l, d):
        raise ValueError(f"masked_reconstruction_loss: pred must be {(x.shape[0], l, d)} for "
                         f"x {tuple(x.shape)} and mode {mode!r}, got {tuple(pred.shape)}")
    if tuple(mask.shape) != (x.shape[0], l):
        raise ValueError(f"masked_reconstruction_loss: mask must be {(x.shape[0], l)}, got "
                         f"{tuple(mask.shape)}")
    if norm_pix and d < 2:
        raise ValueError("masked_reconstruction_loss: norm_pix needs patches of 2+ values")
    check_backend_name(backend)
    if mask.requires_grad and torch.is_grad_enabled():
        raise ValueError("masked_reconstruction_loss: the mask requires grad, but gradients "
                         "with respect to it are not supported (the loss's backward returns "
                         "none for it); pass mask.detach()")
    if not torch.compiler.is_compiling():
        check_no_tangent((pred, x, mask), "masked_reconstruction_loss")
    # The mask's sum is a count: half types would round it (bfloat16 above 256).
    mask = mask.to(torch.promote_types(pred.dtype, torch.float32))
    return _masked_recon_loss(pred.contiguous(), x, mask, patch_size, code, bool(norm_pix),
                              float(eps), backend)
