"""VGG-16 in 1-D: five blocks of "same"-padded convolutions, each ended by a max-pool."""

from __future__ import annotations

from typing import Sequence

from torch import nn

from ...registry import BACKBONES
from .._base import Backbone
from .._layers import ConvBnAct, build_stages, init_weights

__all__ = ["VGG"]


@BACKBONES.register("vgg16")
class VGG(Backbone):
    """VGG-16 [1]_ in 1-D, with batch norm (torchvision's ``vgg16_bn``).

    Parameters
    ----------
    in_channels : int, optional
        Leads on dim 1.
    num_convs : sequence of int, optional
        Convolutions per block (``(2, 2, 3, 3, 3)``: VGG-16; ``(2, 2, 4, 4, 4)``: VGG-19).
    widths : sequence of int, optional
        Channels of each block's convolutions.
    kernel_size : int, optional
        Taps of every convolution; odd (3 as published).
    pool_size : int, optional
        Kernel and stride of the max-pool ending each block (2).
    batch_norm : bool, optional
        Conv -> BN -> act (``True``) or conv (with bias) -> act as in the original.
    act : str, optional
        Activation name in ``ACTIVATIONS``.

    Notes
    -----
    The stem is empty; each block is one stage, so ``feature_info`` has the reductions
    2, 4, 8, 16, 32 and ``forward_features`` gives ``(batch, 512, floor(L / 32))``
    (the pooled output of the last block, before the classifier).

    References
    ----------
    .. [1] K. Simonyan and A. Zisserman, "Very Deep Convolutional Networks for
       Large-Scale Image Recognition", ICLR 2015.

    Examples
    --------
    >>> BACKBONES.build("vgg16").compute_features_output_shape(5000, 2)
    (2, 512, 156)
    """

    def __init__(self, in_channels: int = 12, num_convs: Sequence[int] = (2, 2, 3, 3, 3),
                 widths: Sequence[int] = (64, 128, 256, 512, 512), kernel_size: int = 3,
                 pool_size: int = 2, batch_norm: bool = True, act: str = "relu"):
        super().__init__(in_channels)
        if len(num_convs) != len(widths):
            raise ValueError(f"num_convs ({len(num_convs)} blocks) and widths "
                             f"({len(widths)} blocks) differ in length")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
        if min(num_convs) < 1:
            raise ValueError(f"every block needs at least one conv, got {num_convs}")
        self.stem = nn.Identity()

        def block(slot, channels):
            if slot.index == num_convs[slot.stage]:
                return nn.MaxPool1d(pool_size, pool_size)
            return ConvBnAct(channels, widths[slot.stage], kernel_size, act=act, bn=batch_norm)

        self.stages, stage_channels = build_stages(in_channels, [n + 1 for n in num_convs],
                                                   block)
        init_weights(self)
        self._finish(stage_channels)
