"""Tensor helpers shared across layers, so that none imports another's for them: the
ops and the Triton kernels (which import nothing from ``fastecg.ops``) take SciPy's edge
extension and the median's gather of selected samples; the augmenters' loader and the
Trainer take the move of a batch to a device and the epoch given to a dataset."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._spec import PadType

__all__ = ["PADTYPES", "extend_rows", "gather_selected", "set_dataset_epoch", "to_device"]

# SciPy's filtfilt padtypes by name (None: no extension), as the kernels number them.
PADTYPES = {None: PadType.NONE, "odd": PadType.ODD, "even": PadType.EVEN,
            "constant": PadType.CONSTANT}


def extend_rows(rows: Tensor, padlen: int, padtype: int) -> Tensor:
    """Rows (n_rows, n) extended by `padlen` samples a side as SciPy's filtfilt does
    (`padtype`: a PADTYPES code), in the rows' dtype."""
    if padlen == 0:
        return rows
    left, right = rows[:, 1:padlen + 1].flip(-1), rows[:, -padlen - 1:-1].flip(-1)
    first, last = rows[:, :1], rows[:, -1:]
    if padtype == PADTYPES["odd"]:
        left, right = 2 * first - left, 2 * last - right
    elif padtype == PADTYPES["constant"]:
        left, right = first.expand_as(left), last.expand_as(right)
    return torch.cat([left, rows, right], dim=-1)


def gather_selected(rows: Tensor, index: Tensor, cval: float, subtract: bool,
                    need_index: bool) -> tuple[Tensor, Tensor]:
    """Kernel outputs from the selected row indices (-1: cval): ``(out, index)`` with
    ``out = rows[index]`` (or ``rows - rows[index]``), the index empty unless kept."""
    med = torch.where(index >= 0, rows.gather(-1, index.clamp(min=0)),
                      torch.tensor(cval, dtype=rows.dtype, device=rows.device))
    out = rows - med if subtract else med
    return out, (index if need_index else index.new_empty(0))


def to_device(item: Any, device: torch.device, non_blocking: bool) -> Any:
    """`item` with its tensors on `device`, nested in lists, tuples (named ones too) and
    dicts as a DataLoader collates them; anything else is returned as it is."""
    if isinstance(item, Tensor):
        return item.to(device, non_blocking=non_blocking)
    if isinstance(item, (list, tuple)):
        moved = [to_device(v, device, non_blocking) for v in item]
        # a namedtuple takes its fields as arguments, not one iterable
        return type(item)(*moved) if hasattr(item, "_fields") else type(item)(moved)
    if isinstance(item, dict):
        return {k: to_device(v, device, non_blocking) for k, v in item.items()}
    return item


def set_dataset_epoch(dataset: Any, epoch: int) -> None:
    """``set_epoch(epoch)`` of `dataset`, or of the datasets a wrapper holds, as
    ``.dataset`` (``torch.utils.data.Subset``, :class:`~fastecg.augmenters.IndexedDataset`)
    or as ``.datasets`` (``torch.utils.data.ConcatDataset``), at any depth, where they
    have it: an ``ECGStore`` with ``random_crop=True`` draws its windows by it."""
    if dataset is None:
        return
    if callable(getattr(dataset, "set_epoch", None)):
        dataset.set_epoch(epoch)
        return
    inner = getattr(dataset, "dataset", None)
    parts = getattr(dataset, "datasets", None)
    for part in ([inner] if inner is not None else []) + \
            (list(parts) if isinstance(parts, (list, tuple)) else []):
        set_dataset_epoch(part, epoch)
