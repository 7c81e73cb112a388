"""Pieces shared by the downstream models: config handling, backbone/RNN/attention
builders, and their base class."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from ..registry import ATTN_LAYERS, BACKBONES, did_you_mean
from ._base import Backbone

__all__ = ["DownstreamModel", "SequenceRNN", "merge_config", "build_backbone",
           "build_rnn", "build_attention", "class_names", "MultiLabelClassificationOutput",
           "SequenceLabellingOutput"]


@dataclass
class MultiLabelClassificationOutput:
    """What :meth:`ECG_CRNN.inference` returns (torch_ecg's class of the same name).

    Attributes
    ----------
    classes : list of str
        Class names.
    thr : float
        Threshold of the binary predictions.
    prob : numpy.ndarray or pandas.DataFrame
        Sigmoid probabilities ``(batch, n_classes)``; with ``class_names=True`` a
        DataFrame with one column per class and a ``"pred"`` column of the predicted
        class names of each row.
    pred : numpy.ndarray
        Binary predictions ``(batch, n_classes)``, int.
    """

    classes: list
    thr: float
    prob: Any
    pred: np.ndarray


@dataclass
class SequenceLabellingOutput:
    """What :meth:`ECG_SEQ_LAB_NET.inference` returns (torch_ecg's class of the same name).

    Attributes
    ----------
    classes : list of str
        Class names.
    thr : float
        Threshold of the binary predictions.
    prob : numpy.ndarray
        Sigmoid probabilities ``(batch, length, n_classes)``.
    pred : numpy.ndarray
        Binary predictions ``(batch, length, n_classes)``, int.
    """

    classes: list
    thr: float
    prob: np.ndarray
    pred: np.ndarray


# torch_ecg's config keys, accepted as synonyms of ours.
_ALIASES = {"cnn": "backbone", "attn": "attention"}


def merge_config(defaults: Mapping[str, Any], config: Optional[Mapping[str, Any]],
                 kwargs: Mapping[str, Any], model: str) -> dict:
    """``defaults`` updated by ``config`` then ``kwargs``; an unknown key is a ``KeyError``
    naming close matches (a typo must not be ignored silently), and so is a key given
    twice under two names (``cnn`` and ``backbone``). Nested dicts and lists are copied:
    a model's config is its own (editing it changes neither the class defaults nor the
    caller's dict)."""
    merged = _copied(defaults)
    for source in (config or {}), kwargs:
        seen: dict = {}
        for key, value in source.items():
            name = _ALIASES.get(key, key)
            if name not in defaults:
                raise KeyError(f"{model}: unknown config key {name!r}"
                               f"{did_you_mean(name, defaults, n=3)} "
                               f"(known: {', '.join(sorted(defaults))})")
            if name in seen:
                raise KeyError(f"{model}: {seen[name]!r} and {key!r} both set {name!r}")
            seen[name] = key
            merged[name] = _copied(value)
    return merged


def _copied(value: Any) -> Any:
    """`value` with its dicts and lists copied all the way down (modules and other objects
    are kept as they are)."""
    if isinstance(value, Mapping):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copied(v) for v in value]
    return value


def class_names(classes: Union[Sequence[str], int], allow_none: bool = False) -> list[str]:
    """``classes`` as a list of names (an int ``n`` stands for ``["0", ..., "n-1"]``);
    an empty list only with ``allow_none`` (``reset_classifier(0)``)."""
    if isinstance(classes, int):
        if classes < 0:
            raise ValueError(f"the number of classes must be >= 0, got {classes}")
        names = [str(i) for i in range(classes)]
    elif isinstance(classes, str):
        raise TypeError(f"classes must be a list of class names, got the string {classes!r}")
    else:
        names = [str(c) for c in classes]
    if not names and not allow_none:
        raise ValueError("classes is empty: need at least one class")
    return names


def _is_none(spec) -> bool:
    """None, ``"none"``, or torch_ecg's ``{"name": "none", ...}``."""
    if isinstance(spec, Mapping):
        spec = spec.get("name", "")
    return spec is None or (isinstance(spec, str) and spec.lower() == "none")


def _refuse_nested(spec: Any, what: str, form: str) -> None:
    """torch_ecg's ``{"name": x, x: {...}, other: {...}}`` (the arguments of every choice
    nested under its name) is not ours: say so, rather than let the builder report the
    nested dict as an unknown argument."""
    name = spec.get("name") if isinstance(spec, Mapping) else None
    if isinstance(name, str) and isinstance(spec.get(name), Mapping):
        raise TypeError(f"{what}: arguments nested under {name!r} (torch_ecg's config "
                        f"form) are not accepted; give them beside the name: {form}")


def build_backbone(spec: Union[str, Mapping[str, Any], nn.Module], n_leads: int) -> Backbone:
    """A backbone from a ``BACKBONES`` name, a dict with ``"name"``, or a built module."""
    if isinstance(spec, nn.Module):
        backbone = spec
    else:
        _refuse_nested(spec, "backbone", '{"name": "resnet", "layers": [2, 2, 2, 2], ...}')
        backbone = BACKBONES.build(spec, in_channels=n_leads)
    for attr in ("forward_features", "out_channels", "feature_info", "min_seq_len"):
        if not hasattr(backbone, attr):
            raise TypeError(f"backbone {type(backbone).__name__} lacks {attr!r}; "
                            f"downstream models need the Backbone contract")
    if getattr(backbone, "in_channels", n_leads) != n_leads:
        raise ValueError(f"backbone takes {backbone.in_channels} leads but n_leads={n_leads}")
    return backbone


class SequenceRNN(nn.Module):
    """LSTM or GRU over time on ``(batch, channels, length)``, output
    ``(batch, hidden_size * directions, length)``."""

    _CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}

    def __init__(self, in_channels: int, name: str = "lstm", hidden_size: int = 128,
                 num_layers: int = 1, bidirectional: bool = True, dropout: float = 0.0):
        super().__init__()
        if name.lower() not in self._CELLS:
            hint = did_you_mean(name, self._CELLS, n=2, cutoff=0.3)
            raise KeyError(f"unknown rnn {name!r}{hint} (known: none, lstm, gru)")
        if hidden_size < 1 or num_layers < 1:
            raise ValueError(f"hidden_size={hidden_size} and num_layers={num_layers} "
                             f"must be >= 1")
        self.rnn = self._CELLS[name.lower()](
            in_channels, hidden_size, num_layers=num_layers, batch_first=True,
            bidirectional=bidirectional, dropout=dropout if num_layers > 1 else 0.0)
        self.out_channels = hidden_size * (2 if bidirectional else 1)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x.transpose(1, 2))
        return out.transpose(1, 2)

    def output_length(self, seq_len: int) -> int:
        return seq_len


def build_rnn(spec, in_channels: int) -> Optional[SequenceRNN]:
    """``None`` for ``None``/``"none"``; else a :class:`SequenceRNN` from a cell name
    (``"lstm"``, ``"gru"``) or a dict with ``"name"`` and its keyword arguments."""
    if _is_none(spec):
        return None
    if isinstance(spec, str):
        return SequenceRNN(in_channels, spec)
    _refuse_nested(spec, "rnn", '{"name": "lstm", "hidden_size": 128, "num_layers": 1, '
                   '"bidirectional": True, "dropout": 0.0}')
    config = dict(spec)
    return SequenceRNN(in_channels, config.pop("name", "lstm"), **config)


def build_attention(spec, channels: int) -> Optional[nn.Module]:
    """``None`` for ``None``/``"none"``; else an ``ATTN_LAYERS`` entry by name or dict,
    built for ``channels`` channels."""
    if _is_none(spec):
        return None
    _refuse_nested(spec, "attention", '{"name": "squeeze_excitation", "reduction": 16}')
    return ATTN_LAYERS.build(spec, channels=channels)


UPSAMPLE_MODES = ("nearest", "linear")


def check_upsample_mode(mode: str) -> str:
    if mode not in UPSAMPLE_MODES:
        raise ValueError(f"upsample_mode must be one of {UPSAMPLE_MODES}, got {mode!r}")
    return mode


class DownstreamModel(nn.Module):
    """Base of the downstream models: classes, leads, config and the encoder
    (backbone -> optional RNN -> optional attention).

    Every layer is built with its input width, read from the module before it (the
    backbone's ``out_channels`` and ``feature_info``, the RNN's ``out_channels``), so a
    model is complete when constructed: it can load a state dict, be counted, moved or
    compiled at once.
    """

    DEFAULT_CONFIG: dict = {}
    n_leads: int
    backbone: Backbone

    def _setup(self, classes, n_leads: int, config, kwargs) -> dict:
        """Classes, leads and the merged config (defaults < ``config`` < ``kwargs``)."""
        self._set_classes(classes)
        self.n_leads = int(n_leads)
        self.config = merge_config(self.DEFAULT_CONFIG, config, kwargs, type(self).__name__)
        return self.config

    def _set_classes(self, classes, allow_none: bool = False) -> None:
        self.classes = class_names(classes, allow_none)
        self.n_classes = len(self.classes)

    def _build_encoder(self, cfg: Mapping[str, Any]) -> int:
        """backbone -> optional RNN -> optional attention; returns their output channels."""
        self.backbone = build_backbone(cfg["backbone"], self.n_leads)
        channels = self.backbone.out_channels
        self.rnn = build_rnn(cfg["rnn"], channels)
        if self.rnn is not None:
            channels = self.rnn.out_channels
        self.attention = build_attention(cfg["attention"], channels)
        # ATTN_LAYERS keep the width; a layer that changes it says so in out_channels
        return getattr(self.attention, "out_channels", channels)

    def reset_classifier(self, classes: Union[Sequence[str], int]) -> None:
        """A fresh output layer for ``classes`` (names, or a number), the rest kept, as
        timm's ``reset_classifier``; ``0`` removes it, so the model returns the features
        that layer would have classified."""
        raise NotImplementedError

    def _encode(self, x: Tensor) -> Tensor:
        x = self.backbone.forward_features(x)
        if self.rnn is not None:
            x = self.rnn(x)
        if self.attention is not None:
            x = self.attention(x)
        return x

    @property
    def min_seq_len(self) -> int:
        """Shortest input the backbone accepts."""
        return self.backbone.min_seq_len

    def materialize(self, seq_len: Optional[int] = None) -> "DownstreamModel":
        """Initialise lazy modules, if any, with one forward pass of zeros; returns ``self``.

        fastecg's models are built complete and need no call; this remains for code
        written against 0.1.0, whose heads were lazy, and for lazy modules a user plugs
        in (a custom backbone). Runs in eval mode without gradients on the model's
        device and dtype, so no BatchNorm statistics change; the train/eval state is
        restored. Without lazy modules it does nothing.

        Parameters
        ----------
        seq_len : int, optional
            Length of the dummy input; default the backbone's ``min_seq_len``. The heads'
            shapes do not depend on it.
        """
        if not self.has_lazy_modules():
            return self
        seq_len = self.min_seq_len if seq_len is None else int(seq_len)
        ref = next(p for p in self.parameters()
                   if not isinstance(p, nn.parameter.UninitializedParameter))
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                self(torch.zeros(1, self.n_leads, seq_len, device=ref.device, dtype=ref.dtype))
        finally:
            self.train(was_training)
        return self

    def _inference_probs(self, x, bin_pred_thr: float) -> np.ndarray:
        """Sigmoid of the logits of ``x`` (an array or tensor, ``(batch, n_leads, n)`` or
        one record ``(n_leads, n)``), in eval mode without gradients on the model's device
        and dtype, as a NumPy array; the train/eval state is restored."""
        if isinstance(bin_pred_thr, bool) or not isinstance(bin_pred_thr, numbers.Real) or \
                not 0 <= bin_pred_thr <= 1:
            raise ValueError(f"bin_pred_thr must be a probability in [0, 1], "
                             f"got {bin_pred_thr!r}")
        ref = next(self.parameters())
        x = torch.as_tensor(x, dtype=ref.dtype, device=ref.device)
        if x.ndim == 2:  # one record, as torch_ecg's inference accepts
            x = x.unsqueeze(0)
        if x.ndim != 3:
            raise ValueError(f"input must be (batch, n_leads, n_samples) or "
                             f"(n_leads, n_samples), got shape {tuple(x.shape)}")
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                prob = torch.sigmoid(self(x))
            # NumPy has no half types: those come back as float32
            if prob.dtype not in (torch.float32, torch.float64):
                prob = prob.float()
            return prob.cpu().numpy()
        finally:
            self.train(was_training)

    def has_lazy_modules(self) -> bool:
        """Whether some parameter is uninitialised (only with lazy modules a user plugs
        in; call :meth:`materialize`)."""
        return any(isinstance(p, nn.parameter.UninitializedParameter)
                   for p in self.parameters())
