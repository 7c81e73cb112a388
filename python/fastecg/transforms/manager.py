"""``TransformManager``: the one base of every fastecg pipeline on tensors
(preprocessing, augmentation), and ``Transform``, the base of its steps."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ..ops._validate import check_signal
from .config import SignalInfo, Step
from .pipeline import PipelineBase, changed_arguments

__all__ = ["Transform", "TransformManager"]


class Transform(nn.Module, Step):
    """Base of the torch pipeline steps: an ``nn.Module`` whose arguments round-trip
    through ``config()`` and that checks the description of its input in ``infer()``.

    ``forward(sig)`` (``forward(sig, fs)`` for a step that uses the rate) is the module
    on its own; :meth:`run` is how a pipeline calls it, with the description of the
    signal it carries and the call's random source.

    Examples
    --------
    A step of one's own, alone and in a pipeline:

    >>> import torch
    >>> from fastecg.preprocessors import PreprocManager
    >>> from fastecg.transforms import Transform
    >>> class Invert(Transform):
    ...     def forward(self, sig):
    ...         return -sig
    >>> Invert()(torch.ones(1, 3))
    tensor([[-1., -1., -1.]])
    >>> PreprocManager(Invert(), "normalize")(torch.arange(6.0).view(1, 6))
    tensor([[ 1.3363,  0.8018,  0.2673, -0.2673, -0.8018, -1.3363]])
    """

    #: Whether :meth:`run` draws from its `generator` (a random crop): an
    #: AugmenterManager then seeds one per batch from its keys, and others get None.
    draws = False

    def __init__(self):
        nn.Module.__init__(self)

    def run(self, sig: Tensor, info: SignalInfo, generator: Any = None) -> Tensor:
        """The step inside a pipeline; `info` describes `sig` and has passed
        :meth:`infer`. Default: ``forward(sig)``."""
        return self(sig)

    def write_back(self, sig: Tensor, out: Tensor) -> Tensor:
        """``forward``'s result: `out`, or with torch_ecg's ``inplace=True`` (a step
        alone, called as a module) `out` written into `sig`. A pipeline's :meth:`run`
        never calls it: the caller's tensor is never written to."""
        return sig.copy_(out) if getattr(self, "inplace", False) else out

    def extra_repr(self) -> str:
        return changed_arguments(self)


class TransformManager(PipelineBase, nn.Module):
    """An ordered pipeline of registered steps on ``(..., n_leads, n_samples)`` tensors.

    Parameters
    ----------
    *steps : nn.Module, str or dict
        Steps in order: modules, or registry names / ``{"name": ..., **kwargs}`` dicts
        built through :attr:`registry` (a dict's ``"prob"`` is the step's probability,
        or the step's own ``prob`` argument where it takes one, and ``"manager_prob"``
        the pipeline's probability of a step beside it; see :meth:`add_`).
    fs : float, optional
        Sampling rate of the input in Hz. Steps that need it take it from here (or from
        the call), so it is written once; a resampling step changes it for the steps
        after it.
    lead_names : sequence of str, optional
        The input's leads in order (for steps that select or mix leads by name).
    random : bool, optional
        Apply the steps in a random order at each call.

    Calling
    -------
    ``out = pm(sig)`` with `fs` given at construction (or not needed), or
    ``out, fs_out = pm(sig, fs)`` (torch_ecg's call: the rate may change); optionally
    ``lead_names=...`` and ``generator=`` (a ``torch.Generator`` for the random order,
    the per-step draws and random steps). Every step is checked against the signal's
    rate, length and leads before the first one runs, so a bad pipeline fails before
    any work. Integer samples (WFDB's digital units) are taken exactly when every step
    only moves samples (cropping, padding, lead selection: a step's ``floating`` is
    False); otherwise the first step that computes is named in a TypeError before any
    step runs. The caller's tensor is never written to; a step that changes nothing
    (resampling to the rate the signal already has) passes its input through, so the
    output may be the input itself. Each step allocates its own output and the manager
    nothing more: the input of a step is released as soon as the next one has run. A
    plain ``nn.Module`` step (not a :class:`Transform`) is called as ``step(sig)`` and
    taken to keep the rate, length and leads.

    Config
    ------
    :meth:`to_config` returns ``{"fs", "lead_names", "random", "steps": [{"name", ...},
    ...]}`` (JSON values, every argument of every step, defaults included);
    :meth:`from_config` accepts that, a list of steps, or torch_ecg's
    ``{"random": ..., "<step name>": {kwargs} | None, ...}``;
    ``from_config(m.to_config())`` builds a pipeline with identical outputs.

    Subclasses
    ----------
    Set :attr:`registry` (where step names are looked up) and :attr:`kind` (for
    messages). ``forward`` is the preprocessing call; a subclass with another call
    (augmentation passes labels and masks) overrides it and reuses the parts:
    :meth:`_draw` (this call's order and the steps their probabilities keep),
    :meth:`_plan` (check and describe the signal step by step) and :meth:`_run_step`.
    The random source (`generator`) goes to every step's ``run`` untouched, so a
    subclass may hand steps something other than a ``torch.Generator`` (keys derived
    from seed, epoch and sample index) by overriding :meth:`_permutation` and
    :meth:`_uniform`, the manager's own draws, to take it.

    Examples
    --------
    With :class:`fastecg.preprocessors.PreprocManager`, the preprocessing subclass:

    >>> import torch
    >>> from fastecg.preprocessors import PreprocManager
    >>> pm = PreprocManager({"name": "bandpass", "lowcut": 0.5, "highcut": 45.0}, "normalize",
    ...                     fs=500.0)
    >>> x = torch.randn(2, 12, 1000)
    >>> pm(x).shape                                     # fs given at construction
    torch.Size([2, 12, 1000])
    >>> y, fs = pm(x, 500.0)                            # torch_ecg's call: (signal, fs)
    >>> config = pm.to_config()
    >>> config["fs"], [step["name"] for step in config["steps"]]
    (500.0, ['bandpass', 'normalize'])
    >>> torch.equal(PreprocManager.from_config(config)(x), pm(x))   # exact round trip
    True
    """

    def __init__(self, *steps: Union[nn.Module, str, dict], fs: Optional[float] = None,
                 lead_names: Optional[Sequence[str]] = None, random: bool = False):
        nn.Module.__init__(self)
        self._setup(steps, fs, lead_names, random)

    def forward(self, sig: Tensor, fs: Optional[float] = None,
                lead_names: Optional[Sequence[str]] = None, *, generator: Any = None):
        """``pm(sig)`` -> Tensor, or ``pm(sig, fs)`` -> ``(Tensor, fs_out)``."""
        return self._call(sig, fs, lead_names, generator)

    def _container(self, steps: list) -> nn.ModuleList:
        return nn.ModuleList(steps)

    def _is_step(self, step: Any) -> bool:
        return isinstance(step, nn.Module)

    def _permutation(self, n: int, generator: Any) -> list[int]:
        return torch.randperm(n, generator=generator).tolist()

    def _uniform(self, generator: Any) -> float:
        return torch.rand((), generator=generator).item()

    def _run_step(self, step: nn.Module, sig: Tensor, info: SignalInfo,
                  generator: Any) -> Tensor:
        if isinstance(step, Transform):
            return step.run(sig, info, generator)
        return step(sig)

    def _check_signal(self, sig: Any) -> None:
        if not isinstance(sig, Tensor):
            raise TypeError(f"{type(self).__name__}: expected a torch.Tensor of shape (..., "
                            f"n_leads, n_samples), got {type(sig).__name__}")

    def _check_floating(self, sig: Tensor, what: str) -> None:
        check_signal(sig, what, min_samples=0)  # (the length is each step's to check)
