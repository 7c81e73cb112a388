"""Crop-or-pad and lead-selection steps."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from .._spec import check_lead_names
from ..ops._cache import tensor_cache
from ..registry import PREPROCESSORS
from ..transforms.config import SignalInfo
from ..transforms.designs import CropOrPadSpec, LeadSelectSpec
from ..transforms.manager import Transform


@PREPROCESSORS.register("crop_or_pad")
class CropOrPad(CropOrPadSpec, Transform):
    """Crop or pad ``(..., n_leads, n_samples)`` to a fixed length along time.

    Parameters are those of :class:`fastecg.transforms.designs.CropOrPadSpec`:
    ``CropOrPad(length=None, duration_s=None, mode="center", pad="zero", fs=None)``.
    ``mode="random"`` draws one offset per record (from the pipeline's generator,
    torch's global one without it); the other modes are fixed. A signal of the right
    length passes through; any other result is a new tensor (never a view of the input).

    In a dataset's transforms the global generator is the DataLoader worker's, seeded per
    worker and epoch, so the windows change with ``num_workers`` and from run to run. For
    windows keyed by (seed, epoch, record index) only, crop with
    ``ECGStore(random_crop=True)`` or with the ``random_crop`` augmenter in an
    :class:`~fastecg.augmenters.AugmenterManager` given the sample indices.

    Examples
    --------
    >>> import torch
    >>> from fastecg.preprocessors import CropOrPad
    >>> CropOrPad(length=2500)(torch.randn(2, 12, 5000)).shape        # centre crop
    torch.Size([2, 12, 2500])
    >>> CropOrPad(length=6000)(torch.randn(2, 12, 5000)).shape        # zero padding
    torch.Size([2, 12, 6000])
    >>> CropOrPad(duration_s=4.0, fs=500.0)(torch.randn(1, 12, 5000)).shape
    torch.Size([1, 12, 2000])
    """

    @property
    def draws(self) -> bool:
        return self.mode == "random"

    def forward(self, sig: Tensor, fs: Optional[float] = None,
                generator: Optional[torch.Generator] = None) -> Tensor:
        if sig.dim() < 1:  # (any dtype: cropping and padding only move samples)
            raise ValueError("CropOrPad: expected a tensor of shape (..., n_samples), got a "
                             "0-d tensor")
        info = SignalInfo(fs=fs, n_leads=sig.shape[-2] if sig.dim() > 1 else None,
                          n_samples=sig.shape[-1])
        return self.run(sig, info, generator)

    def run(self, sig: Tensor, info: SignalInfo, generator: Any = None) -> Tensor:
        length = self.infer(info).n_samples
        n = sig.shape[-1]
        if n == length:
            return sig
        if self.mode != "random":
            offset = self.offsets(n, length)
            if n > length:
                return sig[..., offset:offset + length].contiguous()
            mode = "constant" if self.pad == "zero" else "replicate"
            rows = sig.reshape(-1, 1, n)  # the layout replicate padding takes
            out = torch.nn.functional.pad(rows, (offset, length - n - offset), mode=mode)
            return out.view(*sig.shape[:-1], length)
        # One offset per record, the same for all its leads: a gather.
        records = sig.shape[:-2] if sig.dim() > 1 else ()
        shift = torch.randint(abs(n - length) + 1, records, generator=generator).to(sig.device)
        if sig.dim() > 1:
            shift = shift[..., None, None]
        steps = torch.arange(length, device=sig.device)
        pos = steps + shift if n > length else steps - shift  # input sample of each output
        out = sig.gather(-1, pos.clamp(0, n - 1).expand(*sig.shape[:-1], length))
        if n < length and self.pad == "zero":
            out.masked_fill_((pos < 0) | (pos >= n), 0)
        return out


@PREPROCESSORS.register("lead_select")
class LeadSelect(LeadSelectSpec, Transform):
    """Keep the named leads of ``(..., n_leads, n_samples)``, in the given order.

    Parameters are those of :class:`fastecg.transforms.designs.LeadSelectSpec`:
    ``LeadSelect(leads, input_leads=None)``; without `input_leads` the record's lead
    names come from the pipeline (``lead_names=``). Selecting every lead in its own
    order passes the input through.

    Examples
    --------
    >>> import torch
    >>> from fastecg.preprocessors import LeadSelect
    >>> from fastecg.transforms.recipes import STANDARD_LEADS
    >>> x = torch.arange(12.0).view(12, 1).expand(12, 3)     # lead k holds the value k
    >>> LeadSelect(["V1", "II"], input_leads=STANDARD_LEADS)(x)
    tensor([[6., 6., 6.],
            [1., 1., 1.]])
    """

    def forward(self, sig: Tensor, lead_names: Optional[Sequence[str]] = None) -> Tensor:
        info = SignalInfo(n_leads=sig.shape[-2] if sig.dim() > 1 else None,
                          lead_names=None if lead_names is None else
                          check_lead_names(lead_names, "LeadSelect: lead_names", distinct=False))
        self.infer(info)
        return self.run(sig, info)

    def run(self, sig: Tensor, info: SignalInfo, generator: Any = None) -> Tensor:
        index = self.indices(self.available(info))
        if sig.dim() < 2:
            raise ValueError(f"LeadSelect: expected (..., n_leads, n_samples), got shape "
                             f"{tuple(sig.shape)}")
        if index == list(range(sig.shape[-2])):
            return sig
        return sig.index_select(-2, _index_tensor(tuple(index), str(sig.device)))


@tensor_cache(maxsize=64)
def _index_tensor(index: tuple, device: str) -> Tensor:
    return torch.tensor(index, dtype=torch.int64, device=device)
