"""Pipelines: :class:`TransformManager`, the one base of fastecg's preprocessing and
augmentation pipelines, and the torch-free parts both paths share (configs, the steps'
designs and checks, the published models' recipes).

The torch parts (``TransformManager``, ``Transform``) load on first use, so that
``fastecg.numpy_path`` can build pipelines from the same configs without importing torch.
"""

import importlib

from .config import MANAGER_KEYS, SignalInfo, parse_config

_TORCH = {"TransformManager": "manager", "Transform": "manager"}


def __getattr__(name):
    if name in _TORCH:
        return getattr(importlib.import_module(f".{_TORCH[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["TransformManager", "Transform", "SignalInfo", "parse_config", "MANAGER_KEYS"]
