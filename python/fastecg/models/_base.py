"""The backbone contract shared by every registered model (timm's feature API, in 1-D).

A backbone is ``stem -> stages``; subclasses build ``self.stem`` (any module) and
``self.stages`` (an ``nn.ModuleList``), and pass each stage's output channel count as
``stage_channels``. Everything else -- ``forward_features``, ``forward_intermediates``,
``feature_info``, ``compute_features_output_shape``, the minimum input length and the
optional classifier of ``reset_classifier`` -- is derived here from that structure, so
that one generic test checks every backbone.

Output lengths are computed from strides, kernel sizes and padding, never by running
a forward pass: :func:`output_length` folds a sequence length through a module tree.
Convolutions, pools, pads, transposed convolutions, upsampling and adaptive pools follow
PyTorch's formulas; containers fold over their children in registration order; other
leaves keep the length. A block whose children are *not* applied in registration order
along the time path (a residual block registering its shortcut, a squeeze-excitation
block whose pooled branch only rescales) defines ``output_length(self, seq_len)``.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

from torch import Tensor, nn

from ._head import ClassifierHead

__all__ = ["Backbone", "output_length", "SequenceTooShort"]


class SequenceTooShort(ValueError):
    """Raised by :func:`output_length` when a layer would get an empty input.

    Examples
    --------
    >>> import torch
    >>> from fastecg.models import SequenceTooShort, output_length
    >>> try:
    ...     output_length(torch.nn.Conv1d(12, 8, kernel_size=5), 3)
    ... except SequenceTooShort as err:
    ...     print("too short:", err)
    too short: ...
    """


def _conv_like(seq_len: int, kernel: int, stride: int, padding: int, dilation: int,
               ceil_mode: bool = False) -> int:
    span = seq_len + 2 * padding - dilation * (kernel - 1) - 1
    # (ceil mode keeps a window that starts inside the input and runs past the padding)
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    # PyTorch drops a last window that would start inside the right padding
    if ceil_mode and (out - 1) * stride >= seq_len + padding:
        out -= 1
    if out < 1:
        raise SequenceTooShort(f"length {seq_len} is shorter than a kernel of span "
                               f"{dilation * (kernel - 1) + 1}")
    return out


def _single(v) -> int:
    return int(v[0]) if isinstance(v, (tuple, list)) else int(v)


def output_length(module: nn.Module, seq_len: int) -> int:
    """Length of ``module``'s output along time for an input of ``seq_len`` samples.

    Examples
    --------
    >>> import torch
    >>> from fastecg.models import output_length
    >>> conv = torch.nn.Conv1d(12, 8, kernel_size=7, stride=2, padding=3)
    >>> output_length(conv, 5000), conv(torch.randn(1, 12, 5000)).shape[-1]
    (2500, 2500)
    """
    if seq_len < 1:
        raise SequenceTooShort(f"a layer receives length {seq_len}")
    own = getattr(type(module), "output_length", None)
    if own is not None and not isinstance(module, Backbone):
        return int(module.output_length(seq_len))
    if isinstance(module, nn.Conv1d):
        if isinstance(module.padding, str):
            if module.padding == "same":
                return seq_len
            return _conv_like(seq_len, module.kernel_size[0], module.stride[0], 0,
                              module.dilation[0])
        return _conv_like(seq_len, module.kernel_size[0], module.stride[0],
                          module.padding[0], module.dilation[0])
    if isinstance(module, (nn.ConstantPad1d, nn.ReflectionPad1d, nn.ReplicationPad1d,
                           nn.CircularPad1d)):
        # a reflection is at most the input's length minus 1, a wrap at most its length
        limit = {nn.ReflectionPad1d: seq_len - 1, nn.CircularPad1d: seq_len}.get(
            type(module), math.inf)
        if max(module.padding) > limit:
            raise SequenceTooShort(f"length {seq_len} is too short for {module}")
        return seq_len + module.padding[0] + module.padding[1]
    if isinstance(module, nn.ConvTranspose1d):
        return ((seq_len - 1) * module.stride[0] - 2 * module.padding[0]
                + module.dilation[0] * (module.kernel_size[0] - 1)
                + module.output_padding[0] + 1)
    if isinstance(module, (nn.MaxPool1d, nn.AvgPool1d)):
        dilation = getattr(module, "dilation", 1)
        stride = module.stride if module.stride is not None else module.kernel_size
        return _conv_like(seq_len, _single(module.kernel_size), _single(stride),
                          _single(module.padding), _single(dilation), module.ceil_mode)
    if isinstance(module, (nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d)):
        size = _single(module.output_size) if module.output_size is not None else seq_len
        return size
    if isinstance(module, nn.Upsample):
        if module.size is not None:
            return _single(module.size)
        scale = module.scale_factor
        scale = float(scale[0] if isinstance(scale, (tuple, list)) else scale)
        out = int(math.floor(seq_len * scale))
        if out < 1:
            raise SequenceTooShort(f"length {seq_len} upsampled by {scale:g} is empty")
        return out
    for child in module.children():
        seq_len = output_length(child, seq_len)
    return seq_len


class Backbone(nn.Module):
    """Base class: ``forward_features(x) = stages(stem(x))``, shape ``(batch, C, L)``.

    Subclasses call ``super().__init__(in_channels)``, then set ``self.stem`` and
    ``self.stages`` and call ``self._finish(stage_channels)`` at the end of ``__init__``.

    Attributes
    ----------
    in_channels : int
        Leads expected on dim 1.
    out_channels : int
        Channels of ``forward_features`` (the last stage's).
    feature_info : list of dict
        ``dict(num_chs, reduction, module)`` per stage: channels, input samples per output
        sample, and the stage's module name (``"stages.<i>"``).
    min_seq_len : int
        Shortest input every layer accepts; shorter inputs raise ``ValueError``.
    num_classes : int
        Outputs of the classifier set by :meth:`reset_classifier`; 0 (as built): no
        classifier, ``forward`` returns the feature maps.

    Examples
    --------
    >>> import torch
    >>> from fastecg.registry import BACKBONES
    >>> net = BACKBONES.build("resnet18", in_channels=12)
    >>> x = torch.randn(2, 12, 1000)
    >>> net.forward_features(x).shape                  # (batch, out_channels, length)
    torch.Size([2, 512, 32])
    >>> [info["reduction"] for info in net.feature_info]
    [4, 8, 16, 32]
    >>> net.reset_classifier(5)
    >>> net(x).shape                                   # pooled, then classified
    torch.Size([2, 5])
    """

    def __init__(self, in_channels: int = 12):
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        self.in_channels = int(in_channels)
        self.num_classes = 0
        self.head: Optional[ClassifierHead] = None

    def _finish(self, stage_channels: Sequence[int]) -> None:
        if len(stage_channels) != len(self.stages):
            raise ValueError(f"{len(stage_channels)} stage channel counts for "
                             f"{len(self.stages)} stages")
        self.stage_channels = [int(c) for c in stage_channels]
        self.out_channels = self.stage_channels[-1]
        self.min_seq_len = self._find_min_seq_len()
        probe = max(self.min_seq_len, 1) * 4096
        lengths = self._stage_lengths(probe)
        self.feature_info = [
            dict(num_chs=c, reduction=max(1, round(probe / n)), module=f"stages.{i}")
            for i, (c, n) in enumerate(zip(self.stage_channels, lengths))
        ]

    # -- lengths -----------------------------------------------------------------
    def _stage_lengths(self, seq_len: int) -> list[int]:
        n = output_length(self.stem, seq_len)
        out = []
        for stage in self.stages:
            n = output_length(stage, n)
            out.append(n)
        return out

    def _valid(self, seq_len: int) -> bool:
        try:
            return self._stage_lengths(seq_len)[-1] >= 1
        except SequenceTooShort:
            return False

    def _find_min_seq_len(self) -> int:
        hi = 1
        while not self._valid(hi):
            hi *= 2
            if hi > 1 << 24:
                raise ValueError(f"{type(self).__name__}: no input length up to 2**24 works")
        lo = hi // 2  # invalid (or 0)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if self._valid(mid) else (mid, hi)
        return hi

    def compute_features_output_shape(self, seq_len: Optional[int] = None,
                                      batch_size: Optional[int] = None) -> tuple:
        """``(batch_size, out_channels, L_out)`` of ``forward_features`` for ``seq_len``
        input samples, from strides and padding alone (no forward pass); ``L_out`` is
        None when ``seq_len`` is (torch_ecg's ``compute_output_shape()``)."""
        if seq_len is None:
            return (batch_size, self.out_channels, None)
        self._check_length(seq_len)
        return (batch_size, self.out_channels, self._stage_lengths(seq_len)[-1])

    def _check_length(self, seq_len: int) -> None:
        if seq_len < self.min_seq_len:
            raise ValueError(f"{type(self).__name__} needs at least {self.min_seq_len} "
                             f"samples along time, got {seq_len}")

    # -- forward -----------------------------------------------------------------
    def _check_input(self, x: Tensor) -> None:
        if x.ndim != 3:
            raise ValueError(f"{type(self).__name__} expects (batch, n_leads, n_samples), "
                             f"got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} was built for {self.in_channels} leads, "
                             f"got {x.shape[1]}")
        self._check_length(x.shape[-1])

    def forward_features(self, x: Tensor) -> Tensor:
        """Feature maps ``(batch, out_channels, L_out)`` before any pooling or head."""
        self._check_input(x)
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x

    def forward_intermediates(self, x: Tensor, indices: Union[int, Sequence[int], None] = None,
                              stop_early: bool = False, intermediates_only: bool = False):
        """Outputs of the stages in ``indices`` (default: all; an int ``n`` in ``1..n_stages``:
        the last ``n``; indices in ``[-n_stages, n_stages)``, negative ones counting from
        the end). ValueError for any other, before any work.

        Returns the list of intermediates, or ``(final, intermediates)`` where ``final``
        equals ``forward_features(x)`` (unless ``stop_early`` cut the stages short).
        """
        n = len(self.stages)
        if indices is None:
            wanted = list(range(n))
        elif isinstance(indices, int):
            if not 1 <= indices <= n:
                raise ValueError(f"forward_intermediates: indices={indices} takes the last "
                                 f"n stages, n in 1..{n}")
            wanted = list(range(n - indices, n))
        else:
            indices = list(indices)
            bad = [i for i in indices if not isinstance(i, int) or not -n <= i < n]
            if bad or not indices:
                raise ValueError(f"forward_intermediates: stage indices must be integers in "
                                 f"[-{n}, {n}), got {indices}")
            wanted = [i % n for i in indices]
        self._check_input(x)
        last = max(wanted) if (stop_early or intermediates_only) else n - 1
        x = self.stem(x)
        intermediates = []
        for i, stage in enumerate(self.stages[: last + 1]):
            x = stage(x)
            if i in wanted:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def reset_classifier(self, num_classes: int, global_pool: str = "avg") -> None:
        """Put a classifier on the features, as timm's ``reset_classifier``.

        ``num_classes > 0``: a new head, ``global_pool`` over time (``"avg"``, ``"max"``
        or ``"attn"``) then ``Linear(out_channels, num_classes)``, so ``forward`` gives
        ``(batch, num_classes)`` logits. ``num_classes = 0`` removes the head: ``forward``
        returns the feature maps again, as built.
        """
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.head = (ClassifierHead(self.out_channels, int(num_classes), global_pool)
                     if num_classes else None)
        self.num_classes = int(num_classes)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """The classifier of :meth:`reset_classifier` on ``forward_features``' output
        (``pre_logits``: the pooled features); without one, the features pass through."""
        if self.head is None:
            return x
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))
