"""torch's common optimizers and LR schedulers in the OPTIMIZERS / SCHEDULERS registries,
and :func:`param_groups`, the weight-decay split of the Trainer's default AdamW.

>>> import torch
>>> from fastecg.registry import OPTIMIZERS, SCHEDULERS
>>> model = torch.nn.Linear(12, 2)
>>> optimizer = OPTIMIZERS.build({"name": "adamw", "lr": 1e-3}, model.parameters())
>>> type(optimizer).__name__, optimizer.defaults["lr"]
('AdamW', 0.001)
>>> scheduler = SCHEDULERS.build("cosine", optimizer, T_max=100)
>>> type(scheduler).__name__
'CosineAnnealingLR'
"""

from __future__ import annotations

import torch
from torch import nn

from ..registry import OPTIMIZERS, SCHEDULERS

__all__ = ["decays", "no_decay_names", "param_groups"]

for _name, _cls in {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
                    "sgd": torch.optim.SGD}.items():
    OPTIMIZERS.register(_name)(_cls)

for _name, _cls in {"cosine": torch.optim.lr_scheduler.CosineAnnealingLR,
                    "onecycle": torch.optim.lr_scheduler.OneCycleLR,
                    "step": torch.optim.lr_scheduler.StepLR,
                    "plateau": torch.optim.lr_scheduler.ReduceLROnPlateau}.items():
    SCHEDULERS.register(_name)(_cls)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """The trainable parameters of `model` in two optimizer groups: with `weight_decay`,
    and without it.

    No decay, as in timm, Hugging Face and the MAE / ST-MEM recipes, for parameters of
    at most one dimension (biases, normalisation scales and shifts) and for tokens and
    embeddings held as bare parameters (a name whose last part ends with ``token`` or
    ``embed``: ``cls_token``, ``mask_token``, ``pos_embed``, ``lead_embed``; a layer's
    weight such as ``patch_embed.weight`` is decayed), plus the names a model's
    ``no_weight_decay()`` returns (timm's convention). Shrinking these towards zero
    regularises nothing useful and biases normalisation and positions.

    Parameters
    ----------
    model : nn.Module
    weight_decay : float
        Decay of the first group.

    Returns
    -------
    list of dict
        ``[{"params": decayed, "weight_decay": weight_decay},
        {"params": not_decayed, "weight_decay": 0.0}]``, empty groups left out.

    Examples
    --------
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    >>> [(len(g["params"]), g["weight_decay"]) for g in param_groups(model, 0.05)]
    [(1, 0.05), (3, 0.0)]
    """
    skip = no_decay_names(model)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if decays(name, p, skip) else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def no_decay_names(model: nn.Module) -> set:
    """The parameter names ``model.no_weight_decay()`` returns (timm's convention), if
    the model has that method."""
    method = getattr(model, "no_weight_decay", None)
    return set(method()) if callable(method) else set()


def decays(name: str, p: torch.Tensor, skip: set = frozenset()) -> bool:
    """Whether parameter `name` gets weight decay under :func:`param_groups`' rule:
    not for at most one dimension, a bare token or embedding (last name part ending in
    ``token`` or ``embed``), or a name in `skip`."""
    leaf = name.rsplit(".", 1)[-1]
    return not (p.ndim <= 1 or leaf.endswith(("token", "embed")) or name in skip)
