"""ECG_FCN: fully convolutional wave segmentation (P, QRS, T) at the input's resolution.

An encoder-decoder in the U-Net manner on any registered backbone: the encoder is
the backbone's stages (``forward_intermediates``); the decoder climbs back from the
deepest stage, at each level upsampling to the length of the shallower stage's output,
concatenating it (skip connection) and convolving. A last level at the input length
sees the raw signal too, so boundaries are placed at single-sample resolution, and the
output length equals the input length for every accepted input length.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import MODELS
from ._downstream import DownstreamModel, build_backbone, check_upsample_mode

__all__ = ["ECG_FCN"]


class _DecoderBlock(nn.Sequential):
    """``(Conv1d k3 -> BN -> ReLU) x 2``, ``in_channels -> channels``."""

    def __init__(self, in_channels: int, channels: int, kernel_size: int = 3):
        pad = kernel_size // 2
        super().__init__(
            nn.Conv1d(in_channels, channels, kernel_size, padding=pad, bias=False),
            nn.BatchNorm1d(channels), nn.ReLU(inplace=True),
            nn.Conv1d(channels, channels, kernel_size, padding=pad, bias=False),
            nn.BatchNorm1d(channels), nn.ReLU(inplace=True))
        self.out_channels = channels

    def output_length(self, seq_len: int) -> int:
        return seq_len


@MODELS.register("ECG_FCN")
class ECG_FCN(DownstreamModel):
    """Fully convolutional per-sample segmentation, output ``(batch, n_samples, n_classes)``.

    Parameters
    ----------
    classes : list of str or int
        Per-sample classes, e.g. ``["N", "P", "QRS", "T"]`` (background first).
    n_leads : int, optional
        Leads of the input, ``(batch, n_leads, n_samples)``.
    config : dict, optional
        ``backbone``
            ``BACKBONES`` name, dict or module (as in ``ECG_CRNN``). Default ``"resnet"``.
        ``decoder_channels``
            Width of each decoder level: an int for all, or one per backbone stage
            (deepest last) plus one for the input level. Default 64.
        ``input_skip``
            Concatenate the raw input at the last (input-length) level. Default ``True``.
        ``upsample_mode``
            ``"linear"`` (default) or ``"nearest"``.
        ``dropout``
            Before the 1x1 classifier. Default 0.1.
    **kwargs
        Override ``config`` keys.

    Examples
    --------
    >>> model = ECG_FCN(["N", "P", "QRS", "T"], backbone="resnet")
    >>> model(torch.randn(2, 12, 1234)).shape
    torch.Size([2, 1234, 4])
    """

    DEFAULT_CONFIG = {"backbone": "resnet", "decoder_channels": 64, "input_skip": True,
                      "upsample_mode": "linear", "dropout": 0.1}

    def __init__(self, classes: Union[Sequence[str], int], n_leads: int = 12,
                 config: Optional[Mapping[str, Any]] = None, **kwargs):
        super().__init__()
        cfg = self._setup(classes, n_leads, config, kwargs)
        self.upsample_mode = check_upsample_mode(cfg["upsample_mode"])
        self.input_skip = bool(cfg["input_skip"])
        self.backbone = build_backbone(cfg["backbone"], self.n_leads)
        n_stages = len(self.backbone.feature_info)
        widths = cfg["decoder_channels"]
        if isinstance(widths, int):
            widths = [widths] * (n_stages + 1)
        widths = [int(w) for w in widths]
        if len(widths) != n_stages + 1 or min(widths) < 1:
            raise ValueError(f"decoder_channels needs {n_stages + 1} positive widths "
                             f"({n_stages} stages + input level), got {widths}")
        # decoder[i] works at the resolution of stage i, on stage i's output concatenated
        # with decoder[i + 1]'s, upsampled (the deepest level has only its stage's);
        # decoder[-1] works at the input's, on decoder[0]'s output and the raw input
        skips = [info["num_chs"] for info in self.backbone.feature_info]
        from_below = [widths[i + 1] if i + 1 < n_stages else 0 for i in range(n_stages)]
        inputs = [up + skip for up, skip in zip(from_below, skips)]
        inputs.append(widths[0] + (self.n_leads if self.input_skip else 0))
        self.decoder = nn.ModuleList(_DecoderBlock(i, w) for i, w in zip(inputs, widths))
        self.head = nn.Sequential(nn.Dropout(float(cfg["dropout"])),
                                  self._classifier(self.n_classes))

    def _classifier(self, n_classes: int) -> nn.Module:
        width = self.decoder[-1].out_channels
        return nn.Conv1d(width, n_classes, 1) if n_classes else nn.Identity()

    def reset_classifier(self, classes: Union[Sequence[str], int]) -> None:
        """A fresh 1x1 classifier for ``classes`` (names or a number; the decoder kept),
        as timm's ``reset_classifier``; ``0`` removes it, so each sample gets the
        last decoder level's features."""
        self._set_classes(classes, allow_none=True)
        self.head[-1] = self._classifier(self.n_classes)

    def _up(self, x: Tensor, length: int) -> Tensor:
        return F.interpolate(x, size=length, mode=self.upsample_mode)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(batch, n_samples, n_classes)``, ``n_samples`` = the input's length."""
        n_samples = x.shape[-1]
        feats = self.backbone.forward_intermediates(x, intermediates_only=True)
        y = self.decoder[len(feats) - 1](feats[-1])
        for i in range(len(feats) - 2, -1, -1):
            skip = feats[i]
            y = self.decoder[i](torch.cat([self._up(y, skip.shape[-1]), skip], dim=1))
        y = self._up(y, n_samples)
        if self.input_skip:
            y = torch.cat([y, x], dim=1)
        y = self.head(self.decoder[-1](y))
        return y.transpose(1, 2)

    def compute_output_shape(self, seq_len: Optional[int] = None,
                             batch_size: Optional[int] = None) -> tuple:
        """``(batch_size, seq_len, n_classes)`` (the length None when ``seq_len`` is, as
        torch_ecg's); ``ValueError`` below ``min_seq_len``."""
        self.backbone.compute_features_output_shape(seq_len, batch_size)
        width = self.n_classes or self.decoder[-1].out_channels
        return (batch_size, seq_len, width)
