"""One :class:`Registry` class for everything fastecg builds by name, and its instances.

This module imports nothing it registers: the packages that define entries fill the
registries when they are imported (``fastecg.models`` registers its backbones, ...).
Each instance also names those provider modules and imports them on its first lookup,
so ``from fastecg.registry import BACKBONES`` works whichever module a user imports first.

>>> from fastecg.registry import LOSSES
>>> loss = LOSSES.build("focal", gamma=2.0)
>>> loss = LOSSES.build({"name": "focal", "gamma": 2.0})
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

__all__ = [
    "Registry", "RegistryKeyError", "did_you_mean", "MODELS", "BACKBONES", "ATTN_LAYERS",
    "OPTIMIZERS", "SCHEDULERS", "LOSSES", "PREPROCESSORS", "AUGMENTERS", "SSL",
]


def did_you_mean(name: object, known: Iterable[str], n: int = 5, cutoff: float = 0.5) -> str:
    """``"; did you mean 'a', 'b'?"`` naming the entries of ``known`` closest to ``name``
    (compared ignoring case, spelled as in ``known``), or ``""`` if none is close.

    fastecg's one "did you mean" rule, for error messages about an unknown name or key:

    >>> did_you_mean("resnt", ["resnet", "vgg16"])
    "; did you mean 'resnet'?"
    """
    lowered = {k.lower(): k for k in known}
    close = difflib.get_close_matches(str(name).lower(), lowered, n=n, cutoff=cutoff)
    return f"; did you mean {', '.join(repr(lowered[c]) for c in close)}?" if close else ""


class RegistryKeyError(KeyError, ValueError):
    """A registry name (or a config's ``"name"`` key) that is missing or not registered.

    Both a ``ValueError``, as the pipelines' configs (``PreprocManager.from_config``,
    ``AugmenterManager.from_config``) raise for the same mistake, and a ``KeyError``, as a
    failed lookup by key: ``except ValueError`` and ``except KeyError`` both catch it.
    Its message is printed as written (a plain ``KeyError`` quotes it).

    Examples
    --------
    >>> from fastecg.registry import LOSSES
    >>> try:
    ...     LOSSES.build("focl")
    ... except ValueError as err:
    ...     print(err)
    unknown loss 'focl'; did you mean 'focal'? (registered: ...)
    """

    def __str__(self) -> str:
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class Registry:
    """Name -> factory (a class or a function).

    Parameters
    ----------
    kind : str
        What it holds ("backbone", "loss", ...), used in error messages.
    providers : sequence of str, optional
        Modules whose import registers this registry's entries (``"fastecg.models"``).
        They are imported once, on the first lookup (``get``, ``build``, ``list``,
        ``in``, ``len``, iteration), not when the registry is created or written to.

    Examples
    --------
    >>> from fastecg.registry import Registry
    >>> SHAPES = Registry("shape")
    >>> @SHAPES.register("square")
    ... def square(side=1.0):
    ...     "A square's area."
    ...     return side * side
    >>> SHAPES.build("square", side=3.0), SHAPES.build({"name": "square", "side": 2.0})
    (9.0, 4.0)
    >>> SHAPES.build("sqare")
    Traceback (most recent call last):
        ...
    fastecg.registry.RegistryKeyError: unknown shape 'sqare'; did you mean 'square'?
    (registered: square)
    """

    def __init__(self, kind: str, providers: Sequence[str] = ()):
        self.kind = kind
        self.providers = tuple(providers)
        self._entries: dict[str, Callable] = {}
        self._loaded = not self.providers

    def _load(self) -> None:
        if self._loaded:
            return
        # Set first: a provider may look itself up while it is being imported.
        self._loaded = True
        try:
            for module in self.providers:
                importlib.import_module(module)
        except BaseException:
            self._loaded = False
            raise

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
        """The factory registered as ``name``; :class:`RegistryKeyError` (a ``KeyError``
        and a ``ValueError``) naming the registry and the close matches if none."""
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            raise RegistryKeyError(self._unknown(name)) from None

    def build(self, spec: Union[str, Mapping[str, Any]], *args, **kwargs) -> Any:
        """Call the factory named by ``spec`` (a name, or a dict with a ``"name"`` key and
        keyword arguments); explicit ``kwargs`` override the dict's. An unknown name, or a
        dict without ``"name"``, is a :class:`RegistryKeyError` (a ``ValueError``, as in
        the pipelines' configs, and a ``KeyError``); a keyword the factory does not take
        is a ``TypeError`` naming the entry and the close matches."""
        if isinstance(spec, Mapping):
            config = dict(spec)
            if "name" not in config:
                raise RegistryKeyError(f"{self.kind} config needs a 'name' key, got keys "
                                       f"{sorted(config)}")
            name = config.pop("name")
            kwargs = {**config, **kwargs}
        elif isinstance(spec, str):
            name = spec
        else:
            raise TypeError(f"{self.kind}: expected a name or a dict with 'name', got "
                            f"{type(spec).__name__}")
        if not isinstance(name, str):
            raise TypeError(f"{self.kind} config: 'name' must be a string, got {name!r}")
        factory = self.get(name)
        takes = _keyword_names(factory) if kwargs else None
        unknown = [k for k in kwargs if takes is not None and k not in takes]
        if unknown:
            raise TypeError(f"{self.kind} {name!r}: unknown argument {unknown[0]!r}"
                            f"{did_you_mean(unknown[0], takes)} (it takes {', '.join(takes)})")
        return factory(*args, **kwargs)

    def list(self, pattern: Optional[str] = None) -> list[str]:
        """Registered names, sorted; ``pattern`` keeps those containing it."""
        self._load()
        return sorted(n for n in self._entries if pattern is None or pattern.lower() in n.lower())

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        """Registered names, sorted (as :meth:`list`)."""
        return iter(self.list())

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def __repr__(self) -> str:
        # Does not load the providers: a repr must not import half the package.
        state = f"{len(self._entries)} entries" if self._loaded else "providers not imported"
        return f"Registry({self.kind!r}, {state})"

    def _unknown(self, name: str) -> str:
        return (f"unknown {self.kind} {name!r}{did_you_mean(name, self._entries)} "
                f"(registered: {', '.join(self.list())})")


def _keyword_names(factory: Callable) -> Optional[list[str]]:
    """The keyword arguments `factory` takes, or None if it takes any (``**kwargs``) or
    has no signature to read."""
    import inspect

    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


# Each registry names the modules that fill it; they import this module, never the
# other way round (the lazy import above runs at the first lookup).
_MODELS = ("fastecg.models",)
# (a fine-tuned SSL encoder, SSLClassifier, is a model too: saved and rebuilt as one)
MODELS = Registry("model", _MODELS + ("fastecg.ssl.finetune",))
BACKBONES = Registry("backbone", _MODELS)
ATTN_LAYERS = Registry("attention layer", _MODELS)
OPTIMIZERS = Registry("optimizer", ("fastecg.train.optim",))
SCHEDULERS = Registry("scheduler", ("fastecg.train.optim",))
LOSSES = Registry("loss", ("fastecg.train.losses",))
PREPROCESSORS = Registry("preprocessor", ("fastecg.preprocessors",))
AUGMENTERS = Registry("augmenter", ("fastecg.augmenters",))
SSL = Registry("SSL method", ("fastecg.ssl",))
