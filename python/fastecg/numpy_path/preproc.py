"""``PreprocManager`` on NumPy/SciPy only: the same configs, steps and recipes as
:class:`fastecg.preprocessors.PreprocManager`, for offline data preparation and
deployment without torch, and the reference the torch pipeline is tested against.

Each step calls SciPy the fast way (one call on the whole array along the last axis; the
running median row by row, SciPy's O(log w) 1-D path). Arguments that only choose torch
kernels (``backend``) are accepted and ignored, so a config saved by either path builds
on the other.

>>> pm = PreprocManager.from_recipe("st_mem")
>>> y, fs = pm(np.random.randn(2, 12, 5000), 500)   # y: (2, 12, 2250), fs 250.0
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from .._spec import check_lead_names
from ..registry import Registry
from ..transforms.config import SignalInfo, Step
from ..transforms.designs import (BandPassSpec, BaselineRemoveSpec, CropOrPadSpec, EPS,
                                  LeadSelectSpec, NormalizeSpec, ResampleSpec, SOSFilterSpec,
                                  decimate_sos)
from ..transforms.pipeline import PipelineBase, changed_arguments
from ..transforms.recipes import RECIPES, recipe_config
from .bandpass import bandpass
from .baseline import median_filter1d, remove_baseline
from .normalize import normalize
from ._validate import check_array

__all__ = ["PreprocManager", "NUMPY_PREPROCESSORS", "BandPassStep", "BaselineRemoveStep",
           "NormalizeStep", "MinMaxNormalizeStep", "NaiveNormalizeStep", "ZScoreNormalizeStep",
           "SOSFilterStep", "ResampleStep", "CropOrPadStep", "LeadSelectStep"]

# The NumPy steps under the names of fastecg.registry.PREPROCESSORS (which holds the torch
# modules), so that one config builds either pipeline.
NUMPY_PREPROCESSORS = Registry("preprocessor")


class NumpyStep(Step):
    """Base of the NumPy steps: ``step(sig, fs=None)`` on its own, ``run`` in a
    pipeline. Output dtype equals input dtype (SciPy's float64 results are rounded back),
    so steps that compute take floating-point input only (:attr:`floating`), as the
    torch steps do."""

    def __call__(self, sig: np.ndarray, fs: Optional[float] = None) -> np.ndarray:
        sig = check_array(sig, type(self).__name__, floating=self.floating)
        info = SignalInfo(fs=fs, n_leads=sig.shape[-2] if sig.ndim > 1 else None,
                          n_samples=sig.shape[-1])
        self.infer(info)
        return self.run(sig, info, None)

    def run(self, sig: np.ndarray, info: SignalInfo, rng: Any) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({changed_arguments(self)})"


@NUMPY_PREPROCESSORS.register("bandpass")
class BandPassStep(BandPassSpec, NumpyStep):
    """:func:`fastecg.numpy_path.bandpass` (``sosfiltfilt`` / FIR ``filtfilt``)."""

    def infer(self, info: SignalInfo) -> SignalInfo:
        if self.method == "fft":
            raise ValueError("BandPass: the NumPy path has no 'fft' method (it is a different "
                             "filter from sosfiltfilt near the ends); use method='iir'")
        return super().infer(info)

    def run(self, sig: np.ndarray, info: SignalInfo, rng: Any) -> np.ndarray:
        fs = self.step_fs(info)
        if self.method == "fir":
            return bandpass(sig, fs, self.lowcut, self.highcut, method="fir",
                            numtaps=self.order_at(fs))
        return bandpass(sig, fs, self.lowcut, self.highcut, self.order_at(fs))


@NUMPY_PREPROCESSORS.register("baseline_remove")
class BaselineRemoveStep(BaselineRemoveSpec, NumpyStep):
    """:func:`fastecg.numpy_path.remove_baseline`; one stage (``window2=None``): ``x -
    scipy.ndimage.median_filter(x, w, mode)`` row by row (``mode="constant"`` is
    ``scipy.signal.medfilt``)."""

    def run(self, sig: np.ndarray, info: SignalInfo, rng: Any) -> np.ndarray:
        fs = self.step_fs(info)
        if self.window2 is not None:
            return remove_baseline(sig, fs, self.window1, self.window2, self.method, self.mode)
        (width,) = self.windows(fs)
        rows = sig.reshape(-1, sig.shape[-1]) if sig.size else sig.reshape(0, sig.shape[-1])
        out = np.empty_like(rows)
        for r, row in enumerate(rows):  # the 1-D path: O(log w) per sample
            out[r] = row - median_filter1d(row, width, self.mode)
        return out.reshape(sig.shape)


@NUMPY_PREPROCESSORS.register("normalize")
class NormalizeStep(NormalizeSpec, NumpyStep):
    """:func:`fastecg.numpy_path.normalize`."""

    def run(self, sig: np.ndarray, info: SignalInfo, rng: Any) -> np.ndarray:
        return normalize(sig, self.method, _array(self.mean), _array(self.std),
                         self.per_channel, ddof=self.ddof, eps=self.eps)


def _array(value: Any) -> Any:
    """A number as given; a sequence as an array, one value per lead (1-D) as a column
    ``(n_leads, 1)`` (broadcast over time, as the torch step does)."""
    if not isinstance(value, (list, tuple, np.ndarray)):
        return value
    value = np.asarray(value, dtype=np.float64)
    return value[:, None] if value.ndim == 1 else value


@NUMPY_PREPROCESSORS.register("min_max_normalize")
class MinMaxNormalizeStep(NormalizeStep):
    """Min-max normalisation to [0, 1]."""

    def __init__(self, per_channel: bool = False, backend: str = "auto",
                 inplace: bool = False):
        super().__init__("min-max", per_channel=per_channel, backend=backend,
                         inplace=inplace)


@NUMPY_PREPROCESSORS.register("naive_normalize")
class NaiveNormalizeStep(NormalizeStep):
    """``(sig - mean) / std`` with given values."""

    def __init__(self, mean: Any = 0.0, std: Any = 1.0, per_channel: bool = False,
                 backend: str = "auto", inplace: bool = False):
        super().__init__("naive", mean, std, per_channel, backend, inplace=inplace)


@NUMPY_PREPROCESSORS.register("z_score_normalize")
class ZScoreNormalizeStep(NormalizeStep):
    """z-score normalisation to a given mean and standard deviation."""

    def __init__(self, mean: Any = 0.0, std: Any = 1.0, per_channel: bool = False,
                 backend: str = "auto", ddof: int = 1, eps: float = EPS,
                 inplace: bool = False):
        super().__init__("z-score", mean, std, per_channel, backend, ddof, eps, inplace)


@NUMPY_PREPROCESSORS.register("sos_filter")
class SOSFilterStep(SOSFilterSpec, NumpyStep):
    """``scipy.signal.sosfiltfilt`` (or ``sosfilt``) with the step's design."""

    def run(self, sig: np.ndarray, info: SignalInfo, rng: Any) -> np.ndarray:
        from scipy import signal

        sos = np.asarray(self.sos_at(None if self.design == "sos" else self.step_fs(info)))
        if self.zero_phase:
            out = signal.sosfiltfilt(sos, sig, axis=-1, padtype=self.padtype, padlen=self.padlen)
        else:
            out = signal.sosfilt(sos, sig, axis=-1)
        return out.astype(sig.dtype, copy=False)


@NUMPY_PREPROCESSORS.register("resample")
class ResampleStep(ResampleSpec, NumpyStep):
    """``scipy.signal.resample_poly`` / ``resample``, fairseq-signals' ``interp1d``
    grid, or ``decimate``'s filter (float64 coefficients; SciPy's ``decimate`` rounds
    them to a float32 input's dtype) followed by every q-th sample."""

    def run(self, sig: np.ndarray, info: SignalInfo, rng: Any) -> np.ndarray:
        from scipy import signal

        plan = self.plan(info)
        n = sig.shape[-1]
        if plan.n_out == n and plan.up == plan.down:
            return sig
        if self.method == "poly":
            out = signal.resample_poly(sig, plan.up, plan.down, axis=-1, window=self.window)
        elif self.method == "fft":
            out = signal.resample(sig, plan.n_out, axis=-1)
        elif self.method == "linear":
            from scipy.interpolate import interp1d

            if n == 1 or plan.n_out == 1:  # the first sample (interpolate, aligned corners)
                out = np.repeat(sig[..., :1], plan.n_out, axis=-1)
            else:
                grid = np.linspace(0, plan.n_out - 1, n)
                out = interp1d(grid, sig, kind="linear", axis=-1)(np.arange(plan.n_out))
        else:
            out = signal.sosfiltfilt(np.asarray(decimate_sos(plan.down)), sig,
                                     axis=-1)[..., ::plan.down]
        return np.ascontiguousarray(out, dtype=sig.dtype)


@NUMPY_PREPROCESSORS.register("crop_or_pad")
class CropOrPadStep(CropOrPadSpec, NumpyStep):
    """Slicing and ``np.pad`` (``"constant"`` or ``"edge"``); random offsets per record
    from the call's ``numpy.random.Generator``."""

    def run(self, sig: np.ndarray, info: SignalInfo, rng: Any) -> np.ndarray:
        length = self.infer(info).n_samples
        n = sig.shape[-1]
        if n == length:
            return sig
        if self.mode != "random":
            offset = self.offsets(n, length)
            if n > length:
                return sig[..., offset:offset + length].copy()
            mode = "constant" if self.pad == "zero" else "edge"
            return np.pad(sig, [(0, 0)] * (sig.ndim - 1) + [(offset, length - n - offset)],
                          mode=mode)
        rng = np.random.default_rng() if rng is None else rng
        records = sig.shape[:-2] if sig.ndim > 1 else ()
        shift = rng.integers(abs(n - length) + 1, size=records)
        shift = shift[..., None, None] if sig.ndim > 1 else shift
        pos = np.arange(length) + shift if n > length else np.arange(length) - shift
        out = np.take_along_axis(sig, np.broadcast_to(np.clip(pos, 0, n - 1),
                                                      sig.shape[:-1] + (length,)), -1)
        if n < length and self.pad == "zero":
            out[np.broadcast_to((pos < 0) | (pos >= n), out.shape)] = 0
        return out


@NUMPY_PREPROCESSORS.register("lead_select")
class LeadSelectStep(LeadSelectSpec, NumpyStep):
    """``np.take`` along the lead axis."""

    def __call__(self, sig: np.ndarray, lead_names: Optional[Sequence[str]] = None) -> np.ndarray:
        sig = np.asarray(sig)
        info = SignalInfo(n_leads=sig.shape[-2] if sig.ndim > 1 else None,
                          lead_names=None if lead_names is None else
                          check_lead_names(lead_names, "LeadSelect: lead_names", distinct=False))
        self.infer(info)
        return self.run(sig, info, None)

    def run(self, sig: np.ndarray, info: SignalInfo, rng: Any) -> np.ndarray:
        index = self.indices(self.available(info))
        if sig.ndim < 2:
            raise ValueError(f"LeadSelect: expected (..., n_leads, n_samples), got shape "
                             f"{sig.shape}")
        if index == list(range(sig.shape[-2])):
            return sig
        return np.take(sig, index, axis=-2)


class PreprocManager(PipelineBase):
    """The NumPy twin of :class:`fastecg.preprocessors.PreprocManager`: same
    arguments, configs, recipes and checks (see
    :class:`fastecg.transforms.TransformManager`); steps are the NumPy ones of
    :data:`NUMPY_PREPROCESSORS`; the random source is a ``numpy.random.Generator``
    (``rng=``). ``pm(sig)`` -> array with `fs` given at construction, ``pm(sig, fs)``
    -> ``(array, fs_out)``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastecg.numpy_path import PreprocManager
    >>> pm = PreprocManager.from_recipe("st_mem")
    >>> y, fs = pm(np.random.default_rng(0).standard_normal((2, 12, 5000)), 500)
    >>> y.shape, fs
    ((2, 12, 2250), 250.0)
    >>> PreprocManager({"name": "bandpass", "lowcut": 0.5, "highcut": 45.0},
    ...                fs=500.0)(np.zeros((12, 1000))).shape
    (12, 1000)
    """

    registry = NUMPY_PREPROCESSORS
    kind = "preprocessor"

    def __init__(self, *steps: Any, fs: Optional[float] = None,
                 lead_names: Optional[Sequence[str]] = None, random: bool = False):
        self._setup(steps, fs, lead_names, random)

    def __call__(self, sig: np.ndarray, fs: Optional[float] = None,
                 lead_names: Optional[Sequence[str]] = None, *,
                 rng: Optional[np.random.Generator] = None):
        return self._call(np.asarray(sig), fs, lead_names, rng)

    @classmethod
    def from_recipe(cls, name: str, fs: Optional[float] = None,
                    lead_names: Optional[Sequence[str]] = None) -> "PreprocManager":
        """A published model's preprocessing; see
        :meth:`fastecg.preprocessors.PreprocManager.from_recipe`."""
        return cls.from_config(recipe_config(name, lead_names), fs=fs)

    @staticmethod
    def recipes() -> list[str]:
        return sorted(RECIPES)

    def _is_step(self, step: Any) -> bool:
        return isinstance(step, NumpyStep)

    def _permutation(self, n: int, rng: Any) -> list[int]:
        return list(_rng(rng).permutation(n))

    def _uniform(self, rng: Any) -> float:
        return float(_rng(rng).random())

    def _check_signal(self, sig: Any) -> None:
        # The dtype is _check_floating's: steps that only move samples take any.
        check_array(sig, type(self).__name__, min_dim=0, floating=False)

    def _check_floating(self, sig: Any, what: str) -> None:
        check_array(sig, what)


def _rng(rng: Optional[np.random.Generator]) -> np.random.Generator:
    return np.random.default_rng() if rng is None else rng
