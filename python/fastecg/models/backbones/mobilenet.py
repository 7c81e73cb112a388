"""MobileNet V1, V2 and V3 in 1-D: depthwise-separable and inverted-residual backbones.

The published tables (channels, expansions, kernel sizes, strides) are kept; every 2-D
``k x k`` convolution becomes a 1-D convolution of ``k`` taps along time. Stages group
the blocks as timm does: one stage per row of the architecture table, so that
``feature_info`` reports the reductions 2, 4, 8, 16, (16), 32.

:class:`InvertedResidual` is also the MBConv block of :mod:`.efficientnet`.
"""

from __future__ import annotations

from typing import Optional, Sequence

from torch import nn

from ...registry import BACKBONES
from .._base import Backbone
from .._layers import (ConvBnAct, SkipBlock, SqueezeExcite, build_stages, init_skip_blocks,
                       init_weights, make_divisible)

__all__ = ["DepthwiseSeparable", "InvertedResidual", "MobileNetV1", "MobileNetV2",
           "MobileNetV3"]


class DepthwiseSeparable(nn.Sequential):
    """Depthwise ``k``-tap conv -> BN -> act -> pointwise conv -> BN -> act (MobileNet V1).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and out.
    kernel_size : int, optional
        Taps of the depthwise convolution.
    stride : int, optional
        Stride of the depthwise convolution.
    act : str, optional
        Activation name in ``ACTIVATIONS``.

    Shapes: ``(batch, in_channels, L) -> (batch, out_channels, ceil(L / stride))``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, act: str = "relu"):
        super().__init__(
            ConvBnAct(in_channels, in_channels, kernel_size, stride, groups=in_channels,
                      act=act),
            ConvBnAct(in_channels, out_channels, 1, act=act),
        )
        self.out_channels = out_channels


class InvertedResidual(SkipBlock):
    """Inverted residual (MBConv): expand 1x1 -> depthwise -> [SE] -> project 1x1 (+ skip).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and out.
    mid_channels : int
        Expanded width; when equal to ``in_channels`` the expansion conv is left out.
    kernel_size : int, optional
        Taps of the depthwise convolution.
    stride : int, optional
        Stride of the depthwise convolution.
    act : str, optional
        Activation after the expansion and depthwise convolutions.
    se_channels : int or None, optional
        Bottleneck width of a squeeze-excitation on the expanded features; ``None``: no SE.
    se_act, se_gate : str, optional
        Activation and gate of the SE block (``"relu"``/``"hardsigmoid"`` in V3,
        ``"silu"``/``"sigmoid"`` in EfficientNet).
    drop_path : float, optional
        Stochastic-depth probability of the residual branch (only with a skip).

    Notes
    -----
    The skip is used when ``stride == 1`` and ``in_channels == out_channels``; the
    projection is linear (no activation), as in [1]_.

    Shapes: ``(batch, in_channels, L) -> (batch, out_channels, ceil(L / stride))``.

    References
    ----------
    .. [1] M. Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
       CVPR 2018.
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int,
                 kernel_size: int = 3, stride: int = 1, act: str = "relu6",
                 se_channels: Optional[int] = None, se_act: str = "relu",
                 se_gate: str = "sigmoid", drop_path: float = 0.0):
        super().__init__()
        layers = []
        if mid_channels != in_channels:
            layers.append(ConvBnAct(in_channels, mid_channels, 1, act=act))
        layers.append(ConvBnAct(mid_channels, mid_channels, kernel_size, stride,
                                groups=mid_channels, act=act))
        if se_channels:
            layers.append(SqueezeExcite(mid_channels, act=se_act, gate=se_gate,
                                        reduced=se_channels))
        layers.append(ConvBnAct(mid_channels, out_channels, 1, act=None))
        self._set_body(layers, in_channels, out_channels, stride, drop_path)


def _scaled_kernel(kernel_size: int, scale: int) -> int:
    """``kernel_size * scale``, rounded up to odd so that "same" padding stays centred."""
    k = kernel_size * scale
    return k if k % 2 else k + 1


def _check_width(width_mult: float) -> None:
    if not width_mult > 0:
        raise ValueError(f"width_mult must be > 0, got {width_mult}")


# -- MobileNet V1 -----------------------------------------------------------------

# (out_channels, stride) per depthwise-separable block, grouped into stages [1, Table 1]
_V1_STAGES = (
    ((64, 1),),
    ((128, 2), (128, 1)),
    ((256, 2), (256, 1)),
    ((512, 2),) + ((512, 1),) * 5,
    ((1024, 2), (1024, 1)),
)


@BACKBONES.register("mobilenet_v1")
class MobileNetV1(Backbone):
    """MobileNet V1 [1]_ in 1-D: a strided conv stem and 13 depthwise-separable blocks.

    Parameters
    ----------
    in_channels : int, optional
        Leads on dim 1.
    width_mult : float, optional
        Channel multiplier (the paper's ``alpha``); widths are rounded to multiples of 8.
    kernel_size : int, optional
        Taps of the stem and depthwise convolutions (3 as published).
    act : str, optional
        Activation name (``"relu"``; TF's releases use ``"relu6"``).

    Notes
    -----
    Output ``(batch, 1024 * width_mult, L_out)`` with ``L_out = ceil(L / 32)``; five
    stages with reductions 2, 4, 8, 16, 32.

    References
    ----------
    .. [1] A. G. Howard et al., "MobileNets: Efficient Convolutional Neural Networks for
       Mobile Vision Applications", arXiv:1704.04861, 2017.

    Examples
    --------
    >>> import torch
    >>> from fastecg.registry import BACKBONES
    >>> net = BACKBONES.build("mobilenet_v1")
    >>> net(torch.randn(2, 12, 5000)).shape
    torch.Size([2, 1024, 157])
    """

    def __init__(self, in_channels: int = 12, width_mult: float = 1.0, kernel_size: int = 3,
                 act: str = "relu"):
        super().__init__(in_channels)
        _check_width(width_mult)
        stem_channels = make_divisible(32 * width_mult)
        self.stem = ConvBnAct(in_channels, stem_channels, kernel_size, stride=2, act=act)

        def block(slot, channels):
            out, stride = _V1_STAGES[slot.stage][slot.index]
            return DepthwiseSeparable(channels, make_divisible(out * width_mult), kernel_size,
                                      stride, act)

        self.stages, stage_channels = build_stages(
            stem_channels, [len(rows) for rows in _V1_STAGES], block)
        init_weights(self, per_group=True)
        self._finish(stage_channels)


# -- MobileNet V2 -----------------------------------------------------------------

# (expansion t, out_channels c, repeats n, first stride s) [1, Table 2]
_V2_ARCH = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1))


@BACKBONES.register("mobilenet_v2")
class MobileNetV2(Backbone):
    """MobileNet V2 [1]_ in 1-D: inverted residuals with linear bottlenecks.

    Parameters
    ----------
    in_channels : int, optional
        Leads on dim 1.
    width_mult : float, optional
        Channel multiplier, widths rounded to multiples of 8.
    num_features : int or None, optional
        Channels of the final 1x1 conv (1280 as published; scaled up when
        ``width_mult > 1``); ``0`` or ``None`` leaves it out.
    kernel_size : int, optional
        Taps of the stem and depthwise convolutions (3 as published).
    act : str, optional
        Activation name.
    drop_path_rate : float, optional
        Stochastic-depth probability of the last block, rising linearly from 0 at the
        first block (:func:`~fastecg.models._layers.drop_path_rates`).
    arch : sequence of (t, c, n, s), optional
        Replaces the published table: expansion, channels, repeats, first stride.

    Notes
    -----
    Output ``(batch, 1280, ceil(L / 32))``; one stage per table row (reductions
    2, 4, 8, 16, 16, 32, 32), the final 1x1 conv in the last stage.

    References
    ----------
    .. [1] M. Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
       CVPR 2018.

    Examples
    --------
    >>> BACKBONES.build("mobilenet_v2").compute_features_output_shape(5000, 2)
    (2, 1280, 157)
    """

    def __init__(self, in_channels: int = 12, width_mult: float = 1.0,
                 num_features: Optional[int] = 1280, kernel_size: int = 3,
                 act: str = "relu6", drop_path_rate: float = 0.0,
                 arch: Optional[Sequence[Sequence[int]]] = None):
        super().__init__(in_channels)
        _check_width(width_mult)
        arch = _V2_ARCH if arch is None else tuple(tuple(r) for r in arch)
        stem_channels = make_divisible(32 * width_mult)
        self.stem = ConvBnAct(in_channels, stem_channels, kernel_size, stride=2, act=act)

        def block(slot, channels):
            t, c, _, s = arch[slot.stage]
            return InvertedResidual(
                channels, make_divisible(c * width_mult),
                make_divisible(channels * t) if t != 1 else channels, kernel_size,
                s if slot.index == 0 else 1, act, drop_path=slot.drop_path)

        def last_conv(channels):
            if not num_features:
                return []
            width = make_divisible(num_features * max(1.0, width_mult))
            return [ConvBnAct(channels, width, 1, act=act)]

        self.stages, stage_channels = build_stages(
            stem_channels, [n for _, _, n, _ in arch], block, drop_path_rate, last_conv)
        init_weights(self, per_group=True)
        init_skip_blocks(self)
        self._finish(stage_channels)


# -- MobileNet V3 -----------------------------------------------------------------

# (kernel, expanded width, out_channels, SE, activation, stride) per block, grouped into
# stages [1, Tables 1 and 2]
_V3_ARCH = {
    "large": (
        ((3, 16, 16, False, "relu", 1),),
        ((3, 64, 24, False, "relu", 2), (3, 72, 24, False, "relu", 1)),
        ((5, 72, 40, True, "relu", 2), (5, 120, 40, True, "relu", 1),
         (5, 120, 40, True, "relu", 1)),
        ((3, 240, 80, False, "hardswish", 2), (3, 200, 80, False, "hardswish", 1),
         (3, 184, 80, False, "hardswish", 1), (3, 184, 80, False, "hardswish", 1)),
        ((3, 480, 112, True, "hardswish", 1), (3, 672, 112, True, "hardswish", 1)),
        ((5, 672, 160, True, "hardswish", 2), (5, 960, 160, True, "hardswish", 1),
         (5, 960, 160, True, "hardswish", 1)),
    ),
    "small": (
        ((3, 16, 16, True, "relu", 2),),
        ((3, 72, 24, False, "relu", 2), (3, 88, 24, False, "relu", 1)),
        ((5, 96, 40, True, "hardswish", 2), (5, 240, 40, True, "hardswish", 1),
         (5, 240, 40, True, "hardswish", 1)),
        ((5, 120, 48, True, "hardswish", 1), (5, 144, 48, True, "hardswish", 1)),
        ((5, 288, 96, True, "hardswish", 2), (5, 576, 96, True, "hardswish", 1),
         (5, 576, 96, True, "hardswish", 1)),
    ),
}
# width of the last 1x1 conv (before pooling; the 1280/1024 FC is a head, not here)
_V3_LAST = {"large": 960, "small": 576}


@BACKBONES.register("mobilenet_v3")
class MobileNetV3(Backbone):
    """MobileNet V3 [1]_ in 1-D: inverted residuals with SE (hard-sigmoid gate) and
    hard-swish, large (default) or small.

    Parameters
    ----------
    in_channels : int, optional
        Leads on dim 1.
    variant : {"large", "small"}, optional
        Which published table.
    width_mult : float, optional
        Channel multiplier, widths rounded to multiples of 8.
    drop_path_rate : float, optional
        Stochastic-depth probability of the last block, rising linearly from 0 at the
        first block (:func:`~fastecg.models._layers.drop_path_rates`).
    kernel_scale : int, optional
        Multiplies every kernel size (``k -> k * kernel_scale``, made odd); 1 keeps the
        published 3 and 5 taps.

    Notes
    -----
    Output ``(batch, 960, ceil(L / 32))`` for ``"large"`` (576 for ``"small"``): the last
    1x1 conv with hard-swish is in the last stage; the pooled 1280-wide layer of the
    paper's classifier belongs to a head. SE widths are ``make_divisible(mid / 4)``.

    References
    ----------
    .. [1] A. Howard et al., "Searching for MobileNetV3", ICCV 2019.

    Examples
    --------
    >>> BACKBONES.build("mobilenet_v3").compute_features_output_shape(5000, 2)
    (2, 960, 157)
    """

    def __init__(self, in_channels: int = 12, variant: str = "large", width_mult: float = 1.0,
                 drop_path_rate: float = 0.0, kernel_scale: int = 1):
        super().__init__(in_channels)
        _check_width(width_mult)
        if variant not in _V3_ARCH:
            raise ValueError(f"variant must be one of {sorted(_V3_ARCH)}, got {variant!r}")
        if kernel_scale < 1:
            raise ValueError(f"kernel_scale must be >= 1, got {kernel_scale}")
        arch = _V3_ARCH[variant]
        stem_channels = make_divisible(16 * width_mult)
        self.stem = ConvBnAct(in_channels, stem_channels, _scaled_kernel(3, kernel_scale),
                              stride=2, act="hardswish")

        def block(slot, channels):
            k, exp, c, se, act, s = arch[slot.stage][slot.index]
            mid = make_divisible(exp * width_mult)
            return InvertedResidual(
                channels, make_divisible(c * width_mult), mid, _scaled_kernel(k, kernel_scale),
                s, act, se_channels=make_divisible(mid / 4) if se else None, se_act="relu",
                se_gate="hardsigmoid", drop_path=slot.drop_path)

        last = make_divisible(_V3_LAST[variant] * width_mult)
        self.stages, stage_channels = build_stages(
            stem_channels, [len(rows) for rows in arch], block, drop_path_rate,
            tail=lambda c: [ConvBnAct(c, last, 1, act="hardswish")])
        init_weights(self, per_group=True)
        init_skip_blocks(self)
        self._finish(stage_channels)
