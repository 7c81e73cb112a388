"""DenseNet in 1-D: dense blocks (each layer sees every earlier layer's features)
joined by compressing transitions; by default DenseNet-121."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ...registry import BACKBONES
from .._base import Backbone, output_length
from .._layers import ACTIVATIONS, ConvBnAct, build_stages, init_weights

__all__ = ["DenseLayer", "DenseBlock", "Transition", "DenseNet"]


class DenseLayer(nn.Module):
    """BN -> act -> 1x1 conv (``bn_size * growth_rate``) -> BN -> act -> ``k``-tap conv
    (``growth_rate``), concatenated to its input.

    Shapes: ``(batch, C, L) -> (batch, C + growth_rate, L)``.
    """

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int = 4,
                 kernel_size: int = 3, act: str = "relu", dropout: float = 0.0):
        super().__init__()
        mid = bn_size * growth_rate
        self.main = nn.Sequential(
            nn.BatchNorm1d(in_channels), ACTIVATIONS.build(act),
            nn.Conv1d(in_channels, mid, 1, bias=False),
            nn.BatchNorm1d(mid), ACTIVATIONS.build(act),
            nn.Conv1d(mid, growth_rate, kernel_size, padding=kernel_size // 2, bias=False),
            nn.Dropout(dropout),
        )
        self.out_channels = in_channels + growth_rate

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.main(x)], dim=1)

    def output_length(self, seq_len: int) -> int:
        return output_length(self.main, seq_len)


class DenseBlock(nn.Sequential):
    """``num_layers`` :class:`DenseLayer` in sequence; the channels grow by
    ``num_layers * growth_rate``."""

    def __init__(self, in_channels: int, num_layers: int, growth_rate: int, bn_size: int = 4,
                 kernel_size: int = 3, act: str = "relu", dropout: float = 0.0):
        layers = []
        for _ in range(num_layers):
            layers.append(DenseLayer(in_channels, growth_rate, bn_size, kernel_size, act,
                                     dropout))
            in_channels = layers[-1].out_channels
        super().__init__(*layers)
        self.out_channels = in_channels


class Transition(nn.Sequential):
    """BN -> act -> 1x1 conv (compression) -> average pool of 2."""

    def __init__(self, in_channels: int, out_channels: int, act: str = "relu"):
        super().__init__(nn.BatchNorm1d(in_channels), ACTIVATIONS.build(act),
                         nn.Conv1d(in_channels, out_channels, 1, bias=False),
                         nn.AvgPool1d(2, 2))
        self.out_channels = out_channels


@BACKBONES.register("densenet")
class DenseNet(Backbone):
    """DenseNet [1]_ in 1-D; the defaults give DenseNet-121 (blocks of 6, 12, 24, 16
    layers, growth rate 32, compression 0.5).

    Parameters
    ----------
    in_channels : int, optional
        Leads on dim 1.
    block_config : sequence of int, optional
        Layers per dense block (``(6, 12, 24, 16)``: 121; ``(6, 12, 32, 32)``: 169).
    growth_rate : int, optional
        Channels each layer adds.
    init_channels : int, optional
        Channels of the stem convolution (``2 * growth_rate`` as published).
    bn_size : int, optional
        Bottleneck width of each layer, in multiples of ``growth_rate``.
    compression : float, optional
        Channel ratio kept by each transition.
    kernel_size : int, optional
        Taps of each layer's ``k x k`` convolution; odd (3 as published).
    stem_kernel : int, optional
        Taps of the stride-2 stem convolution (15: the published 7x7 widened to 30 ms at
        500 Hz), followed by a 3-tap max-pool of stride 2.
    act : str, optional
        Activation name in ``ACTIVATIONS``.
    dropout : float, optional
        Dropout after each layer's convolution.

    Notes
    -----
    Stage ``i`` is the transition before dense block ``i`` (none for the first) and the
    block, so ``feature_info`` reports the dense blocks' outputs (256, 512, 1024, 1024
    channels; reductions 4, 8, 16, 32), as timm does. The last stage ends with BN -> act;
    ``forward_features`` gives ``(batch, 1024, floor(ceil(L / 4) / 8))``.

    References
    ----------
    .. [1] G. Huang, Z. Liu, L. van der Maaten and K. Q. Weinberger, "Densely Connected
       Convolutional Networks", CVPR 2017.

    Examples
    --------
    >>> BACKBONES.build("densenet").compute_features_output_shape(5000, 2)
    (2, 1024, 156)
    """

    def __init__(self, in_channels: int = 12, block_config: Sequence[int] = (6, 12, 24, 16),
                 growth_rate: int = 32, init_channels: int = 64, bn_size: int = 4,
                 compression: float = 0.5, kernel_size: int = 3, stem_kernel: int = 15,
                 act: str = "relu", dropout: float = 0.0):
        super().__init__(in_channels)
        for what, k in (("kernel_size", kernel_size), ("stem_kernel", stem_kernel)):
            if k < 1 or k % 2 == 0:
                raise ValueError(f"{what} must be a positive odd number, got {k}")
        if not 0 < compression <= 1:
            raise ValueError(f"compression must be in (0, 1], got {compression}")
        self.stem = nn.Sequential(
            ConvBnAct(in_channels, init_channels, stem_kernel, stride=2, act=act),
            nn.MaxPool1d(3, 2, 1))

        def block(slot, channels):
            if slot.stage > 0 and slot.index == 0:
                return Transition(channels, int(channels * compression), act)
            return DenseBlock(channels, block_config[slot.stage], growth_rate, bn_size,
                              kernel_size, act, dropout)

        # every stage but the first opens with a transition
        depths = [1] + [2] * (len(block_config) - 1)
        self.stages, stage_channels = build_stages(
            init_channels, depths, block,
            tail=lambda c: [nn.BatchNorm1d(c), ACTIVATIONS.build(act)])
        init_weights(self, mode="fan_in")
        self._finish(stage_channels)
