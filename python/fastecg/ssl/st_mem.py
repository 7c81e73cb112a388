"""ST-MEM: spatio-temporal masked ECG modelling (Na et al., ICLR 2024), written from the
paper's description (the authors' code is CC BY-NC and is not used here)."""

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

__all__ = ["STMEM"]

_PAPER_SEQ_LEN = 2250


def _recipe_with_length(seq_len: int) -> dict:
    """The ``st_mem`` recipe cropping to `seq_len` samples instead of the paper's 2250, so
    that a model built for another length keeps a contract that produces its input."""
    from fastecg.preprocessors import PreprocManager

    config = PreprocManager.from_recipe("st_mem").to_config()
    for step in config["steps"]:
        if step["name"] == "crop_or_pad":
            step["length"] = seq_len
    return config


@SSL.register("st_mem")
class STMEM(BaseMaskedAutoencoder):
    """ST-MEM: each lead's patch is one token, so attention mixes leads and time.

    Every token is a linear embedding of one lead's patch plus a positional embedding
    shared by all leads (its time index) plus a learnable embedding of its lead. Each
    lead's token sequence is framed by separation (SEP) tokens at its start and end (a
    learnable SEP embedding plus the positions before the first and after the last
    patch, plus the lead embedding), which tells the encoder where a lead begins and
    ends whatever the lead set. Pretraining masks patches at random independently in
    each lead (`mask_ratio` of each lead's patches), the ViT encoder sees the kept
    tokens of all leads at once, and a decoder shared across leads reconstructs each
    lead's patches from that lead's encoded tokens and mask tokens (run per lead, with
    its own position, lead and SEP embeddings). The loss is the mean squared error on
    masked patches.

    Parameters
    ----------
    n_leads : int
        Leads the model is built for (12: the standard order). Inputs may have fewer
        leads (the first ones, in the same order), never more.
    seq_len : int
        Samples per lead; 2250 (9 s at 250 Hz) in the paper.
    patch_size : int
        Samples per patch (75: 0.3 s at 250 Hz).
    embed_dim, depth, num_heads : int
        Encoder (ViT-B in the paper: 768, 12, 12).
    decoder_dim, decoder_depth, decoder_heads : int
        Decoder (256, 4, 4).
    mask_ratio : float
        Fraction of each lead's patches masked (0.75), in ``(0, 1)``: ``round(T *
        mask_ratio)`` of an input's ``T`` patches per lead, which must be at least one
        (the loss is a mean over masked patches). When every patch of the leads is
        masked, the encoder sees their SEP tokens alone.
    norm_pix : bool
        Normalise each target patch by its mean and variance (off: the paper
        reconstructs the standardised signal itself).
    fs, lead_names, preprocess
        The input contract: 250 Hz, the standard leads, the ``st_mem`` recipe (its crop
        set to `seq_len` when that is not 2250; the recipe takes the 12 standard leads).

    Raises
    ------
    ValueError
        `seq_len` not a multiple of `patch_size`, `mask_ratio` outside ``(0, 1)`` or
        masking no patch of even a `seq_len` input; at a step, more leads or samples
        than the model takes, a length not divisible by `patch_size`, or so few
        patches that `mask_ratio` masks none.

    Notes
    -----
    Choices that differ from the MAE recipe ST-MEM builds on, and change what is
    trained:

    * Position embeddings (encoder and decoder) are learnable parameters initialised to
      the sine-cosine table, not a fixed table; the lead and SEP embeddings are
      learnable.
    * Each lead loses ``round(T * mask_ratio)`` patches (Python's round, half to even),
      where MAE-style code keeps ``int(T * (1 - mask_ratio))``: at the paper's setting
      (``T = 30`` patches, 0.75) that is 22 masked patches per lead here (73 %), 23
      there (77 %). Set ``mask_ratio=0.76`` for 23.

    References
    ----------
    .. [1] Y. Na, M. Park, Y. Tae, S. Joo, "Guiding Masked Representation Learning to
       Capture Spatio-Temporal Relationship of Electrocardiogram", ICLR 2024.
    """

    method_name = "st_mem"
    mask_mode = "lead_temporal"

    def __init__(self, n_leads: int = 12, seq_len: int = 2250, patch_size: int = 75,
                 embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                 decoder_dim: int = 256, decoder_depth: int = 4, decoder_heads: int = 4,
                 mlp_ratio: float = 4.0, mask_ratio: float = 0.75, norm_pix: bool = False,
                 fs: float = 250.0, lead_names: Optional[Sequence[str]] = None,
                 preprocess: Any = "st_mem"):
        super().__init__()
        if seq_len % patch_size:
            raise ValueError(f"st_mem: seq_len={seq_len} is not a multiple of "
                             f"patch_size={patch_size}")
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"st_mem: mask_ratio must be in (0, 1), got {mask_ratio}")
        lead_names = model_lead_names(lead_names, n_leads, self.method_name)
        self.n_leads, self.seq_len, self.patch_size = n_leads, seq_len, patch_size
        self.mask_ratio, self.norm_pix, self.embed_dim = float(mask_ratio), norm_pix, embed_dim
        self._check_mask_count(n_leads, seq_len, at_step=False)
        n_patches = seq_len // patch_size
        self.patch_embed = nn.Linear(patch_size, embed_dim)
        # Rows 0 and n_patches + 1 are the SEP positions around a lead's patches.
        self.pos_embed = nn.Parameter(sincos_1d(n_patches + 2, embed_dim))
        self.lead_embed = nn.Parameter(torch.zeros(n_leads, embed_dim))
        self.sep_embed = nn.Parameter(torch.zeros(embed_dim))
        self.blocks = blocks(embed_dim, depth, num_heads, mlp_ratio)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.decoder_embed = nn.Linear(embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(decoder_dim))
        self.decoder_pos_embed = nn.Parameter(sincos_1d(n_patches + 2, decoder_dim))
        self.decoder_lead_embed = nn.Parameter(torch.zeros(n_leads, decoder_dim))
        self.decoder_sep_embed = nn.Parameter(torch.zeros(decoder_dim))
        self.decoder_blocks = blocks(decoder_dim, decoder_depth, decoder_heads, mlp_ratio)
        self.decoder_norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(decoder_dim, patch_size)
        init_weights(self)
        for p in (self.lead_embed, self.sep_embed, self.mask_token, self.decoder_lead_embed,
                  self.decoder_sep_embed):
            nn.init.normal_(p, std=0.02)
        if preprocess == "st_mem" and seq_len != _PAPER_SEQ_LEN:
            preprocess = _recipe_with_length(seq_len)
        self._record(locals(), Contract(fs, lead_names, seq_len, preprocess))

    def _frame(self, tokens: Tensor, sep: Tensor, pos: Tensor, lead: Tensor) -> Tensor:
        """(B, C, K, D) tokens -> (B, C, K + 2, D) with SEP tokens around each lead."""
        b, c, _, d = tokens.shape
        first = (sep + pos[0] + lead).unsqueeze(1)  # (C, 1, D)
        last = (sep + pos[-1] + lead).unsqueeze(1)
        return torch.cat([first.expand(b, c, 1, d), tokens, last.expand(b, c, 1, d)], dim=2)

    def _encode(self, tokens: Tensor, t: int) -> Tensor:
        """(B, C, K, D) embedded tokens -> encoded (B, C, K + 2, D), SEP included."""
        c = tokens.shape[1]
        pos = torch.cat([self.pos_embed[:1], self.pos_embed[t + 1:t + 2]])
        h = self._frame(tokens, self.sep_embed, pos, self.lead_embed[:c])
        b, _, k2, d = h.shape
        h = h.reshape(b, c * k2, d)
        for blk in self.blocks:
            h = blk(h)
        return self.norm(h).view(b, c, k2, d)

    def pretrain_step(self, batch: Any, generator: Optional[torch.Generator] = None) -> dict:
        x = signal_of(batch)
        check_input(x, self.n_leads, self.seq_len, self.patch_size, self.method_name)
        self._check_mask_count(x.shape[1], x.shape[2])
        b, c, n = x.shape
        t = n // self.patch_size
        tokens, mask, ids_restore = masked_patch_embed(
            x, self.patch_embed.weight, self.patch_embed.bias, self.pos_embed[1:t + 1],
            self.patch_size, self.mask_ratio, "lead_temporal", generator,
            lead_embed=self.lead_embed[:c])
        k = tokens.shape[1] // c
        # The width spelt out: with every patch masked (k = 0) a -1 cannot be inferred,
        # and each lead goes on as its two SEP tokens alone (as MAE-1D's class token).
        h = self._encode(tokens.view(b, c, k, tokens.shape[-1]), t)[:, :, 1:-1]
        h = self.decoder_embed(h)
        d = h.shape[-1]
        h = h.reshape(b, c * k, d)
        seq = torch.cat([h, self.mask_token.expand(b, c * (t - k), d)], dim=1)
        seq = seq.gather(1, ids_restore.unsqueeze(-1).expand(b, c * t, d)).view(b, c, t, d)
        lead = self.decoder_lead_embed[:c]
        seq = seq + self.decoder_pos_embed[1:t + 1] + lead.unsqueeze(1)
        pos = torch.cat([self.decoder_pos_embed[:1], self.decoder_pos_embed[t + 1:t + 2]])
        seq = self._frame(seq, self.decoder_sep_embed, pos, lead)
        # One decoder shared by the leads: each lead's sequence is decoded on its own.
        seq = seq.reshape(b * c, t + 2, d)
        for blk in self.decoder_blocks:
            seq = blk(seq)
        pred = self.decoder_pred(self.decoder_norm(seq)[:, 1:-1]).reshape(b, c * t, -1)
        loss = masked_reconstruction_loss(pred, x, mask, self.patch_size, self.norm_pix,
                                          "lead_temporal")
        return {"loss": loss, "pred": pred, "mask": mask}

    def forward_features(self, x: Tensor) -> Tensor:
        """Encoder tokens of every lead's patches (SEP tokens dropped), ``(B, D, C*T)``."""
        check_input(x, self.n_leads, self.seq_len, self.patch_size, self.method_name)
        b, c, n = x.shape
        t = n // self.patch_size
        tokens = self.patch_embed(patchify(x, self.patch_size, "lead_temporal")).view(b, c, t, -1)
        tokens = tokens + self.pos_embed[1:t + 1] + self.lead_embed[:c].unsqueeze(1)
        h = self._encode(tokens, t)[:, :, 1:-1]
        return h.reshape(b, c * t, -1).transpose(1, 2)
