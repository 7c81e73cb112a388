"""Self-supervised pretraining: masked autoencoders (MAE-1D, ST-MEM, MAE-ECG), contrastive
learners (SimCLR, MoCo v2/v3, CLOCS), the base classes of every SSL method, checkpoints
that carry their input contract, fine-tuning, and the evaluation harness (linear probe,
kNN, fine-tuning, always beside a randomly initialised twin; scikit-learn is imported
when it runs) with :func:`compare` behind ``fastecg ssl-compare``.

Importing this package fills :data:`fastecg.registry.SSL`.
"""

from .base import BaseContrastiveLearner, BaseMaskedAutoencoder, SSLMethod, nt_xent
from .clocs import CLOCS, clocs_loss, cut_segments
from .compare import compare
from .evaluate import PROTOCOLS as EVAL_PROTOCOLS
from .evaluate import bootstrap_scores, evaluate, label_subsample, train_test_indices
from .finetune import SSLClassifier, finetune
from .mae_1d import MAE1D
from .mae_ecg import MAEECG
from .moco import MoCo, momentum_update, queue_info_nce
from .pretrained import Contract, from_pretrained, save_pretrained
from .simclr import SimCLR
from .st_mem import STMEM

__all__ = ["BaseContrastiveLearner", "BaseMaskedAutoencoder", "SSLMethod", "MAE1D", "STMEM",
           "MAEECG", "SimCLR", "MoCo", "CLOCS", "nt_xent", "queue_info_nce",
           "momentum_update", "clocs_loss", "cut_segments", "Contract", "from_pretrained",
           "save_pretrained", "SSLClassifier", "finetune", "evaluate", "EVAL_PROTOCOLS",
           "bootstrap_scores", "label_subsample", "train_test_indices", "compare"]
