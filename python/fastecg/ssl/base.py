"""What every SSL method shares.

An SSL method is a plain ``nn.Module``: ``pretrain_step(batch) -> dict(loss=..., ...)``
(``forward`` is the same call, so DistributedDataParallel's hooks run), ``embed(x) ->
(B, D)``, ``forward_features(x) -> (B, D, L)`` (the encoder's tokens or feature maps, the
backbone contract), ``encoder_state_dict()``, and ``grad_accum``, the micro-batches of
an optimizer step (1; the :class:`~fastecg.train.Trainer` sets it to its own: MoCo then
moves its key encoder once per optimizer step, not once per micro-batch). It also runs in
a user's own loop or a Lightning module::

    model = SSL.build("mae_1d", n_leads=12, seq_len=5000)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for x in loader:                      # (B, 12, 5000) or (signal, label)
        loss = model.pretrain_step(x)["loss"]
        opt.zero_grad(); loss.backward(); opt.step()

    # Lightning: def training_step(self, batch, i): return self.model.pretrain_step(batch)["loss"]
    # (with gradients accumulated over k batches, set model.grad_accum = k)

Each method records the arguments it was built with (``config``, which rebuilds it
through :data:`fastecg.registry.SSL`) and its input contract (``contract``), so that
``save_pretrained`` / ``from_pretrained`` round-trip it.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
from typing import Any, ClassVar, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from .._spec import check_lead_names
from ..train.trainer import signal_of
from .pretrained import Contract, from_pretrained, save_pretrained

__all__ = ["SSLMethod", "BaseMaskedAutoencoder", "BaseContrastiveLearner", "signal_of",
           "check_input", "nt_xent", "build_augmenter", "DEFAULT_AUGMENT"]


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

    #: Micro-batches (``pretrain_step`` calls with gradients) of one optimizer step: a
    #: method that updates something from the new weights (MoCo's key encoder) does it
    #: at the first of them. The Trainer sets it to its ``grad_accum``.
    grad_accum: int = 1

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

    def _check_mask_count(self, n_leads: int, n_samples: int, at_step: bool = True) -> None:
        """ValueError where `mask_ratio` would mask nothing: ``round(n * mask_ratio)``
        is 0 for the ``n`` units it is a fraction of (patches, per lead with
        ``lead_temporal``; leads with ``lead``), so the loss, a mean over the masked
        patches, would be 0 / 0. At construction (``at_step=False``) `n_leads` and
        `n_samples` are the most the model takes: no input could be masked."""
        if self.mask_mode == "lead":
            n, unit = n_leads, "leads"
        else:
            n = n_samples // self.patch_size
            unit = "patches per lead" if self.mask_mode == "lead_temporal" else "patches"
        if round(n * self.mask_ratio) >= 1:
            return
        count = f"round({n} x {self.mask_ratio}) = 0"
        if at_step:
            raise ValueError(f"{self.method_name}: the input has {n} {unit}; mask_ratio="
                             f"{self.mask_ratio} masks {count} of them, and the loss is a "
                             f"mean over masked patches: give a longer input or a larger "
                             f"mask_ratio")
        raise ValueError(f"{self.method_name}: mask_ratio={self.mask_ratio} masks {count} "
                         f"of the {n} {unit} of the largest input the model takes, so no "
                         f"input would have a masked patch to learn from; use a mask_ratio "
                         f"above {0.5 / n:.3g}")

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


# A default for ECG views (contrastive methods): gain per lead, baseline wander, white
# noise, time-outs and small shifts. Every step keeps the shape, so both views of a
# record batch together through the encoder. Mehari & Strodthoff (2022) found noise and
# time-out among the most useful ECG augmentations for SimCLR-style training.
DEFAULT_AUGMENT = (
    {"name": "amplitude_scale", "scale": [0.6, 1.4], "per_channel": True, "prob": 0.8},
    {"name": "baseline_wander", "prob": 0.5},
    {"name": "gaussian_noise", "snr_db": [15.0, 30.0], "prob": 0.8},
    {"name": "random_masking", "mask_width": [0.08, 0.18], "prob": [0.5, 0.15]},
    {"name": "time_shift", "max_shift_s": 0.2, "prob": 0.5},
)


def build_augmenter(augment: Any, fs: Optional[float], lead_names: Optional[Sequence[str]]):
    """``(AugmenterManager, its JSON config)`` from `augment`: None (the ECG default
    :data:`DEFAULT_AUGMENT`), a list of steps, an AugmenterManager config dict (as its
    ``to_config`` writes) or an AugmenterManager. The input's rate and leads come from
    the model's contract unless the config names them.

    Parameters
    ----------
    augment : None, list, dict, str (JSON) or AugmenterManager
    fs : float or None
        Sampling rate of the input in Hz.
    lead_names : sequence of str or None
        The input's leads in order.

    Returns
    -------
    (AugmenterManager, dict)

    Examples
    --------
    >>> am, config = build_augmenter([{"name": "gaussian_noise"}], 500.0, None)
    >>> am.views(torch.randn(4, 12, 5000), 2).shape, config["fs"]
    (torch.Size([2, 4, 12, 5000]), 500.0)
    """
    from fastecg.augmenters import AugmenterManager

    if augment is None:
        augment = [dict(step) for step in DEFAULT_AUGMENT]
    if isinstance(augment, AugmenterManager):
        augment = augment.to_config()
    if isinstance(augment, str):
        augment = json.loads(augment)
    if not isinstance(augment, (list, tuple, dict)):
        raise TypeError(f"augment must be None, a list of augmenter steps, an "
                        f"AugmenterManager or its config dict, got {type(augment).__name__}")
    options = {}
    if not (isinstance(augment, dict) and augment.get("fs") is not None):
        options["fs"] = fs
    if not (isinstance(augment, dict) and augment.get("lead_names") is not None):
        options["lead_names"] = lead_names
    manager = AugmenterManager.from_config(augment, **options)
    return manager, manager.to_config()


def check_global_batch(n: int, name: str) -> None:
    """A contrastive loss needs two records or more in the (global) batch: with one, the
    positive is the only candidate and the loss is a constant."""
    from ._distributed import rank_and_world

    if n * rank_and_world()[1] < 2:
        raise ValueError(f"{name}: a contrastive loss needs a batch of at least 2 records "
                         f"(negatives come from the other records), got {n}")


def loss_in_float32(fn):
    """Decorator of a contrastive loss: its floating-point tensor arguments widened to
    float32 (float64 stays float64) and autocast off on their devices while it runs.

    Logits are cosine similarities divided by a temperature of 0.07 to 0.2, so logits
    up to about 14 in magnitude: bfloat16 (8 bits of mantissa) rounds them by up to
    0.03, float16 by up to 0.004, and autocast would run the similarity matmuls in that
    dtype even on float32 inputs. Widening the ``(n, D)`` projections costs little; the
    gradient flows back to the caller's dtype.

    Examples
    --------
    >>> @loss_in_float32
    ... def dtype_of(z):
    ...     return (z @ z.T).dtype
    >>> with torch.autocast("cpu", dtype=torch.bfloat16):
    ...     dtype_of(torch.ones(2, 3, dtype=torch.bfloat16))
    torch.float32
    """
    def widen(v):
        if isinstance(v, Tensor) and v.is_floating_point():
            return v.to(torch.promote_types(v.dtype, torch.float32))
        return v

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        args = [widen(v) for v in args]
        kwargs = {k: widen(v) for k, v in kwargs.items()}
        # a loss's tensors share one device
        device = next((v.device.type for v in [*args, *kwargs.values()]
                       if isinstance(v, Tensor)), "cpu")
        off = torch.autocast(device, enabled=False) \
            if torch.amp.is_autocast_available(device) else contextlib.nullcontext()
        with off:
            return fn(*args, **kwargs)

    return wrapper


@loss_in_float32
def nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """NT-Xent (SimCLR's normalised temperature-scaled cross entropy) of matching rows
    of `z1` and `z2`, over the global batch under ``torch.distributed``.

    Each of the ``2N`` projections is an anchor whose positive is the other view of its
    record and whose negatives are the other ``2N - 2`` projections; the loss is the mean
    of the ``2N`` cross entropies of cosine similarities divided by `temperature`. Under
    ``torch.distributed`` (world > 1) the projections of every rank are gathered with
    gradients and this rank's anchors are scored against all of them (see
    :mod:`fastecg.ssl._distributed`); the value returned on every rank is the global
    batch's loss.

    Parameters
    ----------
    z1, z2 : Tensor, shape (n, D)
        Projections of the two views of this rank's `n` records.
    temperature : float
        Divides the cosine similarities.

    Returns
    -------
    Tensor
        Scalar loss, float32 (float64 for float64 input), computed outside autocast
        (see :func:`loss_in_float32`).

    Examples
    --------
    >>> z = torch.eye(2)
    >>> round(nt_xent(z, z, 1.0).item(), 4)  # -log(e / (e + 2))
    0.5514
    """
    from ._distributed import gather_with_grad, mean_over_ranks, rank_and_world

    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"nt_xent: z1 and z2 must be (n, D) of one shape, got "
                         f"{tuple(z1.shape)} and {tuple(z2.shape)}")
    check_global_batch(z1.shape[0], "nt_xent")
    n = z1.shape[0]
    rank, _ = rank_and_world()
    local = nn.functional.normalize(torch.cat([z1, z2]), dim=1)        # (2n, D)
    keys = nn.functional.normalize(gather_with_grad(torch.stack([z1, z2], 1)), dim=-1)
    big_n = keys.shape[0]
    keys = keys.transpose(0, 1).reshape(2 * big_n, -1)                  # view-major
    sim = local @ keys.T / temperature                                   # (2n, 2N)
    own = torch.arange(n, device=z1.device) + rank * n                   # global rows
    rows = torch.arange(2 * n, device=z1.device)
    self_col = torch.cat([own, own + big_n])
    sim = sim.index_put((rows, self_col), sim.new_tensor(float("-inf")))
    target = torch.cat([own + big_n, own])
    return mean_over_ranks(nn.functional.cross_entropy(sim, target))


class BaseContrastiveLearner(SSLMethod):
    """Contrastive learning: augmented views of each record, an encoder (any
    :data:`fastecg.registry.BACKBONES` entry: only ``forward_features`` is used), a
    projector, and a loss between the views' projections (NT-Xent by default).

    Subclasses (SimCLR, MoCo, CLOCS) override :meth:`views` and, if needed,
    :meth:`contrastive_loss`; they set up their input contract with
    :meth:`_set_contract` and their augmentations with :func:`build_augmenter`.

    Parameters
    ----------
    encoder : str or dict
        Backbone name or config (``{"name": "resnet18", ...}``); its ``in_channels`` is
        set here.
    n_leads : int
        Leads of the input.
    proj_dim : int
        Output width of the projector (a two-layer MLP of the encoder's width).
    temperature : float
        Of the contrastive loss.
    in_channels : int, optional
        Channels the encoder sees (`n_leads` by default; 1 for single-lead views).

    Examples
    --------
    >>> class NoiseViews(BaseContrastiveLearner):
    ...     def views(self, x):
    ...         return x + 0.1 * torch.randn_like(x), x + 0.1 * torch.randn_like(x)
    >>> model = NoiseViews({"name": "resnet18", "widths": [8, 8, 8, 8], "stem_channels": 8},
    ...                    n_leads=3)
    >>> model.pretrain_step(torch.randn(4, 3, 400))["loss"].ndim
    0
    """

    def __init__(self, encoder: Union[str, dict] = "resnet18", n_leads: int = 12,
                 proj_dim: int = 128, temperature: float = 0.1,
                 in_channels: Optional[int] = None):
        super().__init__()
        from fastecg.registry import BACKBONES

        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        spec = {"name": encoder} if isinstance(encoder, str) else dict(encoder)
        self.n_leads = int(n_leads)
        self.in_channels = int(in_channels if in_channels is not None else n_leads)
        self.encoder = BACKBONES.build({**spec, "in_channels": self.in_channels})
        width = self.encoder.out_channels
        self.embed_dim = width
        self.projector = nn.Sequential(nn.Linear(width, width), nn.ReLU(inplace=True),
                                       nn.Linear(width, proj_dim))
        self.temperature = float(temperature)
        self.seq_len: Optional[int] = None

    def encoder_prefixes(self) -> tuple[str, ...]:
        return ("encoder.",)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.encoder.forward_features(x)

    def views(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def contrastive_loss(self, z1: Tensor, z2: Tensor) -> Tensor:
        """Symmetric InfoNCE (NT-Xent, :func:`nt_xent`) between matching rows of `z1`
        and `z2`, over the global batch under ``torch.distributed``."""
        return nt_xent(z1, z2, self.temperature)

    def pretrain_step(self, batch: Any) -> dict:
        x = signal_of(batch)
        v1, v2 = self.views(x)
        z1 = self.projector(self.embed(v1))
        z2 = self.projector(self.embed(v2))
        return {"loss": self.contrastive_loss(z1, z2)}

    # ---- helpers of the registered methods ----------------------------------------------

    def _set_contract(self, seq_len: int, fs: float, lead_names: Optional[Sequence[str]],
                      preprocess: Any) -> Contract:
        name = self.method_name
        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
            raise ValueError(f"{name}: seq_len must be a positive int, got {seq_len!r}")
        lead_names = model_lead_names(lead_names, self.n_leads, name)
        self.seq_len, self.fs, self.lead_names = seq_len, float(fs), lead_names
        return Contract(fs, lead_names, seq_len, preprocess)

    def _check_signal(self, x: Tensor) -> None:
        """(B, n_leads, n_samples) with at most ``seq_len`` samples, as clear errors."""
        name = self.method_name
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: expected a tensor, got {type(x).__name__}")
        if x.dim() != 3:
            raise ValueError(f"{name}: expected (batch, n_leads, n_samples), got "
                             f"{tuple(x.shape)}")
        if x.shape[1] != self.n_leads:
            raise ValueError(f"{name}: input has {x.shape[1]} leads, the model was built for "
                             f"{self.n_leads}")
        if self.seq_len is not None and x.shape[2] > self.seq_len:
            raise ValueError(f"{name}: input has {x.shape[2]} samples, the model was built "
                             f"for at most seq_len={self.seq_len}; crop it")
        check_global_batch(x.shape[0], name)

    def _augmented_views(self, x: Tensor, n: int = 2) -> Tensor:
        """`n` augmented views of `x` from one AugmenterManager pass, ``(n, *x.shape)``.
        Keyed by a seed from torch's generator and the records' positions in the global
        batch, so that ranks seeded alike draw what one process draws on the global
        batch."""
        from ._distributed import global_indices

        return self.augmenter.views(x, n, indices=global_indices(x.shape[0], x.device))


def default_leads(n_leads: int) -> Sequence[str]:
    from fastecg.transforms.recipes import STANDARD_LEADS

    return list(STANDARD_LEADS[:n_leads]) if n_leads <= len(STANDARD_LEADS) else \
        [f"lead{i}" for i in range(n_leads)]


def model_lead_names(lead_names: Optional[Sequence[str]], n_leads: int, name: str) -> list:
    """A model's input leads as a list: `lead_names` (distinct names, one per lead; a
    bare string is a TypeError, not its letters), or the default names of `n_leads`."""
    if lead_names is None:
        return list(default_leads(n_leads))
    lead_names = list(check_lead_names(lead_names, f"{name}: lead_names"))
    if len(lead_names) != n_leads:
        raise ValueError(f"{name}: {len(lead_names)} lead names for {n_leads} leads")
    return lead_names
