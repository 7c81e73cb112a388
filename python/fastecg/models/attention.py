"""Attention layers over feature maps ``(batch, channels, length)`` (``ATTN_LAYERS``).

Each layer is also registered under torch_ecg's names (``sa``, ``se`` and
``se_block``, ``gc``, ``nl``), so that a torch_ecg config's ``attn`` name builds the
same class.

Every layer keeps the shape of its input, so that it can sit between a backbone (or an
RNN) and a pooling head, and defines ``output_length(seq_len) = seq_len`` for the
length bookkeeping of :mod:`fastecg.models._base`.

>>> from fastecg.registry import ATTN_LAYERS
>>> layer = ATTN_LAYERS.build({"name": "non_local", "reduction": 0.5}, channels=64)
>>> layer(torch.randn(2, 64, 100)).shape
torch.Size([2, 64, 100])
"""

from __future__ import annotations

import math
import numbers
from typing import Optional

import torch
from torch import Tensor, nn

from ..registry import ATTN_LAYERS
from ._layers import ACTIVATIONS, SqueezeExcite

__all__ = ["SelfAttention", "SqueezeExcitation", "GlobalContext", "NonLocal"]


def _check_channels(channels: int) -> int:
    if int(channels) < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    return int(channels)


def _check_reduction(reduction: float) -> float:
    """The hidden width as a fraction of the channels. A value in ``(0, 1]`` is that
    fraction; one above 1 is torch_ecg's (and the papers') ratio ``r``, width
    ``channels / r`` (``reduction=16`` is ``1/16``): taken as a fraction it would build a
    layer ``r`` times wider than its input."""
    if isinstance(reduction, bool) or not isinstance(reduction, numbers.Real) or \
            not 0 < reduction < math.inf:
        raise ValueError(f"reduction must be a fraction of the channels in (0, 1] or a "
                         f"ratio r > 1 (width channels / r, as torch_ecg's reduction=16), "
                         f"got {reduction!r}")
    return float(reduction) if reduction <= 1 else 1.0 / float(reduction)


class _KeepsLength(nn.Module):
    def output_length(self, seq_len: int) -> int:
        return seq_len


@ATTN_LAYERS.register("self_attention")
@ATTN_LAYERS.register("sa")  # torch_ecg's name
class SelfAttention(_KeepsLength):
    """Multi-head self-attention over time (Vaswani et al. 2017), pre-norm residual.

    ``y = x + MHA(LN(x))`` with tokens the ``length`` time steps and features the
    ``channels``; no positional encoding (the convolutional features carry position).

    Parameters
    ----------
    channels : int
        Channels of the input (the embedding size).
    num_heads : int, optional
        Heads; must divide ``channels``. Default: the largest of 8, 4, 2, 1 that does.
    dropout : float, optional
        Dropout on the attention weights.
    residual : bool, optional
        Add the input back (default). ``False`` returns ``MHA(LN(x))`` alone.

    Raises
    ------
    ValueError
        If ``num_heads`` does not divide ``channels``.

    Examples
    --------
    >>> import torch
    >>> from fastecg.models.attention import SelfAttention
    >>> layer = SelfAttention(64, num_heads=4)
    >>> layer(torch.randn(2, 64, 100)).shape             # (batch, channels, length) kept
    torch.Size([2, 64, 100])
    """

    def __init__(self, channels: int, num_heads: Optional[int] = None, dropout: float = 0.0,
                 residual: bool = True):
        super().__init__()
        channels = _check_channels(channels)
        if num_heads is None:
            num_heads = next(h for h in (8, 4, 2, 1) if channels % h == 0)
        if num_heads < 1 or channels % num_heads:
            raise ValueError(f"num_heads={num_heads} must be >= 1 and divide "
                             f"channels={channels}")
        self.norm = nn.LayerNorm(channels)
        self.attn = nn.MultiheadAttention(channels, num_heads, dropout=dropout,
                                          batch_first=True)
        self.residual = bool(residual)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.norm(x.transpose(1, 2))  # (batch, length, channels)
        out, _ = self.attn(tokens, tokens, tokens, need_weights=False)
        out = out.transpose(1, 2)
        return x + out if self.residual else out


@ATTN_LAYERS.register("squeeze_excitation")
@ATTN_LAYERS.register("se")  # torch_ecg's name
@ATTN_LAYERS.register("se_block")  # torch_ecg's name
class SqueezeExcitation(SqueezeExcite):
    """Squeeze-and-excitation channel gating (Hu et al. 2018): ``x * sigmoid(MLP(mean_t x))``.

    Parameters
    ----------
    channels : int
        Channels of the input.
    reduction : float, optional
        Hidden width of the gate as a fraction of ``channels`` in ``(0, 1]`` (1/16 in the
        paper), or torch_ecg's ratio above 1 (``reduction=16`` is the same as ``1/16``).
    act : str, optional
        Activation between the two 1x1 convolutions (an ``ACTIVATIONS`` name).

    Examples
    --------
    >>> import torch
    >>> from fastecg.models.attention import SqueezeExcitation
    >>> x = torch.randn(2, 64, 100)
    >>> y = SqueezeExcitation(64)(x)
    >>> y.shape, bool(((y / x) - (y / x)[..., :1]).abs().max() < 1e-4)   # one gain per channel
    (torch.Size([2, 64, 100]), True)
    """

    def __init__(self, channels: int, reduction: float = 1 / 16, act: str = "relu"):
        super().__init__(_check_channels(channels), reduction=_check_reduction(reduction),
                         act=act)


@ATTN_LAYERS.register("global_context")
@ATTN_LAYERS.register("gc")  # torch_ecg's name
class GlobalContext(_KeepsLength):
    """Global context block (GCNet, Cao et al. 2019), additive fusion.

    Context: ``c = sum_t softmax_t(w^T x_t) x_t``; transform:
    ``1x1 conv -> LayerNorm -> ReLU -> 1x1 conv``; output ``x + transform(c)``
    (broadcast over time). The last convolution starts at zero so that a fresh block
    is the identity.

    Parameters
    ----------
    channels : int
        Channels of the input.
    reduction : float, optional
        Bottleneck width as a fraction of ``channels`` in ``(0, 1]`` (1/16 in the paper),
        or a ratio ``r`` above 1 (width ``channels / r``).
    act : str, optional
        Activation in the bottleneck (an ``ACTIVATIONS`` name).

    Examples
    --------
    >>> import torch
    >>> from fastecg.models.attention import GlobalContext
    >>> GlobalContext(64)(torch.randn(2, 64, 100)).shape
    torch.Size([2, 64, 100])
    """

    def __init__(self, channels: int, reduction: float = 1 / 16, act: str = "relu"):
        super().__init__()
        channels = _check_channels(channels)
        hidden = max(1, int(round(channels * _check_reduction(reduction))))
        self.context = nn.Conv1d(channels, 1, 1)
        self.transform = nn.Sequential(
            nn.Conv1d(channels, hidden, 1),
            nn.LayerNorm([hidden, 1]),
            ACTIVATIONS.build(act),
            nn.Conv1d(hidden, channels, 1),
        )
        nn.init.zeros_(self.transform[-1].weight)
        nn.init.zeros_(self.transform[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        weights = torch.softmax(self.context(x), dim=-1)          # (batch, 1, length)
        context = torch.matmul(x, weights.transpose(1, 2))        # (batch, channels, 1)
        return x + self.transform(context)


@ATTN_LAYERS.register("non_local")
@ATTN_LAYERS.register("nl")  # torch_ecg's name
class NonLocal(_KeepsLength):
    """Non-local block, embedded-Gaussian form (Wang et al. 2018).

    ``y_i = sum_j softmax_j(theta(x_i)^T phi(x_j)) g(x_j)``, output ``x + BN(W y)``.
    ``theta``, ``phi``, ``g`` and ``W`` are 1x1 convolutions; ``BN`` starts at zero
    scale so that a fresh block is the identity. Memory is ``O(length^2)`` per sample
    (``O(length^2 / 2)`` with ``sub_sample``).

    Parameters
    ----------
    channels : int
        Channels of the input.
    reduction : float, optional
        Width of the embeddings as a fraction of ``channels`` in ``(0, 1]`` (1/2 in the
        paper), or a ratio ``r`` above 1 (width ``channels / r``).
    sub_sample : bool, optional
        Max-pool ``phi`` and ``g`` by 2 along time (the paper's cheaper variant).

    Examples
    --------
    >>> import torch
    >>> from fastecg.models.attention import NonLocal
    >>> NonLocal(64, sub_sample=True)(torch.randn(2, 64, 100)).shape
    torch.Size([2, 64, 100])
    """

    def __init__(self, channels: int, reduction: float = 0.5, sub_sample: bool = False):
        super().__init__()
        channels = _check_channels(channels)
        inter = max(1, int(round(channels * _check_reduction(reduction))))
        self.theta = nn.Conv1d(channels, inter, 1)
        self.phi = nn.Conv1d(channels, inter, 1)
        self.g = nn.Conv1d(channels, inter, 1)
        self.pool = nn.MaxPool1d(2, ceil_mode=True) if sub_sample else nn.Identity()
        self.out = nn.Sequential(nn.Conv1d(inter, channels, 1), nn.BatchNorm1d(channels))
        nn.init.zeros_(self.out[1].weight)

    def forward(self, x: Tensor) -> Tensor:
        theta = self.theta(x).transpose(1, 2)                     # (batch, length, inter)
        phi = self.pool(self.phi(x))                              # (batch, inter, length')
        g = self.pool(self.g(x)).transpose(1, 2)                  # (batch, length', inter)
        weights = torch.softmax(torch.bmm(theta, phi), dim=-1)    # (batch, length, length')
        y = torch.bmm(weights, g).transpose(1, 2)                 # (batch, inter, length)
        return x + self.out(y)
