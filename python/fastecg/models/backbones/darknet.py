"""Darknet-53 in 1-D: YOLOv3's backbone of strided convolutions and 1x1/3-tap residual
blocks with leaky ReLU."""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from ...registry import BACKBONES
from .._base import Backbone, output_length
from .._layers import ConvBnAct, build_stages, damp_residual_branch, init_weights

__all__ = ["DarknetResidual", "Darknet"]


def _leaky(slope: float) -> dict:
    return {"name": "leaky_relu", "negative_slope": slope}


class DarknetResidual(nn.Module):
    """1x1 conv to half the channels -> ``k``-tap conv back, plus the input.

    Shapes: ``(batch, C, L) -> (batch, C, L)``.
    """

    def __init__(self, channels: int, kernel_size: int = 3, slope: float = 0.1):
        super().__init__()
        self.main = nn.Sequential(
            ConvBnAct(channels, channels // 2, 1, act=_leaky(slope)),
            ConvBnAct(channels // 2, channels, kernel_size, act=_leaky(slope)))
        self.out_channels = channels

    def forward(self, x: Tensor) -> Tensor:
        return x + self.main(x)

    def output_length(self, seq_len: int) -> int:
        return output_length(self.main, seq_len)


@BACKBONES.register("darknet")
class Darknet(Backbone):
    """Darknet-53 [1]_ in 1-D.

    A stem convolution (32 channels), then five stages, each a stride-2 ``k``-tap
    convolution doubling the channels (64 ... 1024) followed by 1, 2, 8, 8, 4 residual
    blocks; batch norm and leaky ReLU (slope 0.1) after every convolution.

    Parameters
    ----------
    in_channels : int, optional
        Leads on dim 1.
    layers : sequence of int, optional
        Residual blocks per stage (``(1, 2, 8, 8, 4)``: Darknet-53).
    widths : sequence of int, optional
        Output channels of each stage.
    stem_channels : int, optional
        Channels of the stem convolution.
    kernel_size : int, optional
        Taps of the downsampling and residual convolutions; odd (3 as published).
    stem_kernel, stem_stride : int, optional
        The stem convolution. The published stem is 3 taps of stride 1; the default
        15 taps of stride 2 (30 ms at 500 Hz) halves the cost of every later layer.
    slope : float, optional
        Negative slope of the leaky ReLU.

    Notes
    -----
    ``forward_features`` gives ``(batch, 1024, ceil(L / 64))`` with the default stem
    (``ceil(L / 32)`` with ``stem_stride=1``); the stages have reductions 4, 8, 16, 32,
    64.

    References
    ----------
    .. [1] J. Redmon and A. Farhadi, "YOLOv3: An Incremental Improvement",
       arXiv:1804.02767, 2018.

    Examples
    --------
    >>> BACKBONES.build("darknet").compute_features_output_shape(5000, 2)
    (2, 1024, 79)
    """

    def __init__(self, in_channels: int = 12, layers: Sequence[int] = (1, 2, 8, 8, 4),
                 widths: Sequence[int] = (64, 128, 256, 512, 1024), stem_channels: int = 32,
                 kernel_size: int = 3, stem_kernel: int = 15, stem_stride: int = 2,
                 slope: float = 0.1):
        super().__init__(in_channels)
        if len(layers) != len(widths):
            raise ValueError(f"layers ({len(layers)} stages) and widths ({len(widths)} "
                             f"stages) differ in length")
        for what, k in (("kernel_size", kernel_size), ("stem_kernel", stem_kernel)):
            if k < 1 or k % 2 == 0:
                raise ValueError(f"{what} must be a positive odd number, got {k}")
        self.stem = ConvBnAct(in_channels, stem_channels, stem_kernel, stem_stride,
                              act=_leaky(slope))

        def block(slot, channels):
            if slot.index == 0:  # each stage opens with a strided conv to its width
                return ConvBnAct(channels, widths[slot.stage], kernel_size, 2,
                                 act=_leaky(slope))
            return DarknetResidual(channels, kernel_size, slope)

        self.stages, stage_channels = build_stages(stem_channels, [d + 1 for d in layers],
                                                   block)
        init_weights(self, nonlinearity="leaky_relu", negative_slope=slope)
        for m in self.modules():
            if isinstance(m, DarknetResidual):
                # the branch ends in a leaky ReLU, so full-amplitude branches pile up a
                # positive mean over the 8-block stages (about 5e3 x the input in eval)
                damp_residual_branch(m.main)
        self._finish(stage_channels)
