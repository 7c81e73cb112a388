"""Building blocks shared by the backbones: layers, the stage builder, the weight
initialisation and the stochastic-depth schedule."""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence

import torch
from torch import Tensor, nn

from ..registry import Registry
from ._base import output_length

__all__ = ["ACTIVATIONS", "make_divisible", "ConvBnAct", "SqueezeExcite", "DropPath",
           "SkipBlock", "drop_path_rates", "BlockSlot", "build_stages", "init_weights",
           "damp_residual_branch", "init_skip_blocks"]

ACTIVATIONS = Registry("activation")
for _name, _cls in [("relu", nn.ReLU), ("relu6", nn.ReLU6), ("gelu", nn.GELU),
                    ("silu", nn.SiLU), ("swish", nn.SiLU), ("mish", nn.Mish),
                    ("leaky_relu", nn.LeakyReLU), ("hardswish", nn.Hardswish),
                    ("hardsigmoid", nn.Hardsigmoid), ("sigmoid", nn.Sigmoid),
                    ("tanh", nn.Tanh), ("identity", nn.Identity)]:
    ACTIVATIONS.register(_name)(_cls)


def make_divisible(value: float, divisor: int = 8, min_value: Optional[int] = None) -> int:
    """Round a channel count to a multiple of ``divisor`` without losing more than 10%
    (the MobileNet/EfficientNet rule)."""
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


class ConvBnAct(nn.Sequential):
    """``Conv1d -> BatchNorm1d -> activation``, "same"-style padding ``dilation*(k-1)//2``.

    ``act=None`` or ``"identity"`` leaves out the activation (a linear projection).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, groups: int = 1, dilation: int = 1,
                 act: Optional[str] = "relu", bn: bool = True, bias: Optional[bool] = None):
        padding = dilation * (kernel_size - 1) // 2
        layers = [nn.Conv1d(in_channels, out_channels, kernel_size, stride, padding,
                            dilation=dilation, groups=groups,
                            bias=(not bn) if bias is None else bias)]
        if bn:
            layers.append(nn.BatchNorm1d(out_channels))
        if act not in (None, "identity"):
            layers.append(ACTIVATIONS.build(act))
        super().__init__(*layers)
        self.out_channels = out_channels


class SqueezeExcite(nn.Module):
    """Channel gating: ``x * gate(mean_t(x))`` (Hu et al. 2018); keeps the length."""

    def __init__(self, channels: int, reduction: float = 0.25, act: str = "relu",
                 gate: str = "sigmoid", reduced: Optional[int] = None):
        super().__init__()
        # (floored as channels // r for a fraction 1/r, whose float product can fall just
        # short: 98 * (1/49) is 1.9999999999999998)
        reduced = reduced or max(1, int(round(channels * reduction, 9)))
        self.fc1 = nn.Conv1d(channels, reduced, 1)
        self.act = ACTIVATIONS.build(act)
        self.fc2 = nn.Conv1d(reduced, channels, 1)
        self.gate = ACTIVATIONS.build(gate)

    def forward(self, x: Tensor) -> Tensor:
        s = x.mean(dim=-1, keepdim=True)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))

    def output_length(self, seq_len: int) -> int:
        return seq_len


class DropPath(nn.Module):
    """Stochastic depth: drops a whole residual branch per sample while training."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class SkipBlock(nn.Module):
    """``x + drop_path(conv(x))`` when the block keeps the shape (stride 1, same channels),
    else ``conv(x)``: the inverted-residual pattern of MobileNet v2/v3 and EfficientNet.
    Subclasses build their layers and call :meth:`_set_body`."""

    def _set_body(self, layers, in_channels: int, out_channels: int, stride: int,
                  drop_path: float = 0.0) -> None:
        self.conv = nn.Sequential(*layers)
        self.has_skip = stride == 1 and in_channels == out_channels
        self.drop_path = DropPath(drop_path) if self.has_skip and drop_path > 0 else nn.Identity()
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        if self.has_skip:
            out = x + self.drop_path(out)
        return out

    def output_length(self, seq_len: int) -> int:
        return output_length(self.conv, seq_len)


def drop_path_rates(drop_path_rate: float, n_blocks: int) -> list[float]:
    """Stochastic-depth probabilities of ``n_blocks`` blocks, rising linearly from 0 at
    the first block to ``drop_path_rate`` at the last: block ``i`` gets
    ``drop_path_rate * i / (n_blocks - 1)`` (a single block gets 0).

    >>> drop_path_rates(0.2, 3)
    [0.0, 0.1, 0.2]
    """
    if not 0.0 <= drop_path_rate < 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
    return [drop_path_rate * i / max(n_blocks - 1, 1) for i in range(n_blocks)]


class BlockSlot(NamedTuple):
    """Where :func:`build_stages` places a block: its ``stage``, its ``index`` in the
    stage, its number ``block`` counted over the whole network, and its stochastic-depth
    probability ``drop_path`` from :func:`drop_path_rates`."""

    stage: int
    index: int
    block: int
    drop_path: float


def build_stages(in_channels: int, depths: Sequence[int],
                 make_block: Callable[[BlockSlot, int], nn.Module],
                 drop_path_rate: float = 0.0,
                 tail: Optional[Callable[[int], Sequence[nn.Module]]] = None,
                 ) -> tuple[nn.ModuleList, list[int]]:
    """The stages of a backbone: ``depths[s]`` blocks per stage, each stage an
    ``nn.Sequential``, channels threaded from block to block.

    Parameters
    ----------
    in_channels : int
        Channels entering the first block (the stem's output).
    depths : sequence of int
        Blocks per stage.
    make_block : callable
        ``make_block(slot, channels) -> nn.Module`` builds the block at ``slot`` (a
        :class:`BlockSlot`) for an input of ``channels`` channels. The block's
        ``out_channels`` attribute, if it has one, is the next block's input width;
        a block without it (a pool, a norm, an activation) keeps the width.
    drop_path_rate : float, optional
        Stochastic depth of the last block; ``slot.drop_path`` follows
        :func:`drop_path_rates` over all blocks of all stages.
    tail : callable, optional
        ``tail(channels) -> modules`` appended to the last stage (a final 1x1 conv,
        norm or activation), threaded like the blocks.

    Returns
    -------
    stages : nn.ModuleList
        One ``nn.Sequential`` per stage, for ``Backbone.stages``.
    stage_channels : list of int
        Output channels of each stage, for ``Backbone._finish``.
    """
    rates = drop_path_rates(drop_path_rate, sum(depths))
    channels, block = in_channels, 0
    stages, stage_channels = [], []
    for stage, depth in enumerate(depths):
        blocks = []
        for index in range(depth):
            blocks.append(make_block(BlockSlot(stage, index, block, rates[block]), channels))
            channels = getattr(blocks[-1], "out_channels", channels)
            block += 1
        stages.append(nn.Sequential(*blocks))
        stage_channels.append(channels)
    if tail is not None:
        for module in tail(channels):
            stages[-1].append(module)
            channels = getattr(module, "out_channels", channels)
        stage_channels[-1] = channels
    return nn.ModuleList(stages), stage_channels


def init_weights(module: nn.Module, mode: str = "fan_out", nonlinearity: str = "relu",
                 negative_slope: float = 0.0, per_group: bool = False) -> None:
    """He initialisation of every ``Conv1d`` in ``module`` (normal, ``mode`` fan, gain of
    ``nonlinearity``, ``negative_slope`` for a leaky ReLU) with zero biases, and
    unit-scale, zero-shift batch norms.

    ``per_group=True`` counts the fan-out of a grouped convolution per group
    (``kernel_size * out_channels / groups``), as the TensorFlow reference of
    EfficientNet and MobileNet V3 and timm do: a depthwise filter then gets the
    variance ``2 / kernel_size`` of its own ``kernel_size`` taps instead of one
    ``out_channels`` times smaller, which shrinks the signal by about
    ``out_channels`` in variance at every depthwise layer wherever batch norm does not
    rescale it (eval mode with the initial running statistics). The fan-in is always
    per group (PyTorch's weight shape already holds ``in_channels / groups``).

    The ResNets, VGG, DenseNet, Xception, Darknet, the multi-scopic CNN, the MobileNets
    and the EfficientNets call it once their layers are built; the other backbones keep
    PyTorch's default initialisation.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv1d):
            if per_group and mode == "fan_out":
                fan = m.weight.shape[0] // m.groups * m.weight[0, 0].numel()
                gain = nn.init.calculate_gain(nonlinearity, negative_slope)
                nn.init.normal_(m.weight, 0.0, gain / fan ** 0.5)
            else:
                nn.init.kaiming_normal_(m.weight, a=negative_slope, mode=mode,
                                        nonlinearity=nonlinearity)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# Amplitude of a residual branch relative to the He-initialised one. Every rescaled conv
# is followed by batch norm, so training-mode outputs do not change; in eval mode with
# the initial running statistics (a randomly initialised encoder) a full-amplitude
# branch doubles the variance at every block and deep stacks overflow float16, while
# zeroing it (timm's ``zero_init_last``) turns each block into an identity and leaves
# the random encoder nearly linear.
RESIDUAL_BRANCH_GAIN = 0.5


@torch.no_grad()
def damp_residual_branch(branch: nn.Module, gain: float = RESIDUAL_BRANCH_GAIN) -> None:
    """Scale the weight of the last ``Conv1d`` of a residual ``branch`` by ``gain``."""
    convs = [m for m in branch.modules() if isinstance(m, nn.Conv1d)]
    convs[-1].weight.mul_(gain)


@torch.no_grad()
def init_skip_blocks(module: nn.Module, gain: float = RESIDUAL_BRANCH_GAIN) -> None:
    """Rescale the projections of every :class:`SkipBlock` in ``module`` (after
    :func:`init_weights`) so that the eval-mode signal keeps its scale at initialisation.

    A convolution right after a :class:`SqueezeExcite` is divided by the gate's value at
    zero (0.5 for a sigmoid or hard sigmoid), which would otherwise halve the signal at
    every block; the branch of a block with a skip is damped by ``gain``
    (:func:`damp_residual_branch`). Batch norm follows every rescaled convolution, so
    training-mode outputs are unchanged.
    """
    for block in module.modules():
        if not isinstance(block, SkipBlock):
            continue
        layers = list(block.conv)
        for se, after in zip(layers, layers[1:]):
            if isinstance(se, SqueezeExcite):
                gate0 = float(se.gate(torch.zeros(())))
                next(m for m in after.modules() if isinstance(m, nn.Conv1d)).weight.div_(gate0)
        if block.has_skip:
            damp_residual_branch(block.conv, gain)
