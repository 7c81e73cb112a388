"""torch's common optimizers and LR schedulers in the OPTIMIZERS / SCHEDULERS registries.

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

import torch

from ..registry import OPTIMIZERS, SCHEDULERS

for _name, _cls in {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
                    "sgd": torch.optim.SGD}.items():
    OPTIMIZERS.register(_name)(_cls)

for _name, _cls in {"cosine": torch.optim.lr_scheduler.CosineAnnealingLR,
                    "onecycle": torch.optim.lr_scheduler.OneCycleLR,
                    "step": torch.optim.lr_scheduler.StepLR,
                    "plateau": torch.optim.lr_scheduler.ReduceLROnPlateau}.items():
    SCHEDULERS.register(_name)(_cls)
