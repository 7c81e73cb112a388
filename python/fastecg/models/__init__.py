"""Registry-built 1-D backbones (``BACKBONES``) and downstream models (``MODELS``).

>>> from fastecg.registry import BACKBONES
>>> net = BACKBONES.build("resnet", in_channels=12)
>>> net.compute_features_output_shape(5000, batch_size=2)
"""

import importlib

from ._base import Backbone, SequenceTooShort, output_length

# Modules whose import registers backbones / models; each file registers its own names.
_REGISTERING = (
    "backbones",
)
for _mod in _REGISTERING:
    importlib.import_module(f".{_mod}", __name__)

__all__ = ["Backbone", "SequenceTooShort", "output_length"]
