"""A 1-D Vision-Transformer-style encoder: patch-embedding conv, positional encoding,
pre-norm ``nn.TransformerEncoderLayer`` stack; tokens stay in the ``(batch, C, L)``
layout of the other backbones.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...registry import BACKBONES
from .._base import Backbone

__all__ = ["PositionalEncoding", "TransformerStage", "Transformer"]


class PositionalEncoding(nn.Module):
    """Adds a positional encoding to tokens ``(batch, channels, n_tokens)``, for any
    ``n_tokens``.

    Parameters
    ----------
    channels : int
        Token width.
    kind : {"sincos", "learned", "none"}, optional
        ``"sincos"``: the fixed sinusoids of [1]_, computed on the fly for the input's
        length (nothing stored in the state dict); ``"learned"``: a table of
        ``max_len`` learned vectors, linearly interpolated to other lengths; ``"none"``.
    max_len : int, optional
        Positions of the learned table (the token count of the usual input).
    dropout : float, optional
        Dropout after adding the encoding.

    References
    ----------
    .. [1] A. Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
    """

    def __init__(self, channels: int, kind: str = "sincos", max_len: int = 200,
                 dropout: float = 0.0):
        super().__init__()
        if kind not in ("sincos", "learned", "none"):
            raise ValueError(f"kind must be 'sincos', 'learned' or 'none', got {kind!r}")
        self.kind = kind
        self.channels = channels
        if kind == "sincos":
            half = (channels + 1) // 2
            inv_freq = torch.exp(torch.arange(half, dtype=torch.float32)
                                 * (-2.0 * math.log(10000.0) / channels))
            self.register_buffer("inv_freq", inv_freq, persistent=False)
        elif kind == "learned":
            if max_len < 1:
                raise ValueError(f"max_len must be >= 1, got {max_len}")
            self.pos_embed = nn.Parameter(torch.zeros(1, channels, max_len))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.drop = nn.Dropout(dropout)

    def encoding(self, n_tokens: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        """The ``(1, channels, n_tokens)`` encoding (zeros for ``kind="none"``)."""
        if self.kind == "sincos":
            pos = torch.arange(n_tokens, device=device, dtype=torch.float32)
            angles = self.inv_freq[:, None] * pos[None, :]
            # interleave sin/cos channel pairs, as in [1]
            pe = torch.stack([angles.sin(), angles.cos()], dim=1).flatten(0, 1)
            return pe[None, : self.channels].to(dtype)
        if self.kind == "learned":
            pe = self.pos_embed
            if n_tokens != pe.shape[-1]:
                pe = F.interpolate(pe, size=n_tokens, mode="linear", align_corners=False)
            return pe.to(dtype)
        return torch.zeros(1, self.channels, n_tokens, dtype=dtype, device=device)

    def forward(self, x: Tensor) -> Tensor:
        if self.kind != "none":
            x = x + self.encoding(x.shape[-1], x.dtype, x.device)
        return self.drop(x)

    def output_length(self, seq_len: int) -> int:
        return seq_len


def _pre_norm_layer(layer: nn.TransformerEncoderLayer, x: Tensor) -> Tensor:
    """``layer(x)`` by its documented pre-norm composition, never the fused inference
    kernel: Inductor mis-strides that kernel's output for a transposed input
    (pytorch/pytorch#196251, open in torch 2.13), so compiled code takes this path."""
    h = layer.norm1(x)
    x = x + layer.dropout1(layer.self_attn(h, h, h, need_weights=False)[0])
    h = layer.linear2(layer.dropout(layer.activation(layer.linear1(layer.norm2(x)))))
    return x + layer.dropout2(h)


class TransformerStage(nn.Module):
    """A stack of ``nn.TransformerEncoderLayer`` (batch-first, pre-norm) applied to
    ``(batch, C, L)`` tokens, optionally followed by a final ``LayerNorm`` (needed after
    the last pre-norm layer).

    Parameters
    ----------
    layers : list of nn.TransformerEncoderLayer
        Applied in order; batch-first and pre-norm (``norm_first=True``).
    final_norm : bool, optional
        Append a ``LayerNorm`` over channels.

    Shapes: ``(batch, C, L) -> (batch, C, L)``.
    """

    def __init__(self, layers, final_norm: bool = False):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        if not all(layer.norm_first for layer in self.layers):
            raise ValueError("TransformerStage takes pre-norm layers (norm_first=True)")
        width = self.layers[0].linear1.in_features
        self.norm = nn.LayerNorm(width) if final_norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x.transpose(1, 2)
        compiling = torch.compiler.is_compiling()
        for layer in self.layers:
            x = _pre_norm_layer(layer, x) if compiling else layer(x)
        return self.norm(x).transpose(1, 2)

    def output_length(self, seq_len: int) -> int:
        return seq_len


@BACKBONES.register("transformer")
class Transformer(Backbone):
    """Transformer encoder [1]_ over ECG patches (ViT [2]_ in 1-D).

    A ``Conv1d(in_channels, embed_dim, patch_size, stride=patch_size)`` turns the
    signal into ``floor(L / patch_size)`` tokens; a positional encoding is added; then
    ``depth`` pre-norm encoder layers (one stage each; a final ``LayerNorm`` closes the
    last stage).

    Parameters
    ----------
    in_channels : int, optional
        Leads on dim 1.
    embed_dim : int, optional
        Token width.
    depth : int, optional
        Encoder layers.
    num_heads : int, optional
        Attention heads; must divide ``embed_dim``.
    mlp_ratio : float, optional
        Feed-forward width relative to ``embed_dim``.
    patch_size : int, optional
        Samples per token (25 = 50 ms at 500 Hz: 200 tokens for 10 s).
    pos_embed : {"sincos", "learned", "none"}, optional
        Positional encoding, see :class:`PositionalEncoding`; both work for any length.
    max_len : int, optional
        Tokens of the learned table (``pos_embed="learned"``).
    dropout : float, optional
        Dropout of the encoding, attention and feed-forward.
    act : {"gelu", "relu"}, optional
        Feed-forward activation.

    Notes
    -----
    Output ``(batch, embed_dim, floor(L / patch_size))``; ``min_seq_len == patch_size``.
    Default size: 1.2 M parameters (ViT-Tiny-like width 128, 4 heads, 6 layers).

    References
    ----------
    .. [1] A. Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
    .. [2] A. Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image
       Recognition at Scale", ICLR 2021.

    Examples
    --------
    >>> BACKBONES.build("transformer").compute_features_output_shape(5000, 2)
    (2, 128, 200)
    """

    def __init__(self, in_channels: int = 12, embed_dim: int = 128, depth: int = 6,
                 num_heads: int = 4, mlp_ratio: float = 4.0, patch_size: int = 25,
                 pos_embed: str = "sincos", max_len: int = 200, dropout: float = 0.1,
                 act: str = "gelu"):
        super().__init__(in_channels)
        if embed_dim % num_heads:
            raise ValueError(f"num_heads={num_heads} does not divide embed_dim={embed_dim}")
        if depth < 1 or patch_size < 1:
            raise ValueError(f"depth and patch_size must be >= 1, got {depth}, {patch_size}")
        self.stem = nn.Sequential(
            nn.Conv1d(in_channels, embed_dim, patch_size, stride=patch_size),
            PositionalEncoding(embed_dim, pos_embed, max_len, dropout),
        )
        self.stages = nn.ModuleList(
            TransformerStage([nn.TransformerEncoderLayer(
                embed_dim, num_heads, int(embed_dim * mlp_ratio), dropout, act,
                batch_first=True, norm_first=True)], final_norm=i == depth - 1)
            for i in range(depth))
        self._finish([embed_dim] * depth)
