"""fastecg: compiled-kernel acceleration for ECG deep learning in PyTorch.

Submodules load on first use, so ``import fastecg.numpy_path`` (NumPy/SciPy only)
never imports torch.

>>> import torch, fastecg
>>> y = fastecg.ops.normalize(torch.randn(8, 12, 5000), method="z-score")
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "ops", "transforms", "preprocessors", "augmenters", "models", "ssl", "numpy_path", "data",
    "train", "bench", "registry", "cli",
)


def backends():
    """What this install can run: ``{name: BackendInfo(available, reason)}``.

    Names are ``cpu`` (compiled C++ extension), ``cuda`` (compiled CUDA kernels and a
    GPU), ``triton`` (Triton with a GPU driver, or its CPU interpreter under
    ``TRITON_INTERPRET=1``) and ``torch`` (the pure-PyTorch reference, always there).
    """
    from .ops._dispatch import backends as _backends

    return _backends()


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'fastecg' has no attribute {name!r}")


__all__ = ["backends", "__version__", *_SUBMODULES]
