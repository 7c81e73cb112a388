"""ResNets in 1-D: basic and bottleneck residual networks, and Hannun et al.'s ECG ResNet.

:class:`ResNet` follows He et al. (basic blocks for 18/34 layers, bottlenecks with the
stride on the middle convolution -- "ResNet-B", torchvision's v1.5 -- for 50 layers); a
2-D ``k x k`` convolution becomes ``k`` taps along time, and the stem is a 15-tap
convolution of stride 2 (30 ms at 500 Hz) followed by a 3-tap max-pool of stride 2.
One stage per group of blocks of equal width, so ``feature_info`` reports the reductions
4, 8, 16, 32 with the default strides.

:class:`HannunResNet` is the 34-layer network of Hannun et al. (2019), registered as
``resnet_nature_comm``: pre-activation blocks with 16-tap convolutions, max-pool
shortcuts and zero-padded channels.

Every residual block defines ``output_length`` (its main path's), and the shortcut is
built so that both paths agree for every input length (odd kernels with centred padding
against a strided 1x1 convolution; for 16 taps, padding ``(16 - stride) / 2`` against a
max-pool of ``stride``).
"""

from __future__ import annotations

from typing import Sequence, Union

import torch.nn.functional as F
from torch import Tensor, nn

from ...registry import BACKBONES
from .._base import Backbone, output_length
from .._layers import (ACTIVATIONS, ConvBnAct, DropPath, SqueezeExcite, build_stages,
                       init_weights)

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "HannunBlock", "HannunResNet"]


def _per_stage(value: Union[int, Sequence[int]], n: int, what: str) -> list[int]:
    """Broadcast an int to ``n`` stages, or check a sequence has ``n`` entries."""
    if isinstance(value, int):
        return [value] * n
    value = [int(v) for v in value]
    if len(value) != n:
        raise ValueError(f"{what} has {len(value)} entries for {n} stages: {value}")
    return value


def _check_odd(kernel_size: int, what: str = "kernel_size") -> None:
    # an even kernel with centred padding shortens the main path by one sample, and the
    # residual sum would then fail for some lengths
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"{what} must be a positive odd number, got {kernel_size}")


class _ResidualBlock(nn.Module):
    """``act(drop_path(main(x)) + shortcut(x))``; subclasses build ``main`` and
    ``shortcut`` so that both give the same length for every input length."""

    expansion = 1

    def _finish_block(self, layers: list, in_channels: int, out_channels: int, stride: int,
                      act: str, se_ratio: float, drop_path: float) -> None:
        if se_ratio > 0:
            layers.append(SqueezeExcite(out_channels, se_ratio, act=act))
        self.main = nn.Sequential(*layers)
        self.shortcut = (nn.Identity() if stride == 1 and in_channels == out_channels
                         else ConvBnAct(in_channels, out_channels, 1, stride, act=None))
        self.drop_path = DropPath(drop_path)
        self.act = ACTIVATIONS.build(act)
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.drop_path(self.main(x)) + self.shortcut(x))

    def output_length(self, seq_len: int) -> int:
        return output_length(self.main, seq_len)


class BasicBlock(_ResidualBlock):
    """Two ``k``-tap convolutions with a residual connection (ResNet-18/34).

    Parameters
    ----------
    in_channels : int
        Channels in.
    planes : int
        Channels of both convolutions and of the output (``expansion = 1``).
    kernel_size : int, optional
        Taps of both convolutions; odd.
    stride : int, optional
        Stride of the first convolution and of the shortcut's 1x1 projection.
    groups, base_width : int, optional
        Accepted for a uniform interface; must be 1 and 64.
    act : str, optional
        Activation name in ``ACTIVATIONS``.
    se_ratio : float, optional
        Squeeze-excitation bottleneck ratio after the second conv; 0 leaves it out.
    drop_path : float, optional
        Stochastic-depth probability of the residual branch.

    Shapes: ``(batch, in_channels, L) -> (batch, planes, ceil(L / stride))``.
    """

    expansion = 1

    def __init__(self, in_channels: int, planes: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1, base_width: int = 64, act: str = "relu",
                 se_ratio: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError(f"BasicBlock supports groups=1 and base_width=64, got "
                             f"groups={groups}, base_width={base_width}")
        _check_odd(kernel_size)
        out_channels = planes * self.expansion
        layers = [ConvBnAct(in_channels, planes, kernel_size, stride, act=act),
                  ConvBnAct(planes, out_channels, kernel_size, act=None)]
        self._finish_block(layers, in_channels, out_channels, stride, act, se_ratio,
                           drop_path)


class Bottleneck(_ResidualBlock):
    """1x1 reduce -> ``k``-tap (strided, grouped) -> 1x1 expand, with a residual
    connection (ResNet-50 and up; the stride sits on the middle conv, "ResNet-B").

    Parameters
    ----------
    in_channels : int
        Channels in.
    planes : int
        Base width; the output has ``planes * 4`` channels and the middle conv
        ``planes * base_width / 64 * groups`` (ResNeXt's rule).
    kernel_size : int, optional
        Taps of the middle convolution; odd.
    stride : int, optional
        Stride of the middle convolution and of the shortcut's projection.
    groups : int, optional
        Groups of the middle convolution (ResNeXt's cardinality).
    base_width : int, optional
        Width per group at ``planes = 64``.
    act, se_ratio, drop_path
        As in :class:`BasicBlock`.

    Shapes: ``(batch, in_channels, L) -> (batch, 4 * planes, ceil(L / stride))``.
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1, base_width: int = 64, act: str = "relu",
                 se_ratio: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        _check_odd(kernel_size)
        width = int(planes * base_width / 64) * groups
        if width < 1:
            raise ValueError(f"Bottleneck: planes={planes} with base_width={base_width} gives "
                             f"{width} inner channels (planes * base_width / 64 * groups must "
                             "be at least 1)")
        out_channels = planes * self.expansion
        layers = [ConvBnAct(in_channels, width, 1, act=act),
                  ConvBnAct(width, width, kernel_size, stride, groups=groups, act=act),
                  ConvBnAct(width, out_channels, 1, act=None)]
        self._finish_block(layers, in_channels, out_channels, stride, act, se_ratio,
                           drop_path)


_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


@BACKBONES.register("resnet")
class ResNet(Backbone):
    """ResNet [1]_ in 1-D, basic or bottleneck blocks; by default a ResNet-18.

    Parameters
    ----------
    in_channels : int, optional
        Leads on dim 1.
    block : {"basic", "bottleneck"}, optional
        Residual block type.
    layers : sequence of int, optional
        Blocks per stage (``(2, 2, 2, 2)``: ResNet-18).
    widths : sequence of int, optional
        ``planes`` per stage; a bottleneck stage outputs ``4 * planes`` channels.
    strides : sequence of int, optional
        Stride of each stage's first block.
    kernel_size : int or sequence of int, optional
        Taps of the blocks' ``k x k`` convolutions, one value or one per stage; odd
        (3 as published).
    stem_channels, stem_kernel, stem_stride : int, optional
        The stem convolution (64 channels, 15 taps, stride 2: the published 7x7/2 stem
        widened to 30 ms at 500 Hz).
    stem_pool : bool, optional
        Follow the stem with a 3-tap max-pool of stride 2.
    groups, base_width : int, optional
        ResNeXt cardinality and width per group of bottleneck blocks.
    act : str, optional
        Activation name in ``ACTIVATIONS``.
    se_ratio : float, optional
        Squeeze-excitation ratio in every block (0: none).
    drop_path_rate : float, optional
        Stochastic-depth probability of the last block, rising linearly from 0 at the
        first block (:func:`~fastecg.models._layers.drop_path_rates`).
    zero_init_residual : bool, optional
        Zero the last BN weight of every residual branch, so that blocks start as
        identities.

    Notes
    -----
    With the defaults, ``forward_features`` gives ``(batch, 512, ceil(L / 32))``, and the
    stages have reductions 4, 8, 16, 32. Presets: ``resnet18``, ``resnet34``,
    ``resnet50``, ``resnet_n``, ``resnet_n_bottleneck``.

    References
    ----------
    .. [1] K. He, X. Zhang, S. Ren and J. Sun, "Deep Residual Learning for Image
       Recognition", CVPR 2016.

    Examples
    --------
    >>> net = BACKBONES.build("resnet")
    >>> net.compute_features_output_shape(5000, batch_size=2)
    (2, 512, 157)
    """

    def __init__(self, in_channels: int = 12, block: str = "basic",
                 layers: Sequence[int] = (2, 2, 2, 2),
                 widths: Sequence[int] = (64, 128, 256, 512),
                 strides: Sequence[int] = (1, 2, 2, 2),
                 kernel_size: Union[int, Sequence[int]] = 3,
                 stem_channels: int = 64, stem_kernel: int = 15, stem_stride: int = 2,
                 stem_pool: bool = True, groups: int = 1, base_width: int = 64,
                 act: str = "relu", se_ratio: float = 0.0, drop_path_rate: float = 0.0,
                 zero_init_residual: bool = False):
        super().__init__(in_channels)
        if block not in _BLOCKS:
            raise ValueError(f"block must be one of {sorted(_BLOCKS)}, got {block!r}")
        block_cls = _BLOCKS[block]
        n = len(layers)
        widths = _per_stage(widths, n, "widths")
        strides = _per_stage(strides, n, "strides")
        kernels = _per_stage(kernel_size, n, "kernel_size")
        _check_odd(stem_kernel, "stem_kernel")
        stem = [ConvBnAct(in_channels, stem_channels, stem_kernel, stem_stride, act=act)]
        if stem_pool:
            stem.append(nn.MaxPool1d(3, 2, 1))
        self.stem = nn.Sequential(*stem)

        if min(layers) < 1:
            raise ValueError(f"every stage needs at least one block, got layers={layers}")

        def block(slot, channels):
            s, stride = slot.stage, strides[slot.stage] if slot.index == 0 else 1
            return block_cls(channels, widths[s], kernels[s], stride, groups, base_width, act,
                             se_ratio, slot.drop_path)

        self.stages, stage_channels = build_stages(stem_channels, layers, block,
                                                   drop_path_rate)
        init_weights(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, _ResidualBlock):
                    last_bn = [b for b in m.main.modules() if isinstance(b, nn.BatchNorm1d)][-1]
                    nn.init.zeros_(last_bn.weight)
        self._finish(stage_channels)


@BACKBONES.register("resnet18")
def resnet18(in_channels: int = 12, **kwargs) -> ResNet:
    """ResNet-18 [1]_ in 1-D: basic blocks ``(2, 2, 2, 2)``, widths 64-512, 3 taps.

    Output ``(batch, 512, ceil(L / 32))``. Keyword arguments override :class:`ResNet`'s.

    References
    ----------
    .. [1] K. He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
    """
    return ResNet(in_channels, **{"block": "basic", "layers": (2, 2, 2, 2), **kwargs})


@BACKBONES.register("resnet34")
def resnet34(in_channels: int = 12, **kwargs) -> ResNet:
    """ResNet-34 [1]_ in 1-D: basic blocks ``(3, 4, 6, 3)``, widths 64-512, 3 taps.

    Output ``(batch, 512, ceil(L / 32))``. Keyword arguments override :class:`ResNet`'s.

    References
    ----------
    .. [1] K. He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
    """
    return ResNet(in_channels, **{"block": "basic", "layers": (3, 4, 6, 3), **kwargs})


@BACKBONES.register("resnet50")
def resnet50(in_channels: int = 12, **kwargs) -> ResNet:
    """ResNet-50 [1]_ in 1-D: bottlenecks ``(3, 4, 6, 3)``, stride on the middle conv.

    Output ``(batch, 2048, ceil(L / 32))``. Keyword arguments override :class:`ResNet`'s.

    References
    ----------
    .. [1] K. He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
    """
    return ResNet(in_channels, **{"block": "bottleneck", "layers": (3, 4, 6, 3), **kwargs})


@BACKBONES.register("resnet_n")
def resnet_n(in_channels: int = 12, **kwargs) -> ResNet:
    """A narrow-depth ResNet for ECG: one basic block per stage, kernels shrinking
    19, 15, 11, 7 with depth (torch_ecg's ``resnetN``).

    Output ``(batch, 512, ceil(L / 32))``. Keyword arguments override :class:`ResNet`'s.
    """
    return ResNet(in_channels, **{"block": "basic", "layers": (1, 1, 1, 1),
                                  "kernel_size": (19, 15, 11, 7), **kwargs})


@BACKBONES.register("resnet_n_bottleneck")
def resnet_n_bottleneck(in_channels: int = 12, **kwargs) -> ResNet:
    """:func:`resnet_n` with bottleneck blocks (torch_ecg's ``resnetNB``): one ResNet-B
    bottleneck per stage, middle kernels 19, 15, 11, 7.

    Output ``(batch, 2048, ceil(L / 32))``. Keyword arguments override :class:`ResNet`'s.
    """
    return ResNet(in_channels, **{"block": "bottleneck", "layers": (1, 1, 1, 1),
                                  "kernel_size": (19, 15, 11, 7), **kwargs})


# -- Hannun et al. 2019 ------------------------------------------------------------

def _strided_padding(kernel_size: int, stride: int):
    """Padding for which a ``kernel_size``-tap conv of ``stride`` gives ``floor(L / stride)``
    samples, as a max-pool of ``stride`` does: ``(kernel_size - stride) / 2``."""
    if (kernel_size - stride) % 2 or kernel_size < stride:
        raise ValueError(f"kernel_size - stride must be even and >= 0 for the conv to match "
                         f"the max-pool shortcut, got kernel_size={kernel_size}, "
                         f"stride={stride}")
    return (kernel_size - stride) // 2


def _same_conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """Stride-1 conv keeping the length; an even kernel gets the extra zero on the right
    (TensorFlow's "same", as in the Keras original), padded explicitly because PyTorch's
    ``padding="same"`` warns about the copy it makes for even kernels."""
    return nn.Sequential(
        nn.ConstantPad1d(((kernel_size - 1) // 2, kernel_size // 2), 0.0),
        nn.Conv1d(in_channels, out_channels, kernel_size, bias=False))


class HannunBlock(nn.Module):
    """Pre-activation residual block of Hannun et al. [1]_.

    ``[BN -> ReLU] -> conv(k, stride) -> BN -> ReLU -> dropout -> conv(k)``, plus a
    shortcut that max-pools by ``stride`` and zero-pads the new channels.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and out (``out_channels >= in_channels``).
    kernel_size : int, optional
        Taps of both convolutions (16 in the paper).
    stride : int, optional
        Subsampling of the block.
    dropout : float, optional
        Dropout between the two convolutions.
    preact : bool, optional
        Start with BN -> ReLU; the network's first block leaves it out (the stem ends
        with one).

    Shapes: ``(batch, in_channels, L) -> (batch, out_channels, floor(L / stride))``.

    References
    ----------
    .. [1] A. Y. Hannun et al., "Cardiologist-level arrhythmia detection and
       classification in ambulatory electrocardiograms using a deep neural network",
       Nature Medicine 25, 65-69, 2019.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 16,
                 stride: int = 1, dropout: float = 0.2, preact: bool = True):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"out_channels ({out_channels}) < in_channels ({in_channels}): "
                             f"the zero-padded shortcut can only add channels")
        layers = [nn.BatchNorm1d(in_channels), nn.ReLU()] if preact else []
        layers += [
            (_same_conv(in_channels, out_channels, kernel_size) if stride == 1 else
             nn.Conv1d(in_channels, out_channels, kernel_size, stride,
                       _strided_padding(kernel_size, stride), bias=False)),
            nn.BatchNorm1d(out_channels), nn.ReLU(), nn.Dropout(dropout),
            _same_conv(out_channels, out_channels, kernel_size),
        ]
        self.main = nn.Sequential(*layers)
        self.pool = nn.MaxPool1d(stride) if stride > 1 else nn.Identity()
        self.extra_channels = out_channels - in_channels
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        shortcut = self.pool(x)
        if self.extra_channels:
            shortcut = F.pad(shortcut, (0, 0, 0, self.extra_channels))
        return self.main(x) + shortcut

    def output_length(self, seq_len: int) -> int:
        return output_length(self.main, seq_len)


@BACKBONES.register("resnet_nature_comm")
class HannunResNet(Backbone):
    """The 34-layer ECG ResNet of Hannun et al. [1]_ (Stanford; torch_ecg's
    ``resnet_nature_comm``).

    A 16-tap conv stem (32 filters) -> BN -> ReLU, then 16 pre-activation residual blocks
    of two 16-tap convolutions; filters ``32 * 2**k`` for the ``k``-th group of four
    blocks, every other block subsamples by 2; a final BN -> ReLU.

    Parameters
    ----------
    in_channels : int, optional
        Leads on dim 1 (the paper used a single lead).
    num_blocks : int, optional
        Residual blocks (16).
    base_filters : int, optional
        Filters of the stem and the first group (32).
    increase_channels_at : int, optional
        Blocks per group; the filters double at each group, which is one stage (4).
    subsample_every : int, optional
        Blocks ``subsample_every - 1``, ``2 * subsample_every - 1``, ... subsample by 2.
    kernel_size : int, optional
        Taps of every convolution (16); ``kernel_size - 2`` must be even.
    dropout : float, optional
        Dropout inside each block (0.2).

    Notes
    -----
    Output ``(batch, 256, floor(L / 256))``; four stages with reductions 4, 16, 64, 256.
    Strided convolutions use padding ``(k - 2) / 2`` so that their output length,
    ``floor(L / 2)``, matches the max-pool shortcut for every ``L`` (the Keras original
    used "same" padding, which disagrees with its pool for odd lengths). About 10.5 M
    parameters with 12 leads.

    References
    ----------
    .. [1] A. Y. Hannun et al., "Cardiologist-level arrhythmia detection and
       classification in ambulatory electrocardiograms using a deep neural network",
       Nature Medicine 25, 65-69, 2019.

    Examples
    --------
    >>> BACKBONES.build("resnet_nature_comm").compute_features_output_shape(5000, 2)
    (2, 256, 19)
    """

    def __init__(self, in_channels: int = 12, num_blocks: int = 16, base_filters: int = 32,
                 increase_channels_at: int = 4, subsample_every: int = 2,
                 kernel_size: int = 16, dropout: float = 0.2):
        super().__init__(in_channels)
        if num_blocks < 1 or increase_channels_at < 1 or subsample_every < 1:
            raise ValueError(f"num_blocks, increase_channels_at and subsample_every must be "
                             f">= 1, got {num_blocks}, {increase_channels_at}, "
                             f"{subsample_every}")
        self.stem = nn.Sequential(_same_conv(in_channels, base_filters, kernel_size),
                                  nn.BatchNorm1d(base_filters), nn.ReLU())
        # one stage per group of equal width; the last group may be shorter
        depths = [min(increase_channels_at, num_blocks - start)
                  for start in range(0, num_blocks, increase_channels_at)]

        def block(slot, channels):
            stride = 2 if slot.block % subsample_every == subsample_every - 1 else 1
            return HannunBlock(channels, base_filters * 2 ** slot.stage, kernel_size, stride,
                               dropout, preact=slot.block > 0)

        self.stages, stage_channels = build_stages(
            base_filters, depths, block, tail=lambda c: [nn.BatchNorm1d(c), nn.ReLU()])
        init_weights(self)
        self._finish(stage_channels)
