"""MAE-ECG: the masked-autoencoder family of Zhang et al. (MaeFE, 2022) for ECG: masked
time (MTAE), masked lead (MLAE) and masked lead-time (MLTAE) autoencoders, on the fused
masking ops and MAE-1D's transformer."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn

from fastecg.ops import masked_patch_embed, masked_reconstruction_loss
from fastecg.ops.patch_mask import patchify
from fastecg.registry import SSL

from ._vit import init_weights
from .base import check_input, signal_of
from .mae_1d import MAE1D

__all__ = ["MAEECG", "MAE_ECG_VARIANTS"]

MAE_ECG_VARIANTS = {"mtae": "temporal", "mlae": "lead", "mltae": "lead_temporal"}
"""Variant -> :func:`fastecg.ops.patch_mask` mode."""


@SSL.register("mae_ecg")
class MAEECG(MAE1D):
    """Masked autoencoders for ECG with temporal, lead or lead-temporal masking.

    * ``mtae`` (masked time): a token is one time patch of all leads; whole time
      patches are masked (MAE-1D's layout: ``mode="temporal"``).
    * ``mlae`` (masked lead): a token is one lead's patch; whole leads are masked, and
      the kept leads' patches reconstruct the masked leads (``mode="lead"``).
    * ``mltae`` (masked lead-time): a token is one lead's patch; each lead's patches are
      masked at random on their own (``mode="lead_temporal"``).

    In the lead variants a token is a linear embedding of one lead's patch plus a time
    position embedding shared by all leads plus a learnable lead embedding (in the
    encoder and again in the decoder). Everything else is :class:`~fastecg.ssl.MAE1D`:
    a class token, a ViT encoder on the kept tokens only (embedded by
    :func:`~fastecg.ops.masked_patch_embed`), a light decoder with a shared mask token at
    the masked positions, and the masked-patch MSE of
    :func:`~fastecg.ops.masked_reconstruction_loss` (targets normalised per patch with
    `norm_pix`).

    Parameters
    ----------
    n_leads : int
        Leads the model is built for; the lead variants also take fewer (the first ones,
        in order), ``mtae`` exactly this many.
    seq_len : int
        Samples per record, a multiple of `patch_size` (5000: 10 s at 500 Hz).
    variant : {"mtae", "mlae", "mltae"}
    mask_ratio : float
        In ``(0, 1)``: of time patches (``mtae``), of leads (``mlae``, at least one lead
        kept and one masked) or of each lead's patches (``mltae``); at least one patch
        (lead) must be masked. When ``mtae`` or ``mltae`` masks every patch, the encoder
        sees the class token alone.
    patch_size, embed_dim, depth, num_heads, mlp_ratio, norm_pix
        As :class:`~fastecg.ssl.MAE1D`.
    decoder_dim, decoder_depth, decoder_heads, fs, lead_names, preprocess
        As :class:`~fastecg.ssl.MAE1D`.

    Raises
    ------
    ValueError
        An unknown variant, `seq_len` not a multiple of `patch_size`, `mask_ratio`
        outside ``(0, 1)``, masking nothing in even the largest input, or (``mlae``)
        masking every lead of an `n_leads` input, hence of any input; at a step, bad
        input as :class:`~fastecg.ssl.MAE1D`, an input so short that no patch is
        masked, or a lead mask that keeps or masks no lead.

    References
    ----------
    .. [1] H. Zhang, W. Liu, J. Shi, S. Chang, H. Wang, J. He, Q. Huang, "MaeFE: Masked
       Autoencoders Family of Electrocardiogram for Self-Supervised Pretraining and
       Transfer Learning", IEEE Transactions on Instrumentation and Measurement 72, 2023.
    .. [2] K. He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022.

    Examples
    --------
    >>> import torch
    >>> model = MAEECG(n_leads=3, seq_len=200, variant="mltae", patch_size=20,
    ...                embed_dim=16, depth=1, num_heads=2, decoder_dim=8, decoder_depth=1,
    ...                decoder_heads=2)
    >>> out = model.pretrain_step(torch.randn(2, 3, 200))
    >>> out["pred"].shape, int(out["mask"].sum())  # 3 leads x 10 patches, 8 masked per lead
    (torch.Size([2, 30, 20]), 48)
    >>> model.embed(torch.randn(2, 3, 200)).shape
    torch.Size([2, 16])
    """

    method_name = "mae_ecg"

    def __init__(self, n_leads: int = 12, seq_len: int = 5000, variant: str = "mltae",
                 patch_size: int = 50, embed_dim: int = 256, depth: int = 6,
                 num_heads: int = 8, decoder_dim: int = 128, decoder_depth: int = 2,
                 decoder_heads: int = 4, mlp_ratio: float = 4.0, mask_ratio: float = 0.75,
                 norm_pix: bool = True, fs: float = 500.0,
                 lead_names: Optional[Sequence[str]] = None, preprocess: Any = None):
        if variant not in MAE_ECG_VARIANTS:
            raise ValueError(f"mae_ecg: variant must be one of {sorted(MAE_ECG_VARIANTS)}, got "
                             f"{variant!r}")
        if seq_len % patch_size:
            raise ValueError(f"mae_ecg: seq_len={seq_len} is not a multiple of "
                             f"patch_size={patch_size}")
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mae_ecg: mask_ratio must be in (0, 1), got {mask_ratio}")
        # Set before MAE1D's constructor, which checks mask_ratio against the variant's
        # masking unit (plain attributes may precede nn.Module.__init__).
        self.variant, self.mask_mode = variant, MAE_ECG_VARIANTS[variant]
        super().__init__(n_leads, seq_len, patch_size, embed_dim, depth, num_heads,
                         decoder_dim, decoder_depth, decoder_heads, mlp_ratio, mask_ratio,
                         norm_pix, fs, lead_names, preprocess)
        # A ratio that masks every lead of an n_leads input masks every lead of any
        # input (fewer leads round no lower relative to their count): refuse it now.
        self._check_lead_mask(n_leads)
        if self.mask_mode != "temporal":
            # Lead tokens: one lead's patch each, its lead told by a learnable embedding.
            self.patch_embed = nn.Linear(patch_size, embed_dim)
            self.decoder_pred = nn.Linear(decoder_dim, patch_size)
            init_weights(self.patch_embed)
            init_weights(self.decoder_pred)
            self.lead_embed = nn.Parameter(torch.zeros(n_leads, embed_dim))
            self.decoder_lead_embed = nn.Parameter(torch.zeros(n_leads, decoder_dim))
            nn.init.normal_(self.lead_embed, std=0.02)
            nn.init.normal_(self.decoder_lead_embed, std=0.02)
        self._record(locals(), self.contract)

    def _check(self, x: Tensor) -> None:
        check_input(x, self.n_leads, self.seq_len, self.patch_size, self.method_name)
        if self.mask_mode == "temporal" and x.shape[1] != self.n_leads:
            raise ValueError(f"mae_ecg: input has {x.shape[1]} leads, the model was built for "
                             f"{self.n_leads} (an mtae token holds every lead)")

    def _check_lead_mask(self, n_leads: int) -> None:
        n_mask = round(n_leads * self.mask_ratio)
        if self.mask_mode == "lead" and not 0 < n_mask < n_leads:
            raise ValueError(f"mae_ecg: mlae masks round({n_leads} leads x mask_ratio="
                             f"{self.mask_ratio}) = {n_mask} leads; it needs at least one "
                             f"masked and one kept lead")

    def _decoder_pos(self, c: int, t: int) -> Tensor:
        """Decoder position (and lead) embedding of every token in token order."""
        pos = self.decoder_pos_embed[1:t + 1]
        if self.mask_mode == "temporal":
            return pos
        return (self.decoder_lead_embed[:c].unsqueeze(1) + pos).reshape(c * t, -1)

    def pretrain_step(self, batch: Any, generator: Optional[torch.Generator] = None) -> dict:
        """``{"loss", "pred" (B, L, D), "mask" (B, L)}`` in the variant's token layout."""
        if self.mask_mode == "temporal":
            return super().pretrain_step(batch, generator)
        x = signal_of(batch)
        self._check(x)
        self._check_lead_mask(x.shape[1])
        self._check_mask_count(x.shape[1], x.shape[2])
        b, c, n = x.shape
        t = n // self.patch_size
        tokens, mask, ids_restore = masked_patch_embed(
            x, self.patch_embed.weight, self.patch_embed.bias, self.pos_embed[1:t + 1],
            self.patch_size, self.mask_ratio, self.mask_mode, generator,
            lead_embed=self.lead_embed[:c])
        h = self.decoder_embed(self._encode(tokens))
        n_tok, (k, d) = c * t, h[:, 1:].shape[1:]
        seq = torch.cat([h[:, 1:], self.mask_token.expand(b, n_tok - k, d)], dim=1)
        seq = seq.gather(1, ids_restore.unsqueeze(-1).expand(b, n_tok, d))
        seq = seq + self._decoder_pos(c, t)
        seq = torch.cat([h[:, :1] + self.decoder_pos_embed[:1], seq], dim=1)
        for blk in self.decoder_blocks:
            seq = blk(seq)
        pred = self.decoder_pred(self.decoder_norm(seq))[:, 1:]
        loss = masked_reconstruction_loss(pred, x, mask, self.patch_size, self.norm_pix,
                                          self.mask_mode)
        return {"loss": loss, "pred": pred, "mask": mask}

    def forward_features(self, x: Tensor) -> Tensor:
        """Encoder tokens of the whole (unmasked) record: ``(B, embed_dim, T)`` for
        ``mtae``, ``(B, embed_dim, C * T)`` (lead-major) for the lead variants."""
        if self.mask_mode == "temporal":
            return super().forward_features(x)
        self._check(x)
        b, c, n = x.shape
        t = n // self.patch_size
        tokens = self.patch_embed(patchify(x, self.patch_size, self.mask_mode)).view(b, c, t, -1)
        tokens = tokens + self.pos_embed[1:t + 1] + self.lead_embed[:c].unsqueeze(1)
        return self._encode(tokens.reshape(b, c * t, -1))[:, 1:].transpose(1, 2)
