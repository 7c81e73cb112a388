"""Cross-rank pieces of the contrastive losses: an all-gather that carries gradients back
to every rank, and the rank/world of the current process group.

With ``torch.distributed`` initialised and more than one process, a contrastive loss
gathers the projections of every rank, so each rank's anchors see the negatives of the
whole global batch. Each rank's loss is then the mean over its own anchors; the
gradient of the gathered tensor is summed over ranks on the way back (every rank's loss
depends on every rank's projections), and DistributedDataParallel's mean of the
parameter gradients turns that into the gradient of the loss on the global batch.
Batches must have the same size on every rank (the Trainer's sampler guarantees it).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["rank_and_world", "gather_with_grad", "gather_no_grad", "mean_over_ranks",
           "global_indices"]


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group; ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    """``cat([x of rank 0, x of rank 1, ...])`` along dim 0; the backward sums every
    rank's gradient of the gathered tensor and returns this rank's rows of it."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        rank, world = rank_and_world()
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x)
        ctx.rank, ctx.rows = rank, x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        if dist.get_backend() == dist.Backend.NCCL:
            out = grad.new_empty((ctx.rows,) + tuple(grad.shape[1:]))
            dist.reduce_scatter_tensor(out, grad)
            return out
        # gloo has no reduce-scatter: sum the whole gradient, keep this rank's rows.
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather_with_grad(x: Tensor) -> Tensor:
    """Rows of `x` from every rank, concatenated in rank order along dim 0, with
    gradients flowing back to each rank's own rows; `x` itself without a process group.

    Parameters
    ----------
    x : Tensor, shape (n, ...)
        The same shape on every rank.

    Returns
    -------
    Tensor, shape (world * n, ...)

    Examples
    --------
    >>> import torch
    >>> gather_with_grad(torch.ones(2, 3)).shape  # one process: x itself
    torch.Size([2, 3])
    """
    _, world = rank_and_world()
    if world == 1:
        return x
    return _GatherWithGrad.apply(x)


def gather_no_grad(x: Tensor) -> Tensor:
    """:func:`gather_with_grad` for tensors that need no gradient (keys of a momentum
    encoder, patient ids).

    Examples
    --------
    >>> gather_no_grad(torch.arange(3)).tolist()
    [0, 1, 2]
    """
    _, world = rank_and_world()
    if world == 1:
        return x
    x = x.detach().contiguous()
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x)
    return torch.cat(parts)


def mean_over_ranks(loss: Tensor) -> Tensor:
    """`loss` with the value of its mean over ranks and the gradient of this rank's own
    `loss`: a loss of the global batch to report, whose backward stays local.

    Examples
    --------
    >>> mean_over_ranks(torch.tensor(2.0)).item()
    2.0
    """
    _, world = rank_and_world()
    if world == 1:
        return loss
    total = loss.detach().clone()
    dist.all_reduce(total)
    return loss + (total / world - loss.detach())


def global_indices(n: int, device=None) -> Tensor:
    """Positions of this rank's `n` records in the global batch (rank-major), so that a
    per-record draw keyed by index is the same as one process on the global batch.

    Examples
    --------
    >>> global_indices(3).tolist()
    [0, 1, 2]
    """
    rank, _ = rank_and_world()
    return torch.arange(rank * n, (rank + 1) * n, device=device)
