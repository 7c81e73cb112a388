"""The pipeline logic every manager shares, without torch: ordered registered steps, the
config round trip, ``add_``/``rearrange``, random order and per-step probability, and
the signal's description checked step by step before any work.

:class:`fastecg.transforms.TransformManager` (torch, an ``nn.Module``) and
``fastecg.numpy_path.PreprocManager`` (NumPy) are this class with a container for the
steps, a random source and a signal type; their configs mean the same thing.
"""

from __future__ import annotations

import inspect
import numbers
from typing import Any, ClassVar, Iterable, Optional, Sequence, Union

from .._spec import check_bool, check_fs, check_lead_names
from ..registry import Registry, did_you_mean
from .config import (MissingInfo, SignalInfo, Step, build_step, check_json, check_prob,
                     json_value, parse_config)

__all__ = ["PipelineBase"]


def _accepts(factory: Any, name: str) -> bool:
    try:
        return name in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


class PipelineBase:
    """Torch-free core of a pipeline; see :class:`fastecg.transforms.TransformManager`
    for the user-facing description.

    A front end sets :attr:`registry` and :attr:`kind`, calls :meth:`_setup` from its
    ``__init__``, and defines :meth:`_container` (what holds the steps), :meth:`_is_step`
    (what it accepts as a step), :meth:`_permutation` and :meth:`_uniform` (its random
    draws), :meth:`_run_step`, :meth:`_check_signal` (the signal's type) and
    :meth:`_check_floating` (its dtype, where a step computes with it).
    """

    registry: ClassVar[Optional[Registry]] = None
    kind: ClassVar[str] = "transform"

    def _setup(self, steps: Iterable, fs: Optional[float], lead_names: Optional[Sequence[str]],
               random: bool) -> None:
        name = type(self).__name__
        random = check_bool(random, f"{name}: random")
        self.fs = None if fs is None else check_fs(fs, name)
        self.lead_names = None if lead_names is None else \
            check_lead_names(lead_names, f"{name}: lead_names", distinct=False)
        self.random = random
        self.steps = self._container([])
        self._probs: list[float] = []
        for step in steps:
            self.add_(step, check=False)
        self._check()

    # ---- hooks of the front ends ---------------------------------------------------------

    def _container(self, steps: list):
        return list(steps)

    def _is_step(self, step: Any) -> bool:
        return isinstance(step, Step)

    def _permutation(self, n: int, rng: Any) -> list[int]:
        raise NotImplementedError

    def _uniform(self, rng: Any) -> float:
        raise NotImplementedError

    def _run_step(self, step: Any, sig: Any, info: SignalInfo, rng: Any) -> Any:
        return step.run(sig, info, rng)

    def _check_signal(self, sig: Any) -> None:
        pass

    def _check_floating(self, sig: Any, what: str) -> None:
        """TypeError naming `what` unless `sig` has a floating-point dtype."""

    # ---- building ------------------------------------------------------------------------

    @classmethod
    def from_config(cls, config: Union[Sequence, dict], **options):
        """Build from a config (a list of steps; ``{"steps": [...], "fs", "lead_names",
        "random"}`` as :meth:`to_config` writes; or torch_ecg's ``{"random": ...,
        "<step>": {kwargs} | None, ...}``). Keyword `options` (``fs``, ``lead_names``,
        ``random``) override the config's. Unknown steps, arguments or options raise
        ValueError with close matches, before anything is built."""
        parsed, specs = parse_config(config, cls.kind, cls._registry().list())
        for key in options:
            if key not in ("fs", "lead_names", "random"):
                raise ValueError(f"{cls.__name__}.from_config: unknown option {key!r}"
                                 f"{did_you_mean(key, ('fs', 'lead_names', 'random'))}")
        return cls(*specs, **{**parsed, **options})

    def to_config(self) -> dict:
        """``{"fs", "lead_names", "random", "steps"}`` as JSON values: every step's
        arguments in full (defaults included) and its manager-level probability (see
        :meth:`add_`) when below 1, as ``"prob"``, or as ``"manager_prob"`` for a step
        whose own arguments include a ``prob``; ``from_config`` of it gives a pipeline
        with identical outputs."""
        steps = []
        for i, step in enumerate(self.steps):
            if not isinstance(step, Step):
                raise ValueError(f"{type(self).__name__}.to_config: step {i} "
                                 f"({type(step).__name__}) is not a registered fastecg step "
                                 "and cannot be saved")
            entry = {"name": self._registered_name(step), **step.config()}
            if self._probs[i] < 1:
                # "prob" of a step that takes one is its own (torch_ecg's configs).
                entry["manager_prob" if "prob" in entry else "prob"] = self._probs[i]
            steps.append(entry)
        config = {"fs": self.fs, "lead_names": json_value(self.lead_names, "lead_names"),
                  "random": self.random, "steps": steps}
        check_json(config, f"{type(self).__name__}.to_config")
        return config

    def add_(self, step: Any, pos: int = -1, prob: float = 1.0, *, check: bool = True):
        """Insert `step` at `pos` (``-1``: append, as torch_ecg) and return ``self``.

        `step` is a step object, a registry name, or ``{"name": ..., **kwargs}``.
        `prob` is the probability that a call applies the step (one draw per call, for
        the whole batch); a dict may carry it as ``"manager_prob"``, or as ``"prob"``
        unless the step itself takes a ``prob`` argument (augmenters draw per sample),
        which then gets it. A step the pipeline refuses (:class:`ValueError`) leaves it
        as it was.
        """
        what = type(self).__name__
        if isinstance(step, (str, dict)):
            _, (spec,) = parse_config([step], self.kind, self._registry().list())
            factory = self._registry().get(spec["name"])
            given = [spec.pop("manager_prob")] if "manager_prob" in spec else []
            if "prob" in spec and not _accepts(factory, "prob"):
                given.append(spec.pop("prob"))
            if given:
                if prob != 1.0 or len(given) > 1:
                    raise ValueError(f"{what}.add_: prob given twice (argument and config)")
                prob = given[0]
            step = build_step(factory, spec, self.kind)
        if not self._is_step(step):
            raise ValueError(f"{what}.add_: expected a step, a registry name or a config "
                             f"dict, got {type(step).__name__}")
        prob = check_prob(prob, f"{what}.add_")
        if isinstance(pos, bool) or not isinstance(pos, numbers.Integral) or \
                not -1 <= pos <= len(self.steps):
            raise ValueError(f"{what}.add_: pos must be -1 or in [0, {len(self.steps)}], "
                             f"got {pos!r}")
        pos = len(self.steps) if pos == -1 else int(pos)
        self.steps.insert(pos, step)
        self._probs.insert(pos, prob)
        if check:
            try:
                self._check()
            except BaseException:
                # A refused step must not stay behind to break every later call.
                del self.steps[pos]
                del self._probs[pos]
                raise
        return self

    def rearrange(self, new_ordering: Sequence[Union[str, int]]):
        """Reorder the steps and return ``self``: `new_ordering` lists every step once,
        by index or by name (registry name or class name; a name two steps share is
        ambiguous). An order the pipeline refuses leaves it as it was."""
        what = f"{type(self).__name__}.rearrange"
        names = [self._label(i) for i in range(len(self.steps))]
        order = []
        for item in new_ordering:
            if isinstance(item, bool) or not isinstance(item, (numbers.Integral, str)):
                raise ValueError(f"{what}: expected step indices or names, got {item!r}")
            if isinstance(item, numbers.Integral):
                if not 0 <= item < len(self.steps):
                    raise ValueError(f"{what}: no step {item} (the pipeline has "
                                     f"{len(self.steps)})")
                order.append(int(item))
                continue
            hits = [i for i, step in enumerate(self.steps)
                    if item in (names[i], type(step).__name__)]
            if not hits:
                raise ValueError(f"{what}: no step named {item!r}{did_you_mean(item, names)} "
                                 f"(steps: {names})")
            if len(hits) > 1:
                raise ValueError(f"{what}: {item!r} names steps {hits}; use indices")
            order.append(hits[0])
        if sorted(order) != list(range(len(self.steps))):
            raise ValueError(f"{what}: give every step exactly once (steps: {names}), got "
                             f"{list(new_ordering)}")
        old = self.steps, self._probs
        self.steps = self._container([old[0][i] for i in order])
        self._probs = [old[1][i] for i in order]
        try:
            self._check()
        except BaseException:
            self.steps, self._probs = old  # a refused order leaves the pipeline as it was
            raise
        return self

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, index: int):
        return self.steps[index]

    @property
    def probs(self) -> tuple:
        """Each step's probability of being applied at a call."""
        return tuple(self._probs)

    # ---- running -------------------------------------------------------------------------

    def _call(self, sig: Any, fs: Optional[float], lead_names: Optional[Sequence[str]],
              rng: Any):
        """The whole call: describe the input, draw this call's steps, check them all,
        then run them. Returns the output, and the output rate when `fs` was given."""
        info = self._input_info(sig, fs, lead_names)
        order = self._draw(rng)
        infos = self._plan(order, info)
        out = sig
        for i, step_info in zip(order, infos):
            out = self._run_step(self.steps[i], out, step_info, rng)
        return out if fs is None else (out, infos[-1].fs)

    def _input_info(self, sig: Any, fs: Optional[float],
                    lead_names: Optional[Sequence[str]]) -> SignalInfo:
        what = type(self).__name__
        self._check_signal(sig)
        if len(sig.shape) < 1:
            raise ValueError(f"{what}: expected a signal of shape (..., n_samples), got a "
                             "0-d one")
        # Integer samples (WFDB's digital units) may only be moved (cropped, padded,
        # selected): the first step that computes refuses them, whether or not this
        # call draws it, and before any step runs. A step without the attribute (a
        # plain nn.Module) counts as computing.
        for i, step in enumerate(self.steps):
            if getattr(step, "floating", True):
                self._check_floating(sig, f"{what} step {i} ({self._label(i)})")
                break
        fs = self.fs if fs is None else check_fs(fs, what)
        names = self.lead_names if lead_names is None else \
            check_lead_names(lead_names, f"{what}: lead_names", distinct=False)
        n_leads = sig.shape[-2] if len(sig.shape) >= 2 else None
        if names is not None and n_leads is not None and len(names) != n_leads:
            raise ValueError(f"{what}: {len(names)} lead names {list(names)} for a signal "
                             f"with {n_leads} leads (shape {tuple(sig.shape)})")
        return SignalInfo(fs, n_leads, sig.shape[-1], names)

    def _draw(self, rng: Any = None) -> list[int]:
        """This call's steps in order: all of them, shuffled if ``random``, less those
        their probabilities leave out (one draw each, from `rng`)."""
        n = len(self.steps)
        order = self._permutation(n, rng) if self.random else range(n)
        return [i for i in order if self._probs[i] >= 1 or self._uniform(rng) < self._probs[i]]

    def _plan(self, order: Iterable[int], info: SignalInfo) -> list[SignalInfo]:
        """The description of the signal entering each step of `order`, and of the
        output last; every step checks its input here. The error names the step and,
        after a resampling, the rate the signal has there."""
        infos = [info]
        resampled_by = None
        steps = list(self.steps)
        for i in order:
            step = steps[i]
            try:
                new = step.infer(info) if isinstance(step, Step) else info
            except ValueError as err:
                note = ""
                if resampled_by is not None and info.fs is not None:
                    note = f" (the signal is at {info.fs:g} Hz there, after step {resampled_by})"
                raise type(err)(f"{type(self).__name__} step {i} ({self._label(i)}): {err}"
                                f"{note}") from None
            if new.fs != info.fs:
                resampled_by = f"{i} ({self._label(i)})"
            info = new
            infos.append(info)
        return infos

    def _check(self) -> None:
        """Check the whole pipeline with what is known now (fs, lead names); what only
        a call can tell (the signal's length, names given then) is checked per call."""
        names = self.lead_names
        info = SignalInfo(self.fs, None if names is None else len(names), None, names)
        try:
            self._plan(range(len(self.steps)), info)
        except MissingInfo:
            pass

    # ---- names and repr -----------------------------------------------------------------

    @classmethod
    def _registry(cls) -> Registry:
        if cls.registry is None:
            raise TypeError(f"{cls.__name__} has no registry (set the class attribute)")
        return cls.registry

    def _registered_name(self, step: Any) -> str:
        name = _names_by_class(self._registry()).get(type(step))
        if name is None:
            raise ValueError(f"{type(self).__name__}: {type(step).__name__} is not registered "
                             f"in the {self.kind} registry, so it cannot be saved in a config")
        return name

    def _label(self, i: int) -> str:
        step = self.steps[i]
        if self.registry is not None:
            name = _names_by_class(self.registry).get(type(step))
            if name is not None:
                return name
        return type(step).__name__

    def __repr__(self) -> str:
        head = (f"{type(self).__name__}(fs={self.fs!r}, lead_names={self.lead_names!r}, "
                f"random={self.random}")
        if not len(self.steps):
            return head + ")"
        lines = [head + ","]
        for i, step in enumerate(self.steps):
            prob = f"  [prob={self._probs[i]:g}]" if self._probs[i] < 1 else ""
            lines.append(f"  ({i}) {self._label(i)}: {step!r}{prob}".replace("\n", "\n  "))
        return "\n".join(lines) + "\n)"


def _names_by_class(registry: Registry) -> dict:
    # Built per call: registries are small, and a later registration must be seen.
    return {registry.get(name): name for name in reversed(registry.list())}


def changed_arguments(step: Step) -> str:
    """``"a=1, b='x'"``: the step's arguments that differ from their defaults (and those
    without one), for reprs."""
    params = inspect.signature(type(step)).parameters
    return ", ".join(f"{k}={v!r}" for k, v in step.config().items()
                     if k not in params or params[k].default is inspect.Parameter.empty
                     or json_value(params[k].default, k) != v)
