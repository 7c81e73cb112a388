"""What every pipeline shares without torch: the signal description a pipeline carries
from step to step, the capture of a step's constructor arguments, and the one parser of
pipeline configs. :mod:`fastecg.numpy_path` builds its pipelines with the same code, so
a config means the same thing on both paths."""

from __future__ import annotations

import functools
import inspect
import json
import math
import numbers
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Optional, Sequence

from ..registry import did_you_mean

__all__ = ["SignalInfo", "Configurable", "Step", "MissingInfo", "parse_config", "build_step",
           "check_prob", "json_value", "check_json", "MANAGER_KEYS", "BACKEND_NAMES"]

# Options of a manager in a config; every other key of a torch_ecg-style dict names a step.
MANAGER_KEYS = ("fs", "lead_names", "random", "steps")
# torch_ecg's manager-level flags that its own managers accept and do not use: taken from
# a torch_ecg-style dict and dropped.
TORCH_ECG_UNUSED_KEYS = ("inplace",)

# fastecg.ops' backend names and "auto", spelled here so that a step checks its backend
# without importing torch (the NumPy path builds the same configs); a test keeps the two
# lists equal.
BACKEND_NAMES = ("auto", "cuda", "triton", "cpu", "torch")


class SignalInfo(NamedTuple):
    """What a pipeline knows about the signal reaching a step (None: unknown).

    ``fs`` in Hz, ``n_leads`` and ``n_samples`` the last two dims of the signal,
    ``lead_names`` the leads in order. Steps map it (a resampler changes ``fs`` and
    ``n_samples``, a lead selector ``n_leads`` and ``lead_names``) and check it before
    any work is done.

    Examples
    --------
    >>> from fastecg.preprocessors import Resample
    >>> from fastecg.transforms import SignalInfo
    >>> Resample(dst_fs=250.0).infer(SignalInfo(fs=500.0, n_leads=12, n_samples=5000))
    SignalInfo(fs=250.0, n_leads=12, n_samples=2500, lead_names=None)
    """

    fs: Optional[float] = None
    n_leads: Optional[int] = None
    n_samples: Optional[int] = None
    lead_names: Optional[tuple] = None


def check_prob(prob: Any, what: str) -> float:
    """`prob` as a float in [0, 1], else ValueError naming it."""
    if isinstance(prob, bool) or not isinstance(prob, numbers.Real) or not 0 <= prob <= 1:
        raise ValueError(f"{what}: prob must be a number in [0, 1], got {prob!r}")
    return float(prob)


def json_value(value: Any, what: str) -> Any:
    """`value` as plain JSON types (tuples and arrays become lists, NumPy scalars Python
    numbers, tensors nested lists); ValueError for anything else, naming `what`."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{what}: {value!r} is not representable in JSON")
        return value
    if isinstance(value, Mapping):
        return {str(k): json_value(v, f"{what}[{k!r}]") for k, v in value.items()}
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple)):  # arrays, tensors
        return json_value(value.tolist(), what)
    if isinstance(value, (list, tuple)):
        return [json_value(v, f"{what}[{i}]") for i, v in enumerate(value)]
    raise ValueError(f"{what}: {type(value).__name__} value {value!r} cannot be saved in a "
                     "config (JSON numbers, strings, lists and dicts only)")


class Configurable:
    """Mixin: an instance remembers the arguments its class was built with, defaults
    filled in, as ``self.config()`` (JSON values), so that ``type(step)(**step.config())``
    rebuilds it. A subclass's own ``__init__`` records them; a base ``__init__`` it calls
    records nothing more."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None or getattr(init, "_records_config", False):
            return
        signature = inspect.signature(init)
        names = list(signature.parameters)[1:]  # less self

        @functools.wraps(init)
        def recording_init(self, *args, **kw):
            if "_init_arguments" not in self.__dict__:  # the outermost class records
                try:
                    bound = signature.bind(self, *args, **kw)
                except TypeError as err:
                    # bind's message names neither the class nor the close matches.
                    unknown = [k for k in kw if k not in names]
                    hint = did_you_mean(unknown[0], names) if unknown else ""
                    raise TypeError(f"{type(self).__name__}: {err}{hint}") from None
                bound.apply_defaults()
                arguments = dict(bound.arguments)
                arguments.pop(next(iter(signature.parameters)))  # self
                for name, param in signature.parameters.items():
                    if param.kind is param.VAR_KEYWORD:
                        arguments.update(arguments.pop(name))
                    elif param.kind is param.VAR_POSITIONAL:
                        raise TypeError(f"{cls.__name__}: *args cannot be saved in a config")
                object.__setattr__(self, "_init_arguments", arguments)
            init(self, *args, **kw)

        recording_init._records_config = True
        cls.__init__ = recording_init

    def config(self) -> dict:
        """Constructor arguments as JSON values (defaults included)."""
        name = type(self).__name__
        return {k: json_value(v, f"{name}.{k}")
                for k, v in self.__dict__.get("_init_arguments", {}).items()}


class MissingInfo(ValueError):
    """A step needs something about the signal (its rate, its lead names) that nobody
    gave. A pipeline built without fs still checks at every call, when it knows more."""


class Step(Configurable):
    """Torch-free part of a pipeline step: its arguments (:class:`Configurable`) and
    :meth:`infer`, which checks the signal the step is given and says what it returns,
    before any work is done. The torch modules (``fastecg.preprocessors``) and the NumPy
    steps (``fastecg.numpy_path``) share these.

    A step that needs the sampling rate has an ``fs`` attribute: the rate it was built
    for, or None to take the pipeline's (:meth:`step_fs`).

    :attr:`floating` says whether the step computes with the samples (filters, scales,
    resamples them) and so takes floating-point input only; a step that only moves
    samples (crops, pads, selects leads) sets it to False and takes any dtype. A pipeline
    takes integer samples exactly when all its steps only move them.
    """

    fs: Optional[float] = None
    floating: bool = True

    def infer(self, info: SignalInfo) -> SignalInfo:
        """Check `info` and return the description of the output (default: unchanged)."""
        return info

    def step_fs(self, info: SignalInfo) -> float:
        """The rate this step works at: its own ``fs``, else the pipeline's. ValueError if
        neither is known, or if they differ (a step built for 500 Hz given 250 Hz)."""
        name = type(self).__name__
        if self.fs is None and info.fs is None:
            raise MissingInfo(f"{name} needs the sampling rate: build it with fs=... or run it "
                             "in a pipeline that knows fs (PreprocManager(..., fs=...) or "
                             "pm(sig, fs))")
        if self.fs is not None and info.fs is not None and self.fs != info.fs:
            raise ValueError(f"{name} was built for fs={self.fs:g} Hz, but the signal reaching "
                             f"it is at {info.fs:g} Hz (build it without fs to take the "
                             "pipeline's)")
        return self.fs if self.fs is not None else info.fs


def check_backend_name(backend: Any, what: str) -> str:
    if backend not in BACKEND_NAMES:
        raise ValueError(f"{what}: unknown backend {backend!r}"
                         f"{did_you_mean(backend, BACKEND_NAMES)} (expected one of "
                         f"{', '.join(BACKEND_NAMES)})")
    return backend


def _unknown(kind: str, name: Any, known: Iterable[str], also: Sequence[str] = ()) -> str:
    """The message for an unknown step `name`; `also`: other names it may have meant."""
    known = list(known)
    return (f"unknown {kind} {name!r}{did_you_mean(name, [*also, *known])} "
            f"(registered: {', '.join(sorted(known))})")


def _step_spec(item: Any, index: int, kind: str, known: Sequence[str]) -> dict:
    if isinstance(item, str):
        spec = {"name": item}
    elif isinstance(item, Mapping):
        if "name" not in item:
            raise ValueError(f"{kind} config, step {index}: a step is a name or a dict with a "
                             f"'name' key, got keys {sorted(map(str, item))}")
        spec = dict(item)
    else:
        raise ValueError(f"{kind} config, step {index}: expected a name or a dict, got "
                         f"{type(item).__name__} {item!r}")
    if spec["name"] not in known:
        raise ValueError(f"{kind} config, step {index}: {_unknown(kind, spec['name'], known)}")
    return spec


def parse_config(config: Any, kind: str, known: Sequence[str]) -> tuple[dict, list[dict]]:
    """``(options, steps)`` from a pipeline config: the manager's options (a subset of
    :data:`MANAGER_KEYS` less ``steps``) and the steps as ``{"name": ..., **kwargs}``.

    Accepted forms (`known`: the registry's names):

    * a list of steps, each a name or a dict with a ``"name"`` key;
    * ``{"steps": [...], "fs": ..., "lead_names": ..., "random": ...}`` (what
      ``to_config`` writes);
    * torch_ecg's form ``{"random": False, "bandpass": {...}, "normalize": {...}}``:
      every key that is not an option names a step, in order; a value ``None`` or
      ``False`` leaves the step out, ``True`` or ``{}`` takes its defaults; an
      ``inplace`` key (which torch_ecg's managers take and do not use) is dropped.

    Raises ValueError for an unknown step (with close matches) or option, or a
    malformed entry, before anything is built.

    Examples
    --------
    >>> from fastecg.registry import PREPROCESSORS
    >>> from fastecg.transforms import parse_config
    >>> parse_config({"random": False, "bandpass": {"lowcut": 1.0}, "normalize": None},
    ...              "preprocessor", PREPROCESSORS.list())
    ({'random': False}, [{'name': 'bandpass', 'lowcut': 1.0}])
    """
    if isinstance(config, (str, bytes)) or not isinstance(config, (Sequence, Mapping)):
        raise ValueError(f"{kind} config: expected a list of steps or a dict, got "
                         f"{type(config).__name__}")
    if not isinstance(config, Mapping):
        return {}, [_step_spec(item, i, kind, known) for i, item in enumerate(config)]
    options = {k: v for k, v in config.items() if k in MANAGER_KEYS and k != "steps"}
    if "steps" in config:
        extra = [k for k in config if k not in MANAGER_KEYS]
        if extra:
            raise ValueError(f"{kind} config: unknown option {extra[0]!r}"
                             f"{did_you_mean(extra[0], MANAGER_KEYS)} (a config with 'steps' "
                             f"takes only {', '.join(MANAGER_KEYS)})")
        steps = config["steps"]
        if isinstance(steps, (str, bytes, Mapping)) or not isinstance(steps, Sequence):
            raise ValueError(f"{kind} config: 'steps' must be a list, got {type(steps).__name__}")
        return options, [_step_spec(item, i, kind, known) for i, item in enumerate(steps)]
    steps = []
    for key, value in config.items():
        if key in MANAGER_KEYS or key in TORCH_ECG_UNUSED_KEYS:
            continue
        if key not in known:
            # A misspelt option ("randm") is as likely as a misspelt step.
            raise ValueError(f"{kind} config: key {key!r} is neither an option "
                             f"({', '.join(MANAGER_KEYS)}) nor a step: "
                             f"{_unknown(kind, key, known, also=MANAGER_KEYS)}")
        if value is None or value is False:
            continue
        if value is True:
            value = {}
        if not isinstance(value, Mapping):
            raise ValueError(f"{kind} config: the value of {key!r} must be a dict of "
                             f"arguments, True, False or None, got {value!r}")
        if "name" in value and value["name"] != key:
            raise ValueError(f"{kind} config: step {key!r} has name {value['name']!r}")
        steps.append({"name": key, **value})
    return options, steps


def build_step(factory: Callable, spec: Mapping, kind: str):
    """``factory(**kwargs)`` for a step spec; an unknown or missing argument is a
    ValueError naming the step and the close matches."""
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # no signature to check against
        return factory(**kwargs)
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        names = [n for n, p in params.items()
                 if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        for key in kwargs:
            if key not in names:
                raise ValueError(f"{kind} {spec['name']!r}: unknown argument {key!r}"
                                 f"{did_you_mean(key, names)} (it takes {', '.join(names)})")
    missing = [n for n, p in params.items() if p.default is p.empty and n not in kwargs
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if missing:
        raise ValueError(f"{kind} {spec['name']!r}: missing argument {missing[0]!r}")
    return factory(**kwargs)


def check_json(config: Any, what: str) -> None:
    """ValueError unless `config` survives a JSON round trip unchanged."""
    try:
        text = json.dumps(config, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what}: not JSON-serialisable ({err})") from None
    if json.loads(text) != config:
        raise ValueError(f"{what}: changes in a JSON round trip")
