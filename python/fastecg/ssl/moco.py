"""MoCo v2 (Chen et al., 2020) and v3 (Chen, Xie & He, ICCV 2021) on ECG: a query encoder
trained by gradient, a key encoder that follows it by a moving average, and InfoNCE
against a queue of past keys (v2) or the other keys of the global batch (v3)."""

from __future__ import annotations

import copy
from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from fastecg.registry import SSL

from ._distributed import gather_no_grad, mean_over_ranks, rank_and_world
from .base import BaseContrastiveLearner, build_augmenter, loss_in_float32, signal_of

__all__ = ["MoCo", "queue_info_nce", "momentum_update"]

_DEFAULT_MOMENTUM = {2: 0.999, 3: 0.99}


def momentum_update(key_params: Sequence[Tensor], query_params: Sequence[Tensor],
                    momentum: float) -> None:
    """``k <- momentum * k + (1 - momentum) * q`` for every pair, in one
    ``torch._foreach_lerp_`` call (one fused kernel launch per device and dtype instead
    of one per parameter).

    Parameters
    ----------
    key_params, query_params : sequence of Tensor
        Matching lists (same shapes); `key_params` are written in place.
    momentum : float
        In ``[0, 1]``.

    Examples
    --------
    >>> import torch
    >>> k, q = [torch.zeros(2)], [torch.ones(2)]
    >>> momentum_update(k, q, 0.9)
    >>> k[0]
    tensor([0.1000, 0.1000])
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
    with torch.no_grad():
        torch._foreach_lerp_(list(key_params), list(query_params), 1.0 - momentum)


@loss_in_float32
def queue_info_nce(q: Tensor, k: Tensor, queue: Tensor, temperature: float) -> Tensor:
    """MoCo's InfoNCE: each query's positive is its own key, its negatives the queue.

    .. math::

        \\mathcal L = -\\frac1n \\sum_i \\log \\frac{\\exp(q_i \\cdot k_i / \\tau)}
        {\\exp(q_i \\cdot k_i / \\tau) + \\sum_j \\exp(q_i \\cdot u_j / \\tau)}

    Parameters
    ----------
    q, k : Tensor, shape (n, D)
        L2-normalised queries and keys (keys carry no gradient in MoCo).
    queue : Tensor, shape (K, D)
        L2-normalised negatives ``u_j``.
    temperature : float

    Returns
    -------
    Tensor
        Scalar, the mean over the `n` queries; float32 (float64 for float64 input),
        computed outside autocast (see :func:`~fastecg.ssl.base.loss_in_float32`).

    Examples
    --------
    >>> import torch
    >>> q = k = torch.tensor([[1.0, 0.0]])
    >>> round(queue_info_nce(q, k, torch.tensor([[0.0, 1.0]]), 1.0).item(), 4)
    0.3133
    """
    l_pos = (q * k).sum(1, keepdim=True)
    l_neg = q @ queue.T
    logits = torch.cat([l_pos, l_neg], dim=1) / temperature
    target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return nn.functional.cross_entropy(logits, target)


@SSL.register("moco")
class MoCo(BaseContrastiveLearner):
    """MoCo: momentum contrast, version 2 (queue) or 3 (no queue, symmetric, predictor).

    A query encoder (the encoder and projector, trained by gradient) and a key encoder
    (their copies, updated only as ``k <- m k + (1 - m) q`` at the start of each
    optimizer step's first training micro-batch, in one ``torch._foreach_lerp_`` over the
    parameter lists) see two augmented views of each record, made in one
    :meth:`AugmenterManager.views <fastecg.augmenters.AugmenterManager.views>` pass. A
    step's micro-batches are ``grad_accum`` (1: every training call, as the paper's
    loop; the :class:`~fastecg.train.Trainer` sets its own), so that gradient
    accumulation over k micro-batches moves the key encoder once (momentum m), not k
    times (an effective ``m ** k``). Calls without gradients (a validation loss in
    training mode) leave it and the queue alone.

    * ``version=2``: the query of view 1 against the key of view 2 (positive) and a queue
      of `queue_size` keys of past batches (negatives); InfoNCE with `temperature`; the
      batch's keys (from every rank under ``torch.distributed``) then replace the oldest
      ones. The queue must hold a whole number of global batches.
    * ``version=3``: no queue. A prediction head (two-layer MLP) follows the query
      projector; each view's prediction is scored against the keys of the other view of
      every record in the global batch (gathered from every rank), symmetrised:
      ``ctr(q1, k2) + ctr(q2, k1)``, each ``ctr`` scaled by ``2 * temperature`` as in the
      paper.

    Parameters
    ----------
    encoder : str or dict
        Any :data:`fastecg.registry.BACKBONES` entry.
    n_leads, seq_len : int
        Input leads and (at most) samples.
    version : {2, 3}
    proj_dim : int
        Projection (and prediction) width.
    temperature : float
        0.2 (MoCo v2's; MoCo v3's for ViTs).
    momentum : float, optional
        Of the key encoder; 0.999 for v2 and 0.99 for v3 by default.
    queue_size : int
        Keys in the v2 queue; a multiple of the global batch (unused by v3).
    augment, fs, lead_names, preprocess
        As :class:`~fastecg.ssl.SimCLR`.

    Raises
    ------
    ValueError
        A bad `version` or `momentum`; at a step, a global batch of one record or one
        that does not divide `queue_size` (v2), input with another number of leads or
        more than `seq_len` samples.

    Notes
    -----
    The heads have no BatchNorm (the papers' heads do, with statistics synchronised
    across devices in v3): without it the loss under DistributedDataParallel equals the
    one-process loss on the global batch. Batch-norm layers inside a convolutional
    encoder see each rank's batch; MoCo's shuffled BN is not done, so in v2 a positive
    key shares the batch statistics of its batch, which the queue's older keys do not
    (the leak MoCo's shuffling removes): prefer an encoder without BatchNorm there.

    Also unlike the papers:

    * `momentum` stays constant. MoCo v3 raises it to 1 over training by a half-cycle
      cosine; to do that, set ``model.momentum = 1 - (1 - m0) * (1 + cos(pi * t / T))
      / 2`` before step ``t`` of ``T``.
    * In v3 both views go through the query encoder in one call, and through the key
      encoder in one call, so batch-norm layers of the encoder normalise over both
      views together (``2 B`` records); the paper encodes each view on its own.
    * The projector is the two-layer MLP of the encoder's width of
      :class:`~fastecg.ssl.base.BaseContrastiveLearner` (v3's is three layers of
      4096), and the predictor's hidden layer is the encoder's width.

    References
    ----------
    .. [1] K. He, H. Fan, Y. Wu, S. Xie, R. Girshick, "Momentum Contrast for Unsupervised
       Visual Representation Learning", CVPR 2020.
    .. [2] X. Chen, H. Fan, R. Girshick, K. He, "Improved Baselines with Momentum
       Contrastive Learning", arXiv:2003.04297, 2020.
    .. [3] X. Chen, S. Xie, K. He, "An Empirical Study of Training Self-Supervised Vision
       Transformers", ICCV 2021.

    Examples
    --------
    >>> import torch
    >>> enc = {"name": "resnet18", "widths": [8, 8, 8, 8], "stem_channels": 8}
    >>> model = MoCo(enc, n_leads=3, seq_len=400, queue_size=16, fs=100.0)
    >>> model.pretrain_step(torch.randn(4, 3, 400))["loss"].ndim
    0
    >>> MoCo(enc, n_leads=3, seq_len=400, version=3, fs=100.0).embed(
    ...     torch.randn(2, 3, 400)).shape
    torch.Size([2, 8])
    """

    method_name = "moco"

    def __init__(self, encoder: Union[str, dict] = "resnet18", n_leads: int = 12,
                 seq_len: int = 5000, version: int = 2, proj_dim: int = 128,
                 temperature: float = 0.2, momentum: Optional[float] = None,
                 queue_size: int = 4096, augment: Any = None, fs: float = 500.0,
                 lead_names: Optional[Sequence[str]] = None, preprocess: Any = None):
        if version not in (2, 3):
            raise ValueError(f"moco: version must be 2 or 3, got {version!r}")
        m = _DEFAULT_MOMENTUM[version] if momentum is None else momentum
        if not 0.0 <= m <= 1.0:
            raise ValueError(f"moco: momentum must be in [0, 1], got {momentum!r}")
        if version == 2 and (isinstance(queue_size, bool) or not isinstance(queue_size, int)
                             or queue_size < 1):
            raise ValueError(f"moco: queue_size must be a positive int, got {queue_size!r}")
        super().__init__(encoder, n_leads, proj_dim, temperature)
        contract = self._set_contract(seq_len, fs, lead_names, preprocess)
        self.augmenter, augment = build_augmenter(augment, fs, self.lead_names)
        self.version, self.momentum = version, float(m)
        width = self.encoder.out_channels
        if version == 3:
            self.predictor = nn.Sequential(nn.Linear(proj_dim, width), nn.ReLU(inplace=True),
                                           nn.Linear(width, proj_dim))
        self.momentum_encoder = copy.deepcopy(self.encoder)
        self.momentum_projector = copy.deepcopy(self.projector)
        for p in self._key_params():
            p.requires_grad_(False)
        # Training calls with gradients so far: the key encoder moves at each multiple
        # of grad_accum. (A Trainer checkpoint falls between optimizer steps, where the
        # count is a multiple again, so a resumed run starting it at 0 agrees.)
        self._micro_batches = 0
        if version == 2:
            self.queue_size = queue_size
            queue = nn.functional.normalize(torch.randn(queue_size, proj_dim), dim=1)
            self.register_buffer("queue", queue)
            self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self._record(locals(), contract)

    def _query_params(self) -> list:
        return list(self.encoder.parameters()) + list(self.projector.parameters())

    def _key_params(self) -> list:
        return list(self.momentum_encoder.parameters()) + \
            list(self.momentum_projector.parameters())

    def update_key_encoder(self) -> None:
        """One momentum step of the key encoder towards the query encoder."""
        momentum_update(self._key_params(), self._query_params(), self.momentum)

    def _keys(self, v: Tensor) -> Tensor:
        with torch.no_grad():
            h = self.momentum_encoder.forward_features(v).mean(-1)
            return nn.functional.normalize(self.momentum_projector(h), dim=1)

    def _check_queue(self, n: int) -> None:
        world = rank_and_world()[1]
        if self.queue_size % (n * world):
            raise ValueError(f"moco: queue_size={self.queue_size} is not a multiple of the "
                             f"global batch ({n} records x {world} processes = {n * world}); "
                             f"choose a batch size that divides it")

    def _enqueue(self, keys: Tensor) -> None:
        """Replace the oldest keys with `keys` (every rank's, so the queues agree), with
        tensor indices: no host sync for the pointer."""
        keys = gather_no_grad(keys)
        idx = self.queue_ptr + torch.arange(keys.shape[0], device=keys.device)
        self.queue.index_copy_(0, idx % self.queue_size, keys.to(self.queue.dtype))
        self.queue_ptr.copy_((self.queue_ptr + keys.shape[0]) % self.queue_size)

    @loss_in_float32
    def _batch_info_nce(self, q: Tensor, k: Tensor) -> Tensor:
        """v3's InfoNCE: query i against the keys of the global batch, its own positive,
        scaled by ``2 * temperature``."""
        rank, _ = rank_and_world()
        keys = gather_no_grad(k)
        logits = nn.functional.normalize(q, dim=1) @ keys.T / self.temperature
        target = torch.arange(q.shape[0], device=q.device) + rank * q.shape[0]
        return nn.functional.cross_entropy(logits, target) * (2 * self.temperature)

    def pretrain_step(self, batch: Any) -> dict:
        """``{"loss": ...}`` of a batch ``(B, n_leads, n_samples)`` or ``(signal, ...)``;
        in training mode with gradients enabled, first (at an optimizer step's first
        micro-batch) a momentum step of the key encoder and (v2) afterwards the batch's
        keys into the queue."""
        x = signal_of(batch)
        self._check_signal(x)
        if self.version == 2:
            self._check_queue(x.shape[0])
        v = self._augmented_views(x, 2)
        # A training call: not one without gradients (a validation loss in training
        # mode), which leaves the key encoder and the queue alone.
        training = self.training and torch.is_grad_enabled()
        if training:
            if self._micro_batches % max(1, int(self.grad_accum)) == 0:
                self.update_key_encoder()
            self._micro_batches += 1
        if self.version == 2:
            q = nn.functional.normalize(self.projector(self.embed(v[0])), dim=1)
            k = self._keys(v[1])
            # a copy: the in-place enqueue below must not touch what backward reads
            loss = queue_info_nce(q, k, self.queue.clone(), self.temperature)
            if training:
                self._enqueue(k)
        else:
            q1, q2 = self.predictor(self.projector(self.embed(v.flatten(0, 1)))).chunk(2)
            k1, k2 = self._keys(v.flatten(0, 1)).chunk(2)
            loss = self._batch_info_nce(q1, k2) + self._batch_info_nce(q2, k1)
        return {"loss": mean_over_ranks(loss)}
