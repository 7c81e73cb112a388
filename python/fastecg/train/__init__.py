"""Training utilities: losses, optimizers and schedulers (registered by name).

Importing this package fills ``LOSSES``, ``OPTIMIZERS`` and ``SCHEDULERS``.
"""

from . import losses, optim

__all__ = ["losses", "optim"]
from .trainer import Trainer

__all__ += ["Trainer"]
