"""Small building blocks shared by several backbones."""

from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

from ._base import output_length

from ..registry import Registry

__all__ = ["ACTIVATIONS", "make_divisible", "ConvBnAct", "SqueezeExcite", "DropPath",
           "SkipBlock"]

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
        reduced = reduced or max(1, int(channels * reduction))
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
