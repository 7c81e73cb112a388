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
from typing import Any, Mapping, Optional, Sequence, Union

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


def _unsupported(arg: str, value: Any, supported: str) -> ValueError:
    """The error for a torch_ecg argument that selects a variant this layer lacks."""
    return ValueError(f"{arg}={value!r} is not implemented here; supported: {supported}")


def _one_of(ours: str, our_value: Any, our_default: Any, theirs: str, their_value: Any) -> Any:
    """Our argument or torch_ecg's name for it, not both with different values."""
    if their_value is None:
        return our_value
    if our_value != our_default and our_value != their_value:
        raise ValueError(f"{ours}={our_value!r} and torch_ecg's {theirs}={their_value!r} "
                         f"both given; use one")
    return their_value


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
    bias : bool, optional
        Biases of the attention's input and output projections (torch_ecg's ``bias``;
        default ``True``).

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
                 residual: bool = True, bias: bool = True):
        super().__init__()
        channels = _check_channels(channels)
        if num_heads is None:
            num_heads = next(h for h in (8, 4, 2, 1) if channels % h == 0)
        if num_heads < 1 or channels % num_heads:
            raise ValueError(f"num_heads={num_heads} must be >= 1 and divide "
                             f"channels={channels}")
        self.norm = nn.LayerNorm(channels)
        self.attn = nn.MultiheadAttention(channels, num_heads, dropout=dropout,
                                          bias=bool(bias), batch_first=True)
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
        Activation between the two 1x1 convolutions (an ``ACTIVATIONS`` name; default
        ``"relu"``).
    activation : str, optional
        torch_ecg's name for ``act``.
    kw_activation : dict, optional
        Keyword arguments of the activation (``{"negative_slope": 0.1}``); ``inplace``,
        which changes no result, is dropped.
    bias : bool, optional
        Biases of the two 1x1 convolutions (default ``True``; torch_ecg's ``SEBlock``
        defaults to ``False``, its ECG_CRNN config sets ``True``).
    dropouts : float or sequence of float, optional
        torch_ecg's dropout after each layer of the gate; only 0 (none) is implemented.
    kernel_initializer : str, optional
        Accepted for torch_ecg configs and, as in torch_ecg's ``SEBlock`` (which keeps it
        in its config but never passes it to its layers), without effect.

    Raises
    ------
    ValueError
        Nonzero ``dropouts``, or ``act`` and ``activation`` naming different ones.

    Examples
    --------
    >>> import torch
    >>> from fastecg.models.attention import SqueezeExcitation
    >>> x = torch.randn(2, 64, 100)
    >>> y = SqueezeExcitation(64)(x)
    >>> y.shape, bool(((y / x) - (y / x)[..., :1]).abs().max() < 1e-4)   # one gain per channel
    (torch.Size([2, 64, 100]), True)
    """

    def __init__(self, channels: int, reduction: float = 1 / 16, act: str = "relu", *,
                 activation: Optional[str] = None,
                 kw_activation: Optional[Mapping[str, Any]] = None, bias: bool = True,
                 dropouts: Union[float, Sequence[float]] = 0.0,
                 kernel_initializer: Optional[str] = None):
        act = _one_of("act", act, "relu", "activation", activation)
        drops = [dropouts] if isinstance(dropouts, numbers.Real) else list(dropouts)
        if any(d != 0 for d in drops):
            raise _unsupported("dropouts", dropouts, "0 (no dropout in the gate)")
        if kernel_initializer is not None and not isinstance(kernel_initializer, str):
            raise TypeError(f"kernel_initializer must be a name or None, "
                            f"got {kernel_initializer!r}")
        super().__init__(_check_channels(channels), reduction=_check_reduction(reduction),
                         act=act)
        act_kwargs = {k: v for k, v in (kw_activation or {}).items() if k != "inplace"}
        if act_kwargs:
            self.act = ACTIVATIONS.build(act, **act_kwargs)
        if not bias:
            for conv in (self.fc1, self.fc2):
                conv.register_parameter("bias", None)


@ATTN_LAYERS.register("global_context")
@ATTN_LAYERS.register("gc")  # torch_ecg's name
class GlobalContext(_KeepsLength):
    """Global context block (GCNet, Cao et al. 2019).

    Context (``pooling_type``): ``c = sum_t softmax_t(w^T x_t) x_t`` (``"attn"``) or
    ``c = mean_t x_t`` (``"avg"``); transform: ``1x1 conv -> LayerNorm -> ReLU -> 1x1
    conv``, one per fusion; output (``fusion_types``) ``x + T_add(c)`` (``"add"``),
    ``x * sigmoid(T_mul(c))`` (``"mul"``), or ``x * sigmoid(T_mul(c)) + T_add(c)`` with
    both, in this order whatever the order of the list, as GCNet and torch_ecg apply
    them (``c`` and the transforms broadcast over time). The last convolution of each
    transform starts at zero, as in GCNet: a fresh ``"add"`` block is the identity, a
    fresh ``"mul"`` block halves its input.

    Parameters
    ----------
    channels : int
        Channels of the input.
    reduction : float or bool, optional
        Bottleneck width as a fraction of ``channels`` in ``(0, 1]`` (1/16 in the paper),
        or a ratio ``r`` above 1 (width ``channels / r``); default 1/16.
        With torch_ecg's ``ratio``, torch_ecg's boolean instead: ``True`` for width
        ``channels // ratio``, ``False`` for ``channels * ratio``.
    act : str, optional
        Activation in the bottleneck (an ``ACTIVATIONS`` name).
    ratio : float, optional
        torch_ecg's ratio (>= 1) of the bottleneck, read with the boolean ``reduction``
        (default ``True``) as torch_ecg's ``GlobalContextBlock`` does.
    pooling_type : {"attn", "avg"}, optional
        Context pooling: the softmax-weighted sum above (default) or the mean over time.
    fusion_types : sequence of str, optional
        Fusions of the context with the input, a non-empty subset of ``["add", "mul"]``
        (a single name is one fusion); default ``["add"]``.

    Raises
    ------
    ValueError
        A ``pooling_type`` or ``fusion_types`` not listed above, a ``ratio`` below 1, or
        a ``ratio`` with a numeric ``reduction``.

    Examples
    --------
    >>> import torch
    >>> from fastecg.models.attention import GlobalContext
    >>> GlobalContext(64)(torch.randn(2, 64, 100)).shape
    torch.Size([2, 64, 100])
    >>> GlobalContext(64, pooling_type="avg", fusion_types=["add", "mul"])(
    ...     torch.randn(2, 64, 100)).shape
    torch.Size([2, 64, 100])
    """

    _POOLING_TYPES = ("attn", "avg")
    _FUSION_TYPES = ("add", "mul")

    def __init__(self, channels: int, reduction: Union[float, bool, None] = None,
                 act: str = "relu", *, ratio: Optional[float] = None,
                 pooling_type: str = "attn", fusion_types: Sequence[str] = ("add",)):
        super().__init__()
        channels = _check_channels(channels)
        if not isinstance(pooling_type, str) or pooling_type.lower() not in self._POOLING_TYPES:
            raise _unsupported("pooling_type", pooling_type, "'attn' or 'avg'")
        fusions = [fusion_types] if isinstance(fusion_types, str) else list(fusion_types)
        if not fusions or any(not isinstance(f, str) or f.lower() not in self._FUSION_TYPES
                              for f in fusions):
            raise _unsupported("fusion_types", fusion_types,
                               "a non-empty subset of ['add', 'mul']")
        fusions = {f.lower() for f in fusions}
        if ratio is None:
            hidden = max(1, int(round(channels * _check_reduction(
                1 / 16 if reduction is None else reduction))))
        else:
            if reduction is not None and not isinstance(reduction, bool):
                raise ValueError(f"ratio={ratio!r} reads reduction as torch_ecg's boolean "
                                 f"(True: channels // ratio, False: channels * ratio), got "
                                 f"reduction={reduction!r}; give one of the two forms")
            if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or \
                    not 1 <= ratio < math.inf:
                raise ValueError(f"ratio must be a number >= 1, got {ratio!r}")
            # torch_ecg's widths: floored channels // ratio, or channels * ratio
            hidden = int(channels // ratio) if reduction in (None, True) else \
                int(channels * ratio)
            hidden = max(1, hidden)
        # None for average pooling, so that the attention pooling keeps its state_dict keys
        self.context = nn.Conv1d(channels, 1, 1) if pooling_type.lower() == "attn" else None
        self.transform = self._transform(channels, hidden, act) if "add" in fusions else None
        self.mul_transform = self._transform(channels, hidden, act) if "mul" in fusions \
            else None

    @staticmethod
    def _transform(channels: int, hidden: int, act: str) -> nn.Sequential:
        transform = nn.Sequential(
            nn.Conv1d(channels, hidden, 1),
            nn.LayerNorm([hidden, 1]),
            ACTIVATIONS.build(act),
            nn.Conv1d(hidden, channels, 1),
        )
        nn.init.zeros_(transform[-1].weight)
        nn.init.zeros_(transform[-1].bias)
        return transform

    def forward(self, x: Tensor) -> Tensor:
        if self.context is None:
            context = x.mean(dim=-1, keepdim=True)                # (batch, channels, 1)
        else:
            weights = torch.softmax(self.context(x), dim=-1)      # (batch, 1, length)
            context = torch.matmul(x, weights.transpose(1, 2))    # (batch, channels, 1)
        out = x
        if self.mul_transform is not None:
            out = out * torch.sigmoid(self.mul_transform(context))
        if self.transform is not None:
            out = out + self.transform(context)
        return out


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
        Default 1/2.
    sub_sample : bool, optional
        Max-pool ``phi`` and ``g`` by 2 along time (the paper's cheaper variant).
    mid_channels : int, optional
        torch_ecg's width of the embeddings, instead of ``reduction``.
    subsample_length : int, optional
        torch_ecg's max-pool size of ``phi`` and ``g`` (1: none; 2 is ``sub_sample``).
        The pooling keeps a short last window (``ceil_mode``), where torch_ecg's drops it.
    filter_lengths : int or dict, optional
        torch_ecg's kernel sizes of ``theta``, ``phi``, ``g`` and ``W`` (an int for all,
        or a dict by name); only 1 (1x1 convolutions) is implemented.
    batch_norm, norm : bool, optional
        torch_ecg's normalisation after ``W``; only batch norm (``True``, or
        ``"batch_norm"``) is implemented.

    Raises
    ------
    ValueError
        Kernel sizes or a normalisation not implemented, or two arguments for the same
        width or pooling that disagree.

    Examples
    --------
    >>> import torch
    >>> from fastecg.models.attention import NonLocal
    >>> NonLocal(64, sub_sample=True)(torch.randn(2, 64, 100)).shape
    torch.Size([2, 64, 100])
    """

    _MID_LAYERS = ("g", "theta", "phi", "W")

    def __init__(self, channels: int, reduction: Optional[float] = None,
                 sub_sample: bool = False, *, mid_channels: Optional[int] = None,
                 subsample_length: Optional[int] = None,
                 filter_lengths: Union[int, Mapping[str, int]] = 1,
                 batch_norm: Union[bool, str, None] = True,
                 norm: Union[bool, str, None] = None):
        super().__init__()
        channels = _check_channels(channels)
        kernels = filter_lengths if isinstance(filter_lengths, Mapping) else \
            dict.fromkeys(self._MID_LAYERS, filter_lengths)
        if set(kernels) - set(self._MID_LAYERS) or any(k != 1 for k in kernels.values()):
            raise _unsupported("filter_lengths", filter_lengths,
                               f"1 for each of {list(self._MID_LAYERS)} (1x1 convolutions)")
        norm_arg, norm = ("batch_norm", batch_norm) if norm is None else ("norm", norm)
        if norm is not True and not (isinstance(norm, str) and norm.lower() == "batch_norm"):
            raise _unsupported(norm_arg, norm, "True or 'batch_norm' (BatchNorm after W)")
        if mid_channels is not None:
            if reduction is not None:
                raise ValueError(f"reduction={reduction!r} and torch_ecg's "
                                 f"mid_channels={mid_channels!r} both set the width; use one")
            if isinstance(mid_channels, bool) or not isinstance(mid_channels, numbers.Integral) \
                    or mid_channels < 1:
                raise ValueError(f"mid_channels must be an int >= 1, got {mid_channels!r}")
            inter = int(mid_channels)
        else:
            inter = max(1, int(round(channels * _check_reduction(
                0.5 if reduction is None else reduction))))
        if subsample_length is None:
            pool = 2 if sub_sample else 1
        else:
            if isinstance(subsample_length, bool) or \
                    not isinstance(subsample_length, numbers.Integral) or subsample_length < 1:
                raise ValueError(f"subsample_length must be an int >= 1, "
                                 f"got {subsample_length!r}")
            if sub_sample and subsample_length != 2:
                raise ValueError(f"sub_sample=True (pooling by 2) and torch_ecg's "
                                 f"subsample_length={subsample_length} disagree; use one")
            pool = int(subsample_length)
        self.theta = nn.Conv1d(channels, inter, 1)
        self.phi = nn.Conv1d(channels, inter, 1)
        self.g = nn.Conv1d(channels, inter, 1)
        self.pool = nn.MaxPool1d(pool, ceil_mode=True) if pool > 1 else nn.Identity()
        self.out = nn.Sequential(nn.Conv1d(inter, channels, 1), nn.BatchNorm1d(channels))
        nn.init.zeros_(self.out[1].weight)

    def forward(self, x: Tensor) -> Tensor:
        theta = self.theta(x).transpose(1, 2)                     # (batch, length, inter)
        phi = self.pool(self.phi(x))                              # (batch, inter, length')
        g = self.pool(self.g(x)).transpose(1, 2)                  # (batch, length', inter)
        weights = torch.softmax(torch.bmm(theta, phi), dim=-1)    # (batch, length, length')
        y = torch.bmm(weights, g).transpose(1, 2)                 # (batch, inter, length)
        return x + self.out(y)
