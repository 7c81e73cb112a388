"""``PreprocManager``: torch_ecg's preprocessing pipeline on fastecg's kernels, with the
published models' recipes."""

from __future__ import annotations

from typing import Optional, Sequence

from ..registry import PREPROCESSORS
from ..transforms.manager import TransformManager
from ..transforms.recipes import RECIPES, recipe_config

__all__ = ["PreprocManager"]


class PreprocManager(TransformManager):
    """Ordered preprocessing steps from :data:`fastecg.registry.PREPROCESSORS`
    (``bandpass``, ``sos_filter``, ``baseline_remove``, ``normalize`` and its variants,
    ``resample``, ``crop_or_pad``, ``lead_select``); see
    :class:`fastecg.transforms.TransformManager` for building, calling and configs.

    Examples
    --------
    >>> import torch
    >>> from fastecg.preprocessors import PreprocManager
    >>> pm = PreprocManager.from_config({"bandpass": {"lowcut": 0.5, "highcut": 45.0},
    ...                                  "normalize": {"method": "z-score"}}, fs=500)
    >>> pm(torch.randn(2, 12, 5000)).shape                  # fs fixed: tensor out
    torch.Size([2, 12, 5000])
    >>> pm = PreprocManager.from_recipe("st_mem")
    >>> y, fs = pm(torch.randn(2, 12, 5000), 500)           # fs given: (tensor, fs) out
    >>> y.shape, fs
    (torch.Size([2, 12, 2250]), 250.0)
    """

    registry = PREPROCESSORS
    kind = "preprocessor"

    @property
    def preprocessors(self):
        """The steps (an ``nn.ModuleList``), under torch_ecg's name."""
        return self.steps

    @property
    def empty(self) -> bool:
        """No steps (torch_ecg's ``empty``)."""
        return len(self.steps) == 0

    @classmethod
    def from_recipe(cls, name: str, fs: Optional[float] = None,
                    lead_names: Optional[Sequence[str]] = None) -> "PreprocManager":
        """The preprocessing of a published model (:data:`fastecg.transforms.recipes.RECIPES`;
        each recipe's docstring cites its source). Recipes take the 12 leads in the
        standard order (I, II, III, aVR, aVL, aVF, V1-V6); given `lead_names`, the
        pipeline starts by selecting and ordering them. Unknown names raise ValueError
        with close matches."""
        return cls.from_config(recipe_config(name, lead_names), fs=fs)

    @staticmethod
    def recipes() -> list[str]:
        """Names of the recipes."""
        return sorted(RECIPES)
