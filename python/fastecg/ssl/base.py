"""What every SSL method shares.

An SSL method is a plain ``nn.Module``: ``pretrain_step(batch) -> dict(loss=..., ...)``
(``forward`` is the same call, so DistributedDataParallel's hooks run), ``embed(x) ->
(B, D)``, ``forward_features(x) -> (B, D, L)`` (the encoder's tokens or feature maps, the
backbone contract), ``encoder_state_dict()``. It also runs in a user's own loop or a
Lightning module::

    model = SSL.build("mae_1d", n_leads=12, seq_len=5000)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for x in loader:                      # (B, 12, 5000) or (signal, label)
        loss = model.pretrain_step(x)["loss"]
        opt.zero_grad(); loss.backward(); opt.step()

    # Lightning: def training_step(self, batch, i): return self.model.pretrain_step(batch)["loss"]

Each method records the arguments it was built with (``config``, which rebuilds it
through :data:`fastecg.registry.SSL`) and its input contract (``contract``), so that
``save_pretrained`` / ``from_pretrained`` round-trip it.
"""

from __future__ import annotations

import inspect
import os
from typing import Any, ClassVar, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from .pretrained import Contract, from_pretrained, save_pretrained

__all__ = ["SSLMethod", "BaseMaskedAutoencoder", "BaseContrastiveLearner", "signal_of",
           "check_input"]


def signal_of(batch: Any) -> Tensor:
    """The signal of a batch: ``x`` itself, or the first item of ``(signal, label, ...)``
    or the ``"signal"`` entry of a dict."""
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, dict):
        if "signal" not in batch:
            raise ValueError(f"batch dict needs a 'signal' key, got {sorted(batch)}")
        return batch["signal"]
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    raise TypeError(f"expected a (B, n_leads, n_samples) tensor or (signal, label), got "
                    f"{type(batch).__name__}")


def check_input(x: Tensor, n_leads: int, seq_len: int, patch_size: int, name: str) -> None:
    """Shape rules of the masked autoencoders, as clear errors."""
    if x.dim() != 3:
        raise ValueError(f"{name}: expected (batch, n_leads, n_samples), got {tuple(x.shape)}")
    if x.shape[1] > n_leads:
        raise ValueError(f"{name}: input has {x.shape[1]} leads, the model was built for "
                         f"{n_leads}")
    if x.shape[2] > seq_len:
        raise ValueError(f"{name}: input has {x.shape[2]} samples, the model was built for "
                         f"at most {seq_len}; crop it")
    if x.shape[2] % patch_size:
        raise ValueError(f"{name}: n_samples={x.shape[2]} is not a multiple of patch_size="
                         f"{patch_size}; crop to {x.shape[2] - x.shape[2] % patch_size}")


class SSLMethod(nn.Module):
    """Base of every SSL method; see the module docstring."""

    method_name: ClassVar[str] = ""
    registry_name: ClassVar[str] = "SSL"
    embed_dim: int

    def __init__(self):
        super().__init__()
        self.config: dict = {"name": self.method_name}
        self.contract: Optional[Contract] = None

    def _record(self, frame_locals: dict, contract: Optional[Contract] = None) -> None:
        """Keep the constructor's arguments (JSON values) as ``config``."""
        params = inspect.signature(type(self).__init__).parameters
        args = {k: frame_locals[k] for k in params if k != "self" and k in frame_locals}
        args = {k: list(v) if isinstance(v, tuple) else v for k, v in args.items()}
        if contract is not None and "preprocess" in args:
            args["preprocess"] = contract.preprocess  # a JSON config, not a module
        if contract is not None and "lead_names" in args:
            args["lead_names"] = contract.lead_names
        self.config = {"name": self.method_name, **args}
        self.contract = contract

    # ---- the interface ----------------------------------------------------------------

    def pretrain_step(self, batch: Any) -> dict:
        raise NotImplementedError

    def forward(self, batch: Any) -> dict:
        return self.pretrain_step(batch)

    def embed(self, x: Tensor) -> Tensor:
        """``(B, D)`` representation: the mean of :meth:`forward_features` over tokens."""
        return self.forward_features(x).mean(-1)

    def forward_features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def encoder_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes of the encoder (what fine-tuning keeps)."""
        raise NotImplementedError

    def encoder_state_dict(self) -> dict:
        prefixes = self.encoder_prefixes()
        return {k: v for k, v in self.state_dict().items() if k.startswith(prefixes)}

    def layer_id(self, param_name: str) -> int:
        """Depth of a parameter for layer-wise lr decay: 0 for embeddings,
        ``i + 1`` for block ``i``, ``num_layers`` for what follows the blocks."""
        return self.num_layers

    @property
    def num_layers(self) -> int:
        return 1

    # ---- contract and checkpoints -------------------------------------------------------

    def preprocess(self, raw: Tensor, fs: float) -> Tensor:
        """Raw record(s) at `fs` -> this model's input, by its contract."""
        if self.contract is None:
            raise ValueError(f"{self.method_name}: no preprocessing contract attached")
        return self.contract.apply(raw, fs)

    def save_pretrained(self, directory: Union[str, os.PathLike]):
        return save_pretrained(self, directory)

    @classmethod
    def from_pretrained(cls, directory: Union[str, os.PathLike], **overrides) -> "SSLMethod":
        """Rebuild from :meth:`save_pretrained`; on a subclass, a checkpoint of another
        method raises ValueError."""
        model = from_pretrained(directory, expect=cls.method_name or None, **overrides)
        if not isinstance(model, cls):
            raise ValueError(f"{directory} holds a {type(model).__name__}, not a {cls.__name__}")
        return model


class BaseMaskedAutoencoder(SSLMethod):
    """Masked modelling: mask patches, encode the kept ones, reconstruct the masked ones.

    Subclasses define the token layout (``mask_mode``), the encoder and decoder; the loss
    is :func:`fastecg.ops.masked_reconstruction_loss`.
    """

    mask_mode: ClassVar[str] = "temporal"
    patch_size: int
    mask_ratio: float
    n_leads: int
    seq_len: int

    def encoder_prefixes(self) -> tuple[str, ...]:
        return ("patch_embed", "pos_embed", "lead_embed", "sep_embed", "cls_token", "blocks.",
                "norm.")

    @property
    def num_layers(self) -> int:
        return len(self.blocks) + 1

    def layer_id(self, param_name: str) -> int:
        if param_name.startswith("blocks."):
            return int(param_name.split(".")[1]) + 1
        if param_name.startswith(("patch_embed", "pos_embed", "lead_embed", "sep_embed",
                                  "cls_token")):
            return 0
        return self.num_layers


class BaseContrastiveLearner(SSLMethod):
    """Contrastive learning: two augmented views of each record, an encoder (any
    :data:`fastecg.registry.BACKBONES` entry: only ``forward_features`` is used), a
    projector, and a loss between the views' projections (InfoNCE by default).

    Subclasses (SimCLR, MoCo, CLOCS) override :meth:`views` and, if needed,
    :meth:`contrastive_loss`.
    """

    def __init__(self, encoder: Union[str, dict] = "resnet18", n_leads: int = 12,
                 proj_dim: int = 128, temperature: float = 0.1):
        super().__init__()
        from fastecg.registry import BACKBONES

        spec = {"name": encoder} if isinstance(encoder, str) else dict(encoder)
        self.encoder = BACKBONES.build({**spec, "in_channels": n_leads})
        width = self.encoder.out_channels
        self.embed_dim = width
        self.projector = nn.Sequential(nn.Linear(width, width), nn.ReLU(inplace=True),
                                       nn.Linear(width, proj_dim))
        self.temperature = float(temperature)

    def encoder_prefixes(self) -> tuple[str, ...]:
        return ("encoder.",)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.encoder.forward_features(x)

    def views(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def contrastive_loss(self, z1: Tensor, z2: Tensor) -> Tensor:
        """Symmetric InfoNCE (NT-Xent) between matching rows of `z1` and `z2`."""
        z = nn.functional.normalize(torch.cat([z1, z2]), dim=1)
        sim = z @ z.T / self.temperature
        n = z1.shape[0]
        sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
        target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
        return nn.functional.cross_entropy(sim, target)

    def pretrain_step(self, batch: Any) -> dict:
        x = signal_of(batch)
        v1, v2 = self.views(x)
        z1 = self.projector(self.embed(v1))
        z2 = self.projector(self.embed(v2))
        return {"loss": self.contrastive_loss(z1, z2)}


def default_leads(n_leads: int) -> Sequence[str]:
    from fastecg.transforms.recipes import STANDARD_LEADS

    return list(STANDARD_LEADS[:n_leads]) if n_leads <= len(STANDARD_LEADS) else \
        [f"lead{i}" for i in range(n_leads)]
