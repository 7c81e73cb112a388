"""Self-supervised pretraining: masked autoencoders (MAE-1D, ST-MEM), the base classes
of every SSL method, checkpoints that carry their input contract, and fine-tuning.

Importing this package fills :data:`fastecg.registry.SSL`.
"""

from .base import BaseContrastiveLearner, BaseMaskedAutoencoder, SSLMethod
from .finetune import SSLClassifier, finetune
from .mae_1d import MAE1D
from .pretrained import Contract, from_pretrained, save_pretrained
from .st_mem import STMEM

__all__ = ["BaseContrastiveLearner", "BaseMaskedAutoencoder", "SSLMethod", "MAE1D", "STMEM",
           "Contract", "from_pretrained", "save_pretrained", "SSLClassifier", "finetune"]
