"""One :class:`Registry` class for everything fastecg builds by name.

>>> from fastecg.registry import LOSSES
>>> loss = LOSSES.build("focal", gamma=2.0)
>>> loss = LOSSES.build({"name": "focal", "gamma": 2.0})
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Mapping, Optional, Union

__all__ = [
    "Registry", "MODELS", "BACKBONES", "ATTN_LAYERS", "OPTIMIZERS", "SCHEDULERS", "LOSSES",
    "PREPROCESSORS", "AUGMENTERS", "SSL",
]


class Registry:
    """Name -> factory (a class or a function).

    Parameters
    ----------
    kind : str
        What it holds ("backbone", "loss", ...), used in error messages.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable] = {}

    def register(self, name: Union[str, Callable, None] = None, *, force: bool = False):
        """Decorator: ``@REG.register()``, ``@REG.register("name")`` or bare ``@REG.register``.

        Raises ``KeyError`` if the name is taken, unless ``force=True`` replaces it.
        """
        if callable(name):  # bare @REG.register
            return self.register(force=force)(name)

        def add(obj: Callable) -> Callable:
            key = name or obj.__name__
            if key in self._entries and not force:
                raise KeyError(f"{self.kind} {key!r} is already registered "
                               f"(to {self._entries[key]!r}); pass force=True to replace it")
            self._entries[key] = obj
            return obj

        return add

    def get(self, name: str) -> Callable:
        """The factory registered as ``name``; ``KeyError`` with close matches if none."""
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(self._unknown(name)) from None

    def build(self, spec: Union[str, Mapping[str, Any]], *args, **kwargs) -> Any:
        """Call the factory named by ``spec`` (a name, or a dict with a ``"name"`` key and
        keyword arguments); explicit ``kwargs`` override the dict's."""
        if isinstance(spec, Mapping):
            config = dict(spec)
            if "name" not in config:
                raise KeyError(f"{self.kind} config needs a 'name' key, got keys {sorted(config)}")
            name = config.pop("name")
            kwargs = {**config, **kwargs}
        elif isinstance(spec, str):
            name = spec
        else:
            raise TypeError(f"{self.kind}: expected a name or a dict with 'name', got "
                            f"{type(spec).__name__}")
        return self.get(name)(*args, **kwargs)

    def list(self, pattern: Optional[str] = None) -> list[str]:
        """Registered names, sorted; ``pattern`` keeps those containing it."""
        return sorted(n for n in self._entries if pattern is None or pattern.lower() in n.lower())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"

    def _unknown(self, name: str) -> str:
        lowered = {n.lower(): n for n in self._entries}
        close = [lowered[m] for m in difflib.get_close_matches(str(name).lower(), lowered, n=5,
                                                               cutoff=0.5)]
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} (registered: {', '.join(self.list())})"


MODELS = Registry("model")
BACKBONES = Registry("backbone")
ATTN_LAYERS = Registry("attention layer")
OPTIMIZERS = Registry("optimizer")
SCHEDULERS = Registry("scheduler")
LOSSES = Registry("loss")
PREPROCESSORS = Registry("preprocessor")
AUGMENTERS = Registry("augmenter")
SSL = Registry("SSL method")

# Modules whose import registers entries; imported here so that the registries are
# full whichever fastecg module a user imports first.
from .train import losses as _losses, optim as _optim  # noqa: E402,F401
from . import preprocessors as _preprocessors  # noqa: E402,F401
from . import models as _models  # noqa: E402,F401
