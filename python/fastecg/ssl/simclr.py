"""SimCLR (Chen et al., ICML 2020) on ECG: two augmented views of each record, one
encoder, a projection head and the NT-Xent loss."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

from torch import Tensor

from fastecg.registry import SSL

from .base import BaseContrastiveLearner, build_augmenter, signal_of

__all__ = ["SimCLR"]


@SSL.register("simclr")
class SimCLR(BaseContrastiveLearner):
    """SimCLR: a simple framework for contrastive learning of representations.

    Both views of the batch come from one :meth:`AugmenterManager.views
    <fastecg.augmenters.AugmenterManager.views>` pass (each view of each record keyed by
    the seed, its position in the global batch and the view number), go through the
    encoder together, are average-pooled over time (:meth:`embed`, the representation
    ``h``) and projected by a two-layer MLP (``z``). The loss is NT-Xent between the
    views' projections with cosine similarity over `temperature`, every other record's
    views in the global batch being negatives (gathered from every rank under
    ``torch.distributed``).

    Parameters
    ----------
    encoder : str or dict
        Any :data:`fastecg.registry.BACKBONES` entry (name or config).
    n_leads : int
        Leads of the input (12: the standard order).
    seq_len : int
        Samples per record (the contract; inputs may be shorter, never longer).
    proj_dim : int
        Projection width.
    temperature : float
        NT-Xent temperature (0.1).
    augment : list, dict or AugmenterManager, optional
        The view augmentations (JSON config kept in ``config``); None: an ECG default
        (:data:`fastecg.ssl.base.DEFAULT_AUGMENT`: per-lead gain, baseline wander, white
        noise, time-outs, small shifts).
    fs, lead_names, preprocess
        The input contract (500 Hz, the standard leads, no preprocessing).

    Raises
    ------
    ValueError
        Input with another number of leads or more than `seq_len` samples, a global
        batch of one record.

    References
    ----------
    .. [1] T. Chen, S. Kornblith, M. Norouzi, G. Hinton, "A Simple Framework for
       Contrastive Learning of Visual Representations", ICML 2020.

    Examples
    --------
    >>> import torch
    >>> model = SimCLR({"name": "resnet18", "widths": [8, 8, 8, 8], "stem_channels": 8},
    ...                n_leads=3, seq_len=400, fs=100.0)
    >>> model.pretrain_step(torch.randn(4, 3, 400))["loss"].ndim
    0
    >>> model.embed(torch.randn(2, 3, 400)).shape
    torch.Size([2, 8])
    """

    method_name = "simclr"

    def __init__(self, encoder: Union[str, dict] = "resnet18", n_leads: int = 12,
                 seq_len: int = 5000, proj_dim: int = 128, temperature: float = 0.1,
                 augment: Any = None, fs: float = 500.0,
                 lead_names: Optional[Sequence[str]] = None, preprocess: Any = None):
        super().__init__(encoder, n_leads, proj_dim, temperature)
        contract = self._set_contract(seq_len, fs, lead_names, preprocess)
        self.augmenter, augment = build_augmenter(augment, fs, self.lead_names)
        self._record(locals(), contract)

    def views(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Two augmented views of `x` ``(B, n_leads, n_samples)``, from one pass."""
        v = self._augmented_views(x, 2)
        return v[0], v[1]

    def pretrain_step(self, batch: Any) -> dict:
        """``{"loss": NT-Xent}`` of a batch ``(B, n_leads, n_samples)`` or
        ``(signal, label, ...)``; both views through the encoder in one call."""
        x = signal_of(batch)
        self._check_signal(x)
        v = self._augmented_views(x, 2)
        z = self.projector(self.embed(v.flatten(0, 1)))
        z1, z2 = z.chunk(2)
        return {"loss": self.contrastive_loss(z1, z2)}
