"""RegNet (Y: with squeeze-excitation) in 1-D.

Block widths come from the paper's quantised linear rule ``u_j = w_0 + w_a * j``,
``w_j = w_0 * w_m ** round(log(u_j / w_0) / log(w_m))`` rounded to multiples of 8;
consecutive equal widths form a stage. Each stage starts with a stride-2 block.
"""

from __future__ import annotations

import math
from typing import Optional

from torch import Tensor, nn

from ...registry import BACKBONES
from .._base import Backbone, output_length
from .._layers import ACTIVATIONS, ConvBnAct, SqueezeExcite, build_stages

__all__ = ["RegNetBlock", "RegNet", "regnet_widths"]

# (depth, w_0, w_a, w_m, group width, SE ratio) [1, Appendix C]
_PRESETS = {
    "x_200mf": (13, 24, 36.44, 2.49, 8, 0.0),
    "x_400mf": (22, 24, 24.48, 2.54, 16, 0.0),
    "y_200mf": (13, 24, 36.44, 2.49, 8, 0.25),
    "y_400mf": (16, 48, 27.89, 2.09, 8, 0.25),
    "y_800mf": (14, 56, 38.84, 2.40, 16, 0.25),
    "y_1.6gf": (27, 48, 20.71, 2.65, 24, 0.25),
}


def regnet_widths(depth: int, w_0: int, w_a: float, w_m: float, group_width: int,
                  quantum: int = 8) -> tuple[list[int], list[int], list[int]]:
    """Per-stage widths, depths and group widths of a RegNet design.

    Parameters
    ----------
    depth : int
        Total number of blocks ``d``.
    w_0 : int
        Initial width, a multiple of ``quantum``.
    w_a : float
        Slope of the linear widths (>= 0).
    w_m : float
        Width multiplier between stages (> 1).
    group_width : int
        Channels per group of the 3-tap convolution.
    quantum : int, optional
        Widths are rounded to multiples of it.

    Returns
    -------
    widths, depths, group_widths : list of int
        One entry per stage; every width is a multiple of its group width.

    Raises
    ------
    ValueError
        If a parameter is out of range.

    Examples
    --------
    >>> regnet_widths(16, 48, 27.89, 2.09, 8)
    ([48, 104, 208, 440], [1, 3, 6, 6], [8, 8, 8, 8])
    """
    if not (w_a >= 0 and w_0 > 0 and w_m > 1 and w_0 % quantum == 0 and depth >= 1):
        raise ValueError(f"need w_a >= 0, w_0 > 0 a multiple of {quantum}, w_m > 1, "
                         f"depth >= 1; got w_a={w_a}, w_0={w_0}, w_m={w_m}, depth={depth}")
    ks = [round(math.log((w_0 + w_a * j) / w_0) / math.log(w_m)) for j in range(depth)]
    per_block = [int(round(w_0 * w_m ** k / quantum)) * quantum for k in ks]
    widths = sorted(set(per_block))
    depths = [per_block.count(w) for w in widths]
    groups = [min(group_width, w) for w in widths]
    # the grouped conv needs widths divisible by the group width
    widths = [max(g, int(round(w / g)) * g) for w, g in zip(widths, groups)]
    return widths, depths, groups


class RegNetBlock(nn.Module):
    """RegNet's residual bottleneck (ratio 1): 1x1 -> grouped ``k``-tap (stride) -> [SE]
    -> 1x1, added to the (projected) input, then the activation.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and out.
    stride : int, optional
        Stride of the grouped convolution (and of the projection shortcut).
    group_width : int, optional
        Channels per group.
    se_ratio : float, optional
        SE bottleneck relative to ``in_channels``; 0 for RegNetX.
    kernel_size : int, optional
        Taps of the grouped convolution.
    act : str, optional
        Activation name.

    Shapes: ``(batch, in_channels, L) -> (batch, out_channels, ceil(L / stride))``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 group_width: int = 8, se_ratio: float = 0.25, kernel_size: int = 3,
                 act: str = "relu"):
        super().__init__()
        layers = [ConvBnAct(in_channels, out_channels, 1, act=act),
                  ConvBnAct(out_channels, out_channels, kernel_size, stride,
                            groups=out_channels // group_width, act=act)]
        if se_ratio:
            layers.append(SqueezeExcite(out_channels, act=act,
                                        reduced=max(1, int(round(in_channels * se_ratio)))))
        layers.append(ConvBnAct(out_channels, out_channels, 1, act=None))
        self.conv = nn.Sequential(*layers)
        if stride != 1 or in_channels != out_channels:
            # a 1-tap stride-s conv gives ceil(L / s) samples, as the padded main path does
            self.shortcut = ConvBnAct(in_channels, out_channels, 1, stride, act=None)
        else:
            self.shortcut = nn.Identity()
        self.act = ACTIVATIONS.build(act)
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv(x) + self.shortcut(x))

    def output_length(self, seq_len: int) -> int:
        return output_length(self.conv, seq_len)


@BACKBONES.register("regnet")
class RegNet(Backbone):
    """RegNet [1]_ in 1-D; RegNetY-400MF by default (widths 48-104-208-440, depths
    1-3-6-6, group width 8, SE).

    Parameters
    ----------
    in_channels : int, optional
        Leads on dim 1.
    variant : str, optional
        Preset design: ``"y_400mf"`` (default), ``"y_200mf"``, ``"y_800mf"``,
        ``"y_1.6gf"``, ``"x_200mf"``, ``"x_400mf"``.
    depth, w_0, w_a, w_m, group_width, se_ratio : optional
        Override the preset's design parameters (see :func:`regnet_widths`).
    stem_channels : int, optional
        Width of the stride-2 stem conv (32).
    kernel_size : int, optional
        Taps of the stem and grouped convolutions (3 as published).
    act : str, optional
        Activation name.

    Notes
    -----
    Output ``(batch, widths[-1], ceil(L / 32))`` (440 channels by default); four stages
    with reductions 4, 8, 16, 32.

    References
    ----------
    .. [1] I. Radosavovic et al., "Designing Network Design Spaces", CVPR 2020.

    Examples
    --------
    >>> BACKBONES.build("regnet").compute_features_output_shape(5000, 2)
    (2, 440, 157)
    """

    def __init__(self, in_channels: int = 12, variant: str = "y_400mf",
                 depth: Optional[int] = None, w_0: Optional[int] = None,
                 w_a: Optional[float] = None, w_m: Optional[float] = None,
                 group_width: Optional[int] = None, se_ratio: Optional[float] = None,
                 stem_channels: int = 32, kernel_size: int = 3, act: str = "relu"):
        super().__init__(in_channels)
        if variant not in _PRESETS:
            raise ValueError(f"variant must be one of {sorted(_PRESETS)}, got {variant!r}")
        given = (depth, w_0, w_a, w_m, group_width, se_ratio)
        depth, w_0, w_a, w_m, group_width, se_ratio = (
            p if v is None else v for p, v in zip(_PRESETS[variant], given))
        widths, depths, groups = regnet_widths(depth, w_0, w_a, w_m, group_width)
        self.stem = ConvBnAct(in_channels, stem_channels, kernel_size, stride=2, act=act)

        def block(slot, channels):
            s = slot.stage
            return RegNetBlock(channels, widths[s], 2 if slot.index == 0 else 1, groups[s],
                               se_ratio, kernel_size, act)

        self.stages, stage_channels = build_stages(stem_channels, depths, block)
        self._finish(stage_channels)
