"""MAE-1D: the masked autoencoder of He et al. (CVPR 2022) on multi-lead ECG, one token
per time patch (all leads of the patch)."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn

from fastecg.ops import masked_patch_embed, masked_reconstruction_loss
from fastecg.ops.patch_mask import patchify
from fastecg.registry import SSL

from ._vit import blocks, init_weights, sincos_1d
from .base import BaseMaskedAutoencoder, check_input, model_lead_names, signal_of
from .pretrained import Contract

__all__ = ["MAE1D"]


@SSL.register("mae_1d")
class MAE1D(BaseMaskedAutoencoder):
    """Masked autoencoder on time patches of multi-lead ECG.

    A ViT encoder sees only the kept patches (plus a class token); a light decoder gets
    the encoded tokens and a shared learnable mask token at each masked position and
    reconstructs every masked patch (all leads). The loss is the mean squared error on
    masked patches, each target normalised by its own mean and variance (``norm_pix``).

    Parameters
    ----------
    n_leads : int
        Leads the model is built for; a temporal token holds every lead, so inputs
        must have exactly this many.
    seq_len : int
        Samples per record; a multiple of `patch_size`. Shorter inputs (a multiple of
        `patch_size`) use the first position embeddings.
    patch_size : int
        Samples per token.
    embed_dim, depth, num_heads : int
        Encoder width, blocks, heads.
    decoder_dim, decoder_depth, decoder_heads : int
        Decoder width, blocks, heads.
    mask_ratio : float
        Fraction of patches masked, in ``(0, 1)``: ``round(T * mask_ratio)`` of an
        input's ``T`` patches, which must be at least one (the loss is a mean over the
        masked patches). When every patch is masked, the encoder sees the class token
        alone.
    norm_pix : bool
        Normalise each target patch (MAE's better-performing loss).
    fs : float
        Sampling rate of the input (the contract).
    lead_names : sequence of str, optional
        Lead order of the input (the contract); the standard order by default.
    preprocess : str or dict, optional
        Recipe name or PreprocManager config of the contract.

    Raises
    ------
    ValueError
        `mask_ratio` outside ``(0, 1)`` or masking no patch of even a `seq_len` input;
        at a step, input with a different number of leads, more samples than
        `seq_len`, a length not divisible by `patch_size`, or so few patches that
        `mask_ratio` masks none.

    Notes
    -----
    Two choices differ from MAE [1]_ and change what is trained:

    * The encoder and decoder position embeddings are learnable parameters initialised
      to the sine-cosine table (MAE keeps that table fixed); the class token's row is
      the table's position 0 (MAE's is zero) and the patches take positions 1 to ``T``.
    * ``round(T * mask_ratio)`` patches are masked (Python's round, half to even),
      where MAE's reference code keeps ``int(T * (1 - mask_ratio))`` and masks the
      rest, ``ceil(T * mask_ratio)``: one patch more than here whenever ``T *
      mask_ratio`` is not whole and rounds down (e.g. ``T = 30``, 0.75: 22 masked here,
      23 in MAE).

    References
    ----------
    .. [1] K. He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022.
    """

    method_name = "mae_1d"
    mask_mode = "temporal"

    def __init__(self, n_leads: int = 12, seq_len: int = 5000, patch_size: int = 50,
                 embed_dim: int = 256, depth: int = 6, num_heads: int = 8,
                 decoder_dim: int = 128, decoder_depth: int = 2, decoder_heads: int = 4,
                 mlp_ratio: float = 4.0, mask_ratio: float = 0.75, norm_pix: bool = True,
                 fs: float = 500.0, lead_names: Optional[Sequence[str]] = None,
                 preprocess: Any = None):
        super().__init__()
        if seq_len % patch_size:
            raise ValueError(f"mae_1d: seq_len={seq_len} is not a multiple of "
                             f"patch_size={patch_size}")
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mae_1d: mask_ratio must be in (0, 1), got {mask_ratio}")
        lead_names = model_lead_names(lead_names, n_leads, self.method_name)
        self.n_leads, self.seq_len, self.patch_size = n_leads, seq_len, patch_size
        self.mask_ratio, self.norm_pix, self.embed_dim = float(mask_ratio), norm_pix, embed_dim
        self._check_mask_count(n_leads, seq_len, at_step=False)
        n_tokens = seq_len // patch_size
        self.patch_embed = nn.Linear(n_leads * patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(sincos_1d(n_tokens + 1, embed_dim))  # row 0: cls
        self.blocks = blocks(embed_dim, depth, num_heads, mlp_ratio)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.decoder_embed = nn.Linear(embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos_embed = nn.Parameter(sincos_1d(n_tokens + 1, decoder_dim))
        self.decoder_blocks = blocks(decoder_dim, decoder_depth, decoder_heads, mlp_ratio)
        self.decoder_norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(decoder_dim, n_leads * patch_size)
        init_weights(self)
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        self._record(locals(), Contract(fs, lead_names, seq_len, preprocess))

    def _check(self, x: Tensor) -> None:
        check_input(x, self.n_leads, self.seq_len, self.patch_size, self.method_name)
        if x.shape[1] != self.n_leads:
            raise ValueError(f"mae_1d: input has {x.shape[1]} leads, the model was built for "
                             f"{self.n_leads} (a temporal token holds every lead)")

    def _encode(self, tokens: Tensor) -> Tensor:
        cls = (self.cls_token + self.pos_embed[:1]).expand(tokens.shape[0], -1, -1)
        h = torch.cat([cls, tokens], dim=1)
        for blk in self.blocks:
            h = blk(h)
        return self.norm(h)

    def pretrain_step(self, batch: Any, generator: Optional[torch.Generator] = None) -> dict:
        x = signal_of(batch)
        self._check(x)
        self._check_mask_count(x.shape[1], x.shape[2])
        t = x.shape[-1] // self.patch_size
        tokens, mask, ids_restore = masked_patch_embed(
            x, self.patch_embed.weight, self.patch_embed.bias, self.pos_embed[1:t + 1],
            self.patch_size, self.mask_ratio, "temporal", generator)
        h = self.decoder_embed(self._encode(tokens))
        b, k, d = h[:, 1:].shape
        seq = torch.cat([h[:, 1:], self.mask_token.expand(b, t - k, d)], dim=1)
        seq = seq.gather(1, ids_restore.unsqueeze(-1).expand(b, t, d))
        seq = torch.cat([h[:, :1], seq], dim=1) + self.decoder_pos_embed[:t + 1]
        for blk in self.decoder_blocks:
            seq = blk(seq)
        pred = self.decoder_pred(self.decoder_norm(seq))[:, 1:]
        loss = masked_reconstruction_loss(pred, x, mask, self.patch_size, self.norm_pix,
                                          "temporal")
        return {"loss": loss, "pred": pred, "mask": mask}

    def forward_features(self, x: Tensor) -> Tensor:
        """Encoder tokens of the whole (unmasked) record, ``(B, embed_dim, T)``."""
        self._check(x)
        t = x.shape[-1] // self.patch_size
        tokens = self.patch_embed(patchify(x, self.patch_size, "temporal")) + \
            self.pos_embed[1:t + 1]
        return self._encode(tokens)[:, 1:].transpose(1, 2)
