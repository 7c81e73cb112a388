"""Fine-tuning: a pretrained SSL encoder inside a classifier."""

from __future__ import annotations

import copy
import os
from typing import Any, Mapping, Optional, Union

import torch
from torch import Tensor, nn

from ..registry import MODELS, SSL
from ..train.optim import decays, no_decay_names
from .base import SSLMethod
from .pretrained import from_pretrained

__all__ = ["SSLClassifier", "finetune", "FINETUNE_MODES"]

FINETUNE_MODES = ("linear_probe", "full")


@MODELS.register("ssl_classifier")
class SSLClassifier(nn.Module):
    """``encoder.forward_features`` -> mean over tokens -> dropout -> linear head
    (ECG_CRNN's pooled head), its width read from the encoder, on the encoder's device
    and in its dtype.

    ``mode="linear_probe"`` freezes the encoder (no gradients, kept in eval mode even
    under ``train()``); ``"full"`` trains the encoder too (the parts only pretraining
    uses stay frozen: see :meth:`set_mode`).

    `encoder` is an SSL method, or its registry config (``{"name": "mae_1d", ...}``),
    which builds a fresh one. Registered in ``MODELS`` as ``"ssl_classifier"``, so a
    fine-tuned classifier saves with :func:`~fastecg.ssl.save_pretrained` and comes back
    with :func:`~fastecg.ssl.from_pretrained`, its encoder's preprocessing contract with it.
    """

    registry_name = "MODELS"

    def __init__(self, encoder: Union[SSLMethod, Mapping[str, Any]], num_classes: int,
                 mode: str = "full", dropout: float = 0.0):
        super().__init__()
        if isinstance(encoder, Mapping):
            encoder = SSL.build(dict(encoder))
        if not isinstance(encoder, SSLMethod):
            raise TypeError(f"SSLClassifier: encoder must be an SSL method or its registry "
                            f"config, got {type(encoder).__name__}")
        if mode not in FINETUNE_MODES:
            raise ValueError(f"finetune: mode must be one of {FINETUNE_MODES}, got {mode!r}")
        if num_classes < 1:
            raise ValueError(f"finetune: num_classes must be >= 1, got {num_classes}")
        self.encoder = encoder
        self.mode = mode
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(encoder.embed_dim, num_classes))
        # On the encoder's device and in its precision (a head left on the CPU in float32
        # refused the features of a GPU or float64 encoder); initialised on the CPU, so a
        # seed gives the same head on every device.
        ref = next((p for p in encoder.parameters() if p.is_floating_point()), None)
        if ref is not None:
            self.head.to(ref.device, ref.dtype)
        self.contract = getattr(encoder, "contract", None)
        self.set_mode(mode)

    def set_mode(self, mode: str) -> None:
        """Freeze (``linear_probe``) or unfreeze (``full``) the encoder. Only the encoder
        proper trains (the method's ``encoder_prefixes``): the parts pretraining alone
        uses (an MAE's decoder and mask token, a projector, MoCo's momentum encoder)
        stay frozen, as forward never reaches them (DDP, whose default expects every
        trainable parameter to get a gradient, refused them)."""
        if mode not in FINETUNE_MODES:
            raise ValueError(f"finetune: mode must be one of {FINETUNE_MODES}, got {mode!r}")
        self.mode = mode
        prefixes = self.encoder.encoder_prefixes()
        for name, p in self.encoder.named_parameters():
            p.requires_grad_(mode == "full" and name.startswith(prefixes))
        self.train(self.training)

    @property
    def config(self) -> Optional[dict]:
        """The registry config that rebuilds it (:func:`~fastecg.ssl.save_pretrained`),
        read from the classifier as it is now; None when the encoder was not built from
        a config."""
        enc_config = getattr(self.encoder, "config", None)
        if not enc_config:
            return None
        return {"name": "ssl_classifier", "encoder": dict(enc_config),
                "num_classes": self.head[1].out_features, "mode": self.mode,
                "dropout": float(self.head[0].p)}

    def train(self, mode: bool = True):
        super().train(mode)
        if self.mode == "linear_probe":
            self.encoder.eval()
        return self

    def forward_features(self, x: Tensor) -> Tensor:
        return self.encoder.forward_features(x)

    def forward(self, x: Tensor) -> Tensor:
        feats = self.forward_features(x)
        return self.head(feats.mean(-1))

    def preprocess(self, raw: Tensor, fs: float) -> Tensor:
        return self.encoder.preprocess(raw, fs)

    def param_groups(self, lr: float, weight_decay: float = 0.0,
                     layer_decay: Optional[float] = None) -> list[dict]:
        """Optimizer groups; with `layer_decay` (in (0, 1]) a parameter at encoder depth
        ``i`` of ``n`` gets ``lr * layer_decay ** (n - i)`` (BEiT's layer-wise decay), the
        head the full `lr`. Weight decay as :func:`fastecg.train.optim.param_groups` gives it
        (none for biases, norms, tokens and position/lead embeddings; a patch embedding's
        weight is decayed, as in MAE's fine-tuning)."""
        if layer_decay is not None and not 0 < layer_decay <= 1:
            raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
        n = self.encoder.num_layers
        skip = no_decay_names(self)
        groups: dict[tuple, dict] = {}
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            if name.startswith("encoder."):
                depth = self.encoder.layer_id(name[len("encoder."):])
            else:
                depth = n
            scale = 1.0 if layer_decay is None else layer_decay ** (n - depth)
            decay = weight_decay if decays(name, p, skip) else 0.0
            g = groups.setdefault((scale, decay), {"params": [], "lr": lr * scale,
                                                   "weight_decay": decay, "lr_scale": scale})
            g["params"].append(p)
        return list(groups.values())


def finetune(pretrained: Union[str, os.PathLike, SSLMethod], num_classes: int,
             mode: str = "linear_probe", layer_decay: Optional[float] = None,
             lr: float = 1e-3, weight_decay: float = 0.0, dropout: float = 0.0,
             optimizer: bool = False, **overrides):
    """A classifier on a pretrained SSL encoder.

    Parameters
    ----------
    pretrained : path or SSLMethod
        A ``save_pretrained`` directory of an SSL method, or the method itself, which is
        copied (``model.encoder`` is the copy): training the classifier, and the frozen
        eval-mode encoder of ``linear_probe``, leave the caller's module as it was. To
        train a module in place, wrap it in :class:`SSLClassifier` yourself.
    num_classes : int
    mode : {"linear_probe", "full"}
    layer_decay : float, optional
        Layer-wise lr decay for ``full`` (see :meth:`SSLClassifier.param_groups`).
    optimizer : bool
        Also return an AdamW over :meth:`SSLClassifier.param_groups`.

    Returns
    -------
    SSLClassifier, or (SSLClassifier, torch.optim.AdamW) with ``optimizer=True``.
    """
    encoder = copy.deepcopy(pretrained) if isinstance(pretrained, nn.Module) else \
        from_pretrained(pretrained, **overrides)
    if not isinstance(encoder, SSLMethod):
        raise ValueError(f"finetune: {pretrained} holds a {type(encoder).__name__}, not an SSL "
                         f"method")
    model = SSLClassifier(encoder, num_classes, mode, dropout)
    if not optimizer:
        return model
    opt = torch.optim.AdamW(model.param_groups(lr, weight_decay, layer_decay), lr=lr)
    return model, opt
