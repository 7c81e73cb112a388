"""Multi-scopic CNN: parallel branches of dilated convolutions, each branch seeing the
signal at its own scope, concatenated along channels (Cai and Hu, IEEE Access 2020)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ...registry import BACKBONES
from .._base import Backbone, output_length
from .._layers import ACTIVATIONS, init_weights

__all__ = ["MultiScopicBlock", "MultiScopicStage", "MultiScopicCNN"]

# dilations per branch, per block, per convolution [1]
_SCOPES = (
    ((1,), (1, 1), (1, 1, 1)),
    ((2,), (2, 4), (8, 8, 8)),
    ((4,), (4, 8), (16, 32, 64)),
)
_FILTER_LENGTHS = ((11, 7, 5),) * 3
_DROPOUTS = (0.0, 0.2, 0.0)


class MultiScopicBlock(nn.Sequential):
    """``(dilated conv -> act) * n -> BN -> max-pool -> dropout`` of one branch.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and of every convolution.
    dilations : sequence of int
        One convolution per entry, with that dilation (the block's scope).
    kernel_size : int
        Taps of the convolutions; odd, padded to keep the length.
    subsample : int
        Kernel and stride of the closing max-pool (1: none).
    dropout : float
        Closing dropout.
    groups : int, bias : bool, act : str, batch_norm : bool
        Conv groups and bias, activation name, and a BN after every conv as well.

    Shapes: ``(batch, in_channels, L) -> (batch, out_channels, floor(L / subsample))``.
    """

    def __init__(self, in_channels: int, out_channels: int, dilations: Sequence[int],
                 kernel_size: int, subsample: int = 2, dropout: float = 0.0, groups: int = 1,
                 bias: bool = True, act: str = "relu", batch_norm: bool = False):
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
        layers, prev = [], in_channels
        for d in dilations:
            layers.append(nn.Conv1d(prev, out_channels, kernel_size,
                                    padding=d * (kernel_size - 1) // 2, dilation=d,
                                    groups=groups, bias=bias))
            if batch_norm:
                layers.append(nn.BatchNorm1d(out_channels))
            layers.append(ACTIVATIONS.build(act))
            prev = out_channels
        layers.append(nn.BatchNorm1d(out_channels))
        if subsample > 1:
            layers.append(nn.MaxPool1d(subsample, subsample))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        super().__init__(*layers)
        self.out_channels = out_channels


class MultiScopicStage(nn.Module):
    """One block of every branch, side by side; outputs concatenated along channels.

    The first stage feeds the whole input to every branch; a later stage splits its
    input back into the branches' channel groups (``split``), so that the branches stay
    independent from input to output, as in [1]_, while every stage yields one tensor.

    Shapes: ``(batch, C_in, L) -> (batch, sum(out_channels), floor(L / subsample))``.

    References
    ----------
    .. [1] W. Cai and D. Hu, "QRS complex detection using novel deep learning neural
       networks", IEEE Access 8, 2020.
    """

    def __init__(self, blocks: Sequence[MultiScopicBlock], split: Optional[Sequence[int]]):
        super().__init__()
        self.branches = nn.ModuleList(blocks)
        self.split = None if split is None else [int(c) for c in split]
        self.out_channels = sum(b.out_channels for b in blocks)

    def forward(self, x: Tensor) -> Tensor:
        if self.split is None:
            inputs = [x] * len(self.branches)
        else:
            inputs = torch.split(x, self.split, dim=1)
        return torch.cat([branch(xi) for branch, xi in zip(self.branches, inputs)], dim=1)

    def output_length(self, seq_len: int) -> int:
        # branches share kernel parity and subsampling, so their lengths agree
        return output_length(self.branches[0], seq_len)


@BACKBONES.register("multi_scopic")
class MultiScopicCNN(Backbone):
    """The multi-scopic CNN [1]_ (torch_ecg's ``multi_scopic``): three branches of three
    blocks; branch ``j`` dilates its convolutions by its scope, so the branches see the
    ECG over short, medium and long windows.

    Parameters
    ----------
    in_channels : int, optional
        Leads on dim 1.
    scopes : nested sequence of int, optional
        ``scopes[branch][block]``: the dilations of that block's convolutions (one
        convolution per entry). Default ``[[1], [1, 1], [1, 1, 1]]``,
        ``[[2], [2, 4], [8, 8, 8]]``, ``[[4], [4, 8], [16, 32, 64]]``.
    filter_lengths : nested sequence of int, optional
        ``filter_lengths[branch][block]``; odd (11, 7, 5 in every branch).
    num_filters : nested sequence of int, optional
        ``num_filters[branch][block]``; default ``base_filters * (4, 8, 16)`` everywhere.
    base_filters : int, optional
        Sets the default ``num_filters``: 12 gives 48, 96, 192 per branch, a quarter of
        the cost of torch_ecg's 24 (96, 192, 384), which ``base_filters=24`` restores.
    subsample : int, optional
        Max-pool closing every block (2).
    dropouts : sequence of float, optional
        Dropout closing each block (0, 0.2, 0).
    groups : int, optional
        Groups of every convolution (12 for torch_ecg's lead-wise variant).
    bias, batch_norm : bool, optional
        Conv bias, and a BN after every conv besides the one closing each block.
    act : str, optional
        Activation name in ``ACTIVATIONS``.

    Notes
    -----
    One stage per block level, outputs concatenated over branches: 144, 288, 576
    channels by default, reductions 2, 4, 8; ``forward_features`` gives
    ``(batch, 576, floor(L / 8))``. The branches keep a high time resolution through
    wide convolutions: per 12-lead 10 s record at 500 Hz about 2.5 GMAC (1.7 M
    parameters) by default, 10 GMAC (6.7 M) with ``base_filters=24``.

    References
    ----------
    .. [1] W. Cai and D. Hu, "QRS complex detection using novel deep learning neural
       networks", IEEE Access 8, 2020 (CPSC 2019 entry 0416); as implemented in
       torch_ecg's ``MultiScopicCNN`` (H. Wen and J. Kang).

    Examples
    --------
    >>> BACKBONES.build("multi_scopic").compute_features_output_shape(5000, 2)
    (2, 576, 625)
    """

    def __init__(self, in_channels: int = 12,
                 scopes: Sequence[Sequence[Sequence[int]]] = _SCOPES,
                 filter_lengths: Sequence[Sequence[int]] = _FILTER_LENGTHS,
                 num_filters: Optional[Sequence[Sequence[int]]] = None,
                 base_filters: int = 12, subsample: int = 2,
                 dropouts: Sequence[float] = _DROPOUTS, groups: int = 1, bias: bool = True,
                 batch_norm: bool = False, act: str = "relu"):
        super().__init__(in_channels)
        n_branches = len(scopes)
        n_blocks = len(scopes[0])
        if num_filters is None:
            num_filters = [[base_filters * 2 ** (i + 2) for i in range(n_blocks)]] * n_branches
        for what, value in (("filter_lengths", filter_lengths), ("num_filters", num_filters)):
            if len(value) != n_branches or any(len(v) != n_blocks for v in value):
                raise ValueError(f"{what} must be {n_branches} branches of {n_blocks} "
                                 f"blocks (the shape of scopes), got {value}")
        if any(len(s) != n_blocks for s in scopes):
            raise ValueError(f"every branch needs {n_blocks} blocks, got scopes={scopes}")
        if len(dropouts) != n_blocks:
            raise ValueError(f"dropouts needs {n_blocks} entries, got {dropouts}")
        self.stem = nn.Identity()
        stages, stage_channels = [], []
        prev = [in_channels] * n_branches
        for i in range(n_blocks):
            blocks = [MultiScopicBlock(prev[j], num_filters[j][i], scopes[j][i],
                                       filter_lengths[j][i], subsample, dropouts[i], groups,
                                       bias, act, batch_norm)
                      for j in range(n_branches)]
            stages.append(MultiScopicStage(blocks, None if i == 0 else prev))
            prev = [b.out_channels for b in blocks]
            stage_channels.append(stages[-1].out_channels)
        self.stages = nn.ModuleList(stages)
        init_weights(self, mode="fan_in")
        self._finish(stage_channels)
