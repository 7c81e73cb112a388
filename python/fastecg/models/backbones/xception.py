"""Xception in 1-D: depthwise-separable convolutions in residual blocks (entry, middle
and exit flows)."""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from ...registry import BACKBONES
from .._base import Backbone, output_length
from .._layers import ACTIVATIONS, ConvBnAct, init_weights

__all__ = ["SeparableConv", "XceptionBlock", "Xception"]


class SeparableConv(nn.Sequential):
    """Depthwise ``k``-tap conv -> pointwise 1x1 conv (no activation in between, as in
    Xception), then BN.

    Shapes: ``(batch, in_channels, L) -> (batch, out_channels, L)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__(
            nn.Conv1d(in_channels, in_channels, kernel_size, padding=kernel_size // 2,
                      groups=in_channels, bias=False),
            nn.Conv1d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm1d(out_channels),
        )
        self.out_channels = out_channels


class XceptionBlock(nn.Module):
    """``(act -> separable conv -> BN) * n`` [-> 3-tap max-pool of ``stride``] plus a
    shortcut (identity, or strided 1x1 conv -> BN when the shape changes).

    Parameters
    ----------
    in_channels : int
        Channels in.
    widths : sequence of int
        Output channels of each separable convolution.
    kernel_size : int, optional
        Taps of the depthwise convolutions; odd.
    stride : int, optional
        Stride of the closing max-pool (1: no pool).
    start_with_act : bool, optional
        Apply the activation before the first separable conv (all blocks but the first).
    act : str, optional
        Activation name in ``ACTIVATIONS``.

    Shapes: ``(batch, in_channels, L) -> (batch, widths[-1], ceil(L / stride))``.
    """

    def __init__(self, in_channels: int, widths: Sequence[int], kernel_size: int = 3,
                 stride: int = 1, start_with_act: bool = True, act: str = "relu"):
        super().__init__()
        layers, prev = [], in_channels
        for i, width in enumerate(widths):
            if i > 0 or start_with_act:
                layers.append(ACTIVATIONS.build(act))
            layers.append(SeparableConv(prev, width, kernel_size))
            prev = width
        if stride > 1:
            layers.append(nn.MaxPool1d(3, stride, 1))
        self.main = nn.Sequential(*layers)
        self.shortcut = (nn.Identity() if stride == 1 and in_channels == prev
                         else ConvBnAct(in_channels, prev, 1, stride, act=None))
        self.out_channels = prev

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x) + self.shortcut(x)

    def output_length(self, seq_len: int) -> int:
        return output_length(self.main, seq_len)


@BACKBONES.register("xception")
class Xception(Backbone):
    """Xception [1]_ in 1-D.

    Entry flow: two plain convolutions (the first of stride 2) and three residual blocks
    of two separable convolutions closed by a stride-2 max-pool (128, 256, 728 channels);
    middle flow: eight residual blocks of three separable convolutions (728); exit flow:
    a residual block (728, 1024) with a max-pool, then separable convolutions of 1536
    and 2048 channels, each followed by the activation.

    Parameters
    ----------
    in_channels : int, optional
        Leads on dim 1.
    width_mult : float, optional
        Multiplies every width, rounded to multiples of 8. The default 0.5 keeps the
        model moderate on a CPU; 1.0 gives the published widths (32 ... 2048).
    middle_blocks : int, optional
        Blocks of the middle flow (8).
    kernel_size : int, optional
        Taps of the depthwise convolutions; odd (3 as published).
    stem_kernel : int, optional
        Taps of the two stem convolutions; odd (3 as published).
    act : str, optional
        Activation name in ``ACTIVATIONS``.

    Notes
    -----
    Four stages: entry blocks 1 and 2 (reductions 4, 8), entry block 3 with the middle
    flow (16), the exit flow (32). ``forward_features`` gives
    ``(batch, 1024, ceil(L / 32))`` by default (2048 channels with ``width_mult=1``). The
    middle flow dominates the cost: per 12-lead 10 s record at 500 Hz, about 6 GMAC and
    21 M parameters at the published width, a quarter of that at the default 0.5.

    References
    ----------
    .. [1] F. Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions",
       CVPR 2017.

    Examples
    --------
    >>> BACKBONES.build("xception").compute_features_output_shape(5000, 2)
    (2, 1024, 157)
    """

    def __init__(self, in_channels: int = 12, width_mult: float = 0.5, middle_blocks: int = 8,
                 kernel_size: int = 3, stem_kernel: int = 3, act: str = "relu"):
        super().__init__(in_channels)
        for what, k in (("kernel_size", kernel_size), ("stem_kernel", stem_kernel)):
            if k < 1 or k % 2 == 0:
                raise ValueError(f"{what} must be a positive odd number, got {k}")
        if not width_mult > 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")

        def w(c: int) -> int:
            return max(8, int(round(c * width_mult / 8)) * 8)

        self.stem = nn.Sequential(
            ConvBnAct(in_channels, w(32), stem_kernel, stride=2, act=act),
            ConvBnAct(w(32), w(64), stem_kernel, act=act))
        entry1 = XceptionBlock(w(64), (w(128),) * 2, kernel_size, 2, False, act)
        entry2 = XceptionBlock(w(128), (w(256),) * 2, kernel_size, 2, True, act)
        entry3 = XceptionBlock(w(256), (w(728),) * 2, kernel_size, 2, True, act)
        middle = [XceptionBlock(w(728), (w(728),) * 3, kernel_size, 1, True, act)
                  for _ in range(middle_blocks)]
        exit_flow = nn.Sequential(
            XceptionBlock(w(728), (w(728), w(1024)), kernel_size, 2, True, act),
            SeparableConv(w(1024), w(1536), kernel_size), ACTIVATIONS.build(act),
            SeparableConv(w(1536), w(2048), kernel_size), ACTIVATIONS.build(act))
        self.stages = nn.ModuleList([entry1, entry2, nn.Sequential(entry3, *middle),
                                     exit_flow])
        init_weights(self)
        for m in self.modules():
            if isinstance(m, SeparableConv):
                # He's rule on each factor: the depthwise filter reads a ReLU output
                # through its own taps (fan-in per group), the pointwise conv a linear
                # one; fan-out over all channels shrank every separable conv by about
                # its width in eval mode at initialisation
                init_weights(m[0], mode="fan_in")
                init_weights(m[1], mode="fan_in", nonlinearity="linear")
        self._finish([w(128), w(256), w(728), w(2048)])
