"""Registry-built 1-D backbones (``BACKBONES``) and downstream models (``MODELS``).

Importing this package fills ``BACKBONES``, ``MODELS`` and ``ATTN_LAYERS``; the
registries import it themselves on their first lookup.

>>> from fastecg.registry import BACKBONES
>>> net = BACKBONES.build("resnet", in_channels=12)
>>> net.compute_features_output_shape(5000, batch_size=2)  # (batch, channels, length)
(2, 512, 157)
"""

import importlib

from ._base import Backbone, SequenceTooShort, output_length

# Modules whose import registers backbones / models; each file registers its own names.
_REGISTERING = (
    "backbones",
    "attention",
    "ecg_crnn",
    "ecg_seq_lab_net",
    "ecg_fcn",
)
for _mod in _REGISTERING:
    importlib.import_module(f".{_mod}", __name__)

from .attention import GlobalContext, NonLocal, SelfAttention, SqueezeExcitation  # noqa: E402
from .ecg_crnn import ECG_CRNN  # noqa: E402
from .ecg_fcn import ECG_FCN  # noqa: E402
from .ecg_seq_lab_net import ECG_SEQ_LAB_NET  # noqa: E402
from .grad_cam import GradCam  # noqa: E402

__all__ = ["Backbone", "SequenceTooShort", "output_length", "ECG_CRNN", "ECG_SEQ_LAB_NET",
           "ECG_FCN", "GradCam", "SelfAttention", "SqueezeExcitation", "GlobalContext",
           "NonLocal"]
