"""EfficientNet (B0-B7) and EfficientNetV2 (B0, S) in 1-D.

MBConv blocks (:class:`~.mobilenet.InvertedResidual` with SE and swish) and, for V2,
Fused-MBConv blocks in the early stages; stochastic depth (:class:`DropPath`) grows
linearly over the blocks. One stage per row of the architecture table; the final 1x1
conv to ``num_features`` channels sits in the last stage.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

from ...registry import BACKBONES
from .._base import Backbone
from .._layers import (ConvBnAct, SkipBlock, SqueezeExcite, build_stages, init_skip_blocks,
                       init_weights, make_divisible)
from .mobilenet import InvertedResidual, _check_width, _scaled_kernel

__all__ = ["FusedMBConv", "EfficientNet", "EfficientNetV2"]


class FusedMBConv(SkipBlock):
    """Fused-MBConv [1]_: one ``k``-tap conv in place of expand 1x1 + depthwise, then a
    linear 1x1 projection (left out when ``expand_ratio == 1``), with a skip.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and out.
    expand_ratio : float
        Width of the fused conv relative to ``in_channels``.
    kernel_size : int, optional
        Taps of the fused conv.
    stride : int, optional
        Stride of the fused conv.
    act : str, optional
        Activation name.
    se_ratio : float, optional
        SE bottleneck relative to ``in_channels``; 0 leaves SE out (as in V2's tables).
    drop_path : float, optional
        Stochastic-depth probability of the residual branch.

    Shapes: ``(batch, in_channels, L) -> (batch, out_channels, ceil(L / stride))``.

    References
    ----------
    .. [1] M. Tan and Q. V. Le, "EfficientNetV2: Smaller Models and Faster Training",
       ICML 2021.
    """

    def __init__(self, in_channels: int, out_channels: int, expand_ratio: float,
                 kernel_size: int = 3, stride: int = 1, act: str = "silu",
                 se_ratio: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        if expand_ratio == 1:
            layers = [ConvBnAct(in_channels, out_channels, kernel_size, stride, act=act)]
            if se_ratio:
                layers.append(SqueezeExcite(out_channels, act=act,
                                            reduced=max(1, int(in_channels * se_ratio))))
        else:
            mid = make_divisible(in_channels * expand_ratio)
            layers = [ConvBnAct(in_channels, mid, kernel_size, stride, act=act)]
            if se_ratio:
                layers.append(SqueezeExcite(mid, act=act,
                                            reduced=max(1, int(in_channels * se_ratio))))
            layers.append(ConvBnAct(mid, out_channels, 1, act=None))
        self._set_body(layers, in_channels, out_channels, stride, drop_path)


def _build_stages(arch, stem_channels: int, width_mult: float, depth_mult: float,
                  num_features: Optional[int], act: str, drop_path_rate: float,
                  kernel_scale: int):
    """Stages from rows ``(block, expand, kernel, stride, channels, repeats, se_ratio)``,
    ``block`` one of ``"mb"`` (MBConv) or ``"fused"`` (Fused-MBConv)."""
    rows = [(blk, e, k, s, make_divisible(c * width_mult), int(math.ceil(n * depth_mult)), se)
            for blk, e, k, s, c, n, se in arch]
    for blk, *_ in rows:
        if blk not in ("mb", "fused"):
            raise ValueError(f"block type must be 'mb' or 'fused', got {blk!r}")

    def block(slot, channels):
        blk, e, k, s, out, _, se = rows[slot.stage]
        stride, kernel = (s if slot.index == 0 else 1), _scaled_kernel(k, kernel_scale)
        if blk == "fused":
            return FusedMBConv(channels, out, e, kernel, stride, act, se, slot.drop_path)
        mid = make_divisible(channels * e) if e != 1 else channels
        return InvertedResidual(
            channels, out, mid, kernel, stride, act,
            se_channels=max(1, int(channels * se)) if se else None, se_act=act,
            se_gate="sigmoid", drop_path=slot.drop_path)

    return build_stages(stem_channels, [r[5] for r in rows], block, drop_path_rate,
                        lambda c: [ConvBnAct(c, num_features, 1, act=act)] if num_features
                        else [])


# -- EfficientNet (V1) --------------------------------------------------------------

# (block, expansion, kernel, stride, channels, repeats, SE ratio) for B0 [1, Table 1]
_B0_ARCH = (
    ("mb", 1, 3, 1, 16, 1, 0.25),
    ("mb", 6, 3, 2, 24, 2, 0.25),
    ("mb", 6, 5, 2, 40, 2, 0.25),
    ("mb", 6, 3, 2, 80, 3, 0.25),
    ("mb", 6, 5, 1, 112, 3, 0.25),
    ("mb", 6, 5, 2, 192, 4, 0.25),
    ("mb", 6, 3, 1, 320, 1, 0.25),
)
# compound scaling (width, depth); the input resolution of [1] has no 1-D counterpart
_B_SCALING = {"b0": (1.0, 1.0), "b1": (1.0, 1.1), "b2": (1.1, 1.2), "b3": (1.2, 1.4),
              "b4": (1.4, 1.8), "b5": (1.6, 2.2), "b6": (1.8, 2.6), "b7": (2.0, 3.1)}


@BACKBONES.register("efficientnet")
class EfficientNet(Backbone):
    """EfficientNet [1]_ in 1-D: MBConv blocks with SE and swish, stochastic depth.

    Parameters
    ----------
    in_channels : int, optional
        Leads on dim 1.
    variant : {"b0", ..., "b7"}, optional
        Preset ``(width_mult, depth_mult)`` of the compound scaling.
    width_mult, depth_mult : float or None, optional
        Override the preset: channels ``make_divisible(c * width_mult)``, repeats
        ``ceil(n * depth_mult)``.
    num_features : int or None, optional
        Channels of the final 1x1 conv before ``width_mult`` (1280); ``0``/``None``: none.
    act : str, optional
        Activation (``"swish"``, i.e. SiLU).
    drop_path_rate : float, optional
        Stochastic-depth probability of the last block (0.2 as in [1]), rising linearly
        from 0 at the first block (:func:`~fastecg.models._layers.drop_path_rates`).
    kernel_scale : int, optional
        Multiplies every kernel size (rounded up to odd); 1 keeps the published 3 and 5.
    arch : sequence of rows, optional
        Replaces the B0 table; rows ``(block, expand, kernel, stride, channels, repeats,
        se_ratio)`` with ``block`` ``"mb"`` or ``"fused"``.

    Notes
    -----
    Output ``(batch, num_features, ceil(L / 32))``; seven stages with reductions
    2, 4, 8, 16, 16, 32, 32. SE widths are ``in_channels / 4`` of each block.

    References
    ----------
    .. [1] M. Tan and Q. V. Le, "EfficientNet: Rethinking Model Scaling for Convolutional
       Neural Networks", ICML 2019.

    Examples
    --------
    >>> BACKBONES.build("efficientnet").compute_features_output_shape(5000, 2)
    (2, 1280, 157)
    """

    def __init__(self, in_channels: int = 12, variant: str = "b0",
                 width_mult: Optional[float] = None, depth_mult: Optional[float] = None,
                 num_features: Optional[int] = 1280, act: str = "swish",
                 drop_path_rate: float = 0.2, kernel_scale: int = 1,
                 arch: Optional[Sequence[Sequence]] = None):
        super().__init__(in_channels)
        if variant not in _B_SCALING:
            raise ValueError(f"variant must be one of {sorted(_B_SCALING)}, got {variant!r}")
        w, d = _B_SCALING[variant]
        width_mult = w if width_mult is None else width_mult
        depth_mult = d if depth_mult is None else depth_mult
        _check_width(width_mult)
        if not depth_mult > 0:
            raise ValueError(f"depth_mult must be > 0, got {depth_mult}")
        if kernel_scale < 1:
            raise ValueError(f"kernel_scale must be >= 1, got {kernel_scale}")
        stem_channels = make_divisible(32 * width_mult)
        self.stem = ConvBnAct(in_channels, stem_channels, _scaled_kernel(3, kernel_scale),
                              stride=2, act=act)
        self.stages, stage_channels = _build_stages(
            _B0_ARCH if arch is None else arch, stem_channels, width_mult, depth_mult,
            make_divisible(num_features * width_mult) if num_features else None, act,
            drop_path_rate, kernel_scale)
        init_weights(self, per_group=True)
        init_skip_blocks(self)
        self._finish(stage_channels)


# -- EfficientNetV2 ----------------------------------------------------------------

# (block, expansion, kernel, stride, channels, repeats, SE ratio) [1, Table 4]; "b0" is
# the smaller base network of the official release that V2-B0..B3 scale.
_V2_ARCH = {
    "b0": (
        ("fused", 1, 3, 1, 16, 1, 0.0),
        ("fused", 4, 3, 2, 32, 2, 0.0),
        ("fused", 4, 3, 2, 48, 2, 0.0),
        ("mb", 4, 3, 2, 96, 3, 0.25),
        ("mb", 6, 3, 1, 112, 5, 0.25),
        ("mb", 6, 3, 2, 192, 8, 0.25),
    ),
    "s": (
        ("fused", 1, 3, 1, 24, 2, 0.0),
        ("fused", 4, 3, 2, 48, 4, 0.0),
        ("fused", 4, 3, 2, 64, 4, 0.0),
        ("mb", 4, 3, 2, 128, 6, 0.25),
        ("mb", 6, 3, 1, 160, 9, 0.25),
        ("mb", 6, 3, 2, 256, 15, 0.25),
    ),
}
_V2_STEM = {"b0": 32, "s": 24}


@BACKBONES.register("efficientnet_v2")
class EfficientNetV2(Backbone):
    """EfficientNetV2 [1]_ in 1-D: Fused-MBConv early stages, MBConv + SE later.

    Parameters
    ----------
    in_channels : int, optional
        Leads on dim 1.
    variant : {"b0", "s"}, optional
        ``"b0"`` (default): the base V2 network (fused 16-32-48, MBConv 96-112-192,
        about a third of V2-S's depth), sized for CPU benchmarks; ``"s"``: V2-S as
        published.
    width_mult, depth_mult : float, optional
        Channels ``make_divisible(c * width_mult)``, repeats ``ceil(n * depth_mult)``.
    num_features : int or None, optional
        Channels of the final 1x1 conv before ``width_mult`` (1280); ``0``/``None``: none.
    act : str, optional
        Activation (``"silu"``).
    drop_path_rate : float, optional
        Stochastic-depth probability of the last block, rising linearly from 0 at the
        first block (:func:`~fastecg.models._layers.drop_path_rates`).
    kernel_scale : int, optional
        Multiplies every kernel size (rounded up to odd); 1 keeps the published 3.
    arch : sequence of rows, optional
        Replaces the table, rows as in :class:`EfficientNet`.

    Notes
    -----
    Output ``(batch, num_features, ceil(L / 32))``; six stages with reductions
    2, 4, 8, 16, 16, 32. Fused blocks carry no SE, as in the published tables.

    References
    ----------
    .. [1] M. Tan and Q. V. Le, "EfficientNetV2: Smaller Models and Faster Training",
       ICML 2021.

    Examples
    --------
    >>> BACKBONES.build("efficientnet_v2", variant="s").compute_features_output_shape(5000)
    (None, 1280, 157)
    """

    def __init__(self, in_channels: int = 12, variant: str = "b0", width_mult: float = 1.0,
                 depth_mult: float = 1.0, num_features: Optional[int] = 1280,
                 act: str = "silu", drop_path_rate: float = 0.2, kernel_scale: int = 1,
                 arch: Optional[Sequence[Sequence]] = None):
        super().__init__(in_channels)
        if variant not in _V2_ARCH:
            raise ValueError(f"variant must be one of {sorted(_V2_ARCH)}, got {variant!r}")
        _check_width(width_mult)
        if not depth_mult > 0:
            raise ValueError(f"depth_mult must be > 0, got {depth_mult}")
        if kernel_scale < 1:
            raise ValueError(f"kernel_scale must be >= 1, got {kernel_scale}")
        stem_channels = make_divisible(_V2_STEM[variant] * width_mult)
        self.stem = ConvBnAct(in_channels, stem_channels, _scaled_kernel(3, kernel_scale),
                              stride=2, act=act)
        self.stages, stage_channels = _build_stages(
            _V2_ARCH[variant] if arch is None else arch, stem_channels, width_mult,
            depth_mult, make_divisible(num_features * max(1.0, width_mult))
            if num_features else None, act, drop_path_rate, kernel_scale)
        init_weights(self, per_group=True)
        init_skip_blocks(self)
        self._finish(stage_channels)
