"""``torch.utils.data.Dataset`` classes: WFDB folders, in-memory arrays, the labelled
synthetic ECG, and record/patient-level splits.

Every dataset has ``metadata``, a pandas DataFrame with one row per usable record, built
in one go from columns (pandas >= 3: strings in the Arrow-backed ``str`` dtype,
list-valued columns ``dtype=object``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import operator
import os
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from .._spec import check_lead_names
from ..transforms.designs import CropOrPadSpec
from . import wfdb as _wfdb
from .labels import LabelMap, parse_dx
from .synthetic import SYNTHETIC_CLASSES, synthetic_record

__all__ = ["WFDBDataset", "ArrayDataset", "SyntheticECGDataset", "split", "prepare_signal",
           "collate_with_meta"]

_NAN_MODES = ("skip", "interpolate", "zero")


def record_index(index: Any, n: int) -> int:
    """`index` as a record number in [0, n): an integer, a NumPy integer or a 0-d integer
    tensor (a ``Subset`` over ``torch.randperm(n)`` passes those), negative from the end.

    Raises
    ------
    TypeError
        For anything that is not an integer.
    IndexError
        Out of range.
    """
    try:
        i = operator.index(index)
    except TypeError:
        raise TypeError(f"a record index must be an integer, got {index!r}") from None
    if not -n <= i < n:
        raise IndexError(f"index {i} out of range for {n} records")
    return i % n


def _pandas():
    try:
        import pandas as pd
    except ImportError as err:
        raise ImportError("dataset metadata needs pandas >= 3: pip install 'fastecg[data]'") \
            from err
    return pd


def _object_column(values: Sequence) -> Any:
    """A column of lists: ``dtype=object`` built at once (pandas would otherwise try to
    make a 2-D array or an Arrow list type of equal-length lists)."""
    pd = _pandas()
    column = np.empty(len(values), dtype=object)
    column[:] = [list(v) for v in values]
    return pd.Series(column, dtype=object)


def _str_column(values: Sequence) -> Any:
    return _pandas().Series(list(values), dtype="str")


def _by_position(labels: Any) -> Any:
    """`labels` indexed by position, as the records are: a pandas Series or DataFrame as
    its values (indexing one by an integer would look its index labels up)."""
    return labels.to_numpy() if hasattr(labels, "iloc") else labels


def class_columns(labels: Any) -> dict:
    """Metadata columns that tell :func:`split` the records' classes: ``label`` (int64)
    for one integer class per record, ``labels`` (lists of the set classes) for multi-hot
    rows; none for other labels (regression targets, strings)."""
    if labels is None:
        return {}
    try:
        arr = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    except ValueError:  # ragged
        return {}
    if arr.dtype.kind not in "biuf" or arr.size == 0 or not np.isfinite(arr).all():
        return {}
    if arr.ndim == 1 and (arr == np.round(arr)).all():
        return {"label": _pandas().Series(arr.astype(np.int64), dtype="int64")}
    if arr.ndim == 2 and np.isin(arr, (0, 1)).all():
        return {"labels": _object_column([np.flatnonzero(row).tolist() for row in arr])}
    return {}


def check_time_transforms(transforms: Any, owner: str, what: str) -> None:
    """Per-sample targets follow the signal by time from its first sample; a
    ``crop_or_pad`` step that moves the start (mode ``center`` or ``random``) in
    `transforms` would leave them misplaced: ValueError."""
    for step in getattr(transforms, "steps", None) or ():
        if isinstance(step, CropOrPadSpec) and step.mode != "left":
            raise ValueError(
                f"{owner}: {what} cannot follow a crop_or_pad step with mode "
                f"{step.mode!r} in transforms (it moves the signal's start); use mode "
                "'left' (or the dataset's siglen=, where it has one), or crop after loading")


def follow_time(labels: np.ndarray, fs_in: float, n_out: int, fs_out: float) -> np.ndarray:
    """Per-sample `labels` ``(..., n_in)`` at `fs_in` taken to `n_out` samples at `fs_out`
    from the same start: each output sample gets the label of the nearest earlier input
    sample, 0 past the input's end."""
    n_in = labels.shape[-1]
    src = np.floor(np.arange(n_out) * fs_in / fs_out).astype(np.int64)
    inside = src < n_in
    out = np.zeros(labels.shape[:-1] + (n_out,), dtype=labels.dtype)
    out[..., inside] = labels[..., src[inside]]
    return out


def collate_with_meta(batch: Sequence[tuple]) -> tuple:
    """``collate_fn`` for items that end with a metadata dict (``return_meta=True``):
    the rest collated as ``DataLoader``'s default does, the dicts kept as a list (their
    values, such as lists of codes of different lengths, do not stack).

    Examples
    --------
    >>> import torch
    >>> from fastecg.data.datasets import collate_with_meta
    >>> sig, label, meta = collate_with_meta([(torch.zeros(2, 5), 0, {"dx": ["a"]}),
    ...                                       (torch.ones(2, 5), 1, {"dx": ["b", "c"]})])
    >>> sig.shape, label, meta
    (torch.Size([2, 2, 5]), tensor([0, 1]), [{'dx': ['a']}, {'dx': ['b', 'c']}])
    """
    from torch.utils.data import default_collate

    if not batch:
        raise ValueError("collate_with_meta: empty batch")
    rest = default_collate([tuple(item[:-1]) for item in batch])
    return (*rest, [item[-1] for item in batch])


def metadata_row(metadata, index: int) -> dict:
    """Row `index` of the DataFrame `metadata` as a dict of the caller's own values: list
    (or other mutable) cells are copies, so that changing an item's metadata in place
    leaves the dataset's as it was."""
    return copy.deepcopy(metadata.iloc[index].to_dict())


def check_rate_and_length(owner: str, fs_name: str, fs: Optional[float],
                          siglen: Optional[int]) -> None:
    """ValueError unless the output rate `fs` (argument `fs_name`) and `siglen` of
    :func:`prepare_signal` are None or a positive number and a positive integer (a
    negative `siglen` would slice off the record's end)."""
    if fs is not None and not (isinstance(fs, (int, float, np.integer, np.floating))
                               and math.isfinite(fs) and fs > 0):
        raise ValueError(f"{owner}: {fs_name} must be a positive number, got {fs!r}")
    if siglen is not None and not (isinstance(siglen, (int, float, np.integer, np.floating))
                                   and int(siglen) == siglen and siglen >= 1):
        raise ValueError(f"{owner}: siglen must be a positive integer, got {siglen!r}")


def prepare_signal(sig: torch.Tensor, fs: float, target_fs: Optional[float],
                   siglen: Optional[int]) -> tuple[torch.Tensor, float]:
    """Resample `sig` ``(n_leads, n_samples)`` to `target_fs` (polyphase, as
    ``scipy.signal.resample_poly``) and crop (the first `siglen` samples) or zero-pad
    (at the end) to `siglen`. Returns the signal and its rate.

    Examples
    --------
    >>> import torch
    >>> from fastecg.data.datasets import prepare_signal
    >>> sig, fs = prepare_signal(torch.zeros(12, 5000), 500.0, 250.0, 2000)
    >>> sig.shape, fs
    (torch.Size([12, 2000]), 250.0)
    """
    if target_fs is not None and float(target_fs) != float(fs):
        from ..ops import resample

        sig = resample(sig, fs_in=float(fs), fs_out=float(target_fs))
        fs = float(target_fs)
    if siglen is not None:
        n = sig.shape[-1]
        if n >= siglen:
            sig = sig[..., :siglen]
        else:
            sig = torch.nn.functional.pad(sig, (0, siglen - n))
    return sig.contiguous(), fs


def digest(*parts: Any) -> str:
    """sha256 of `parts` (arrays and tensors by dtype, shape and bytes; anything else by
    its JSON): the fingerprints datasets give :func:`~fastecg.data.write_store`."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            part = part.detach().cpu().numpy()
        if isinstance(part, np.ndarray):
            part = np.ascontiguousarray(part)
            h.update(f"{part.dtype.str}{part.shape}".encode())
            h.update(part.tobytes() if part.dtype != object else
                     json.dumps(part.tolist(), default=str).encode())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


def file_stamps(paths: Sequence[str]) -> list:
    """``[path, size, modification time]`` of each file (None for one that is missing):
    what tells a changed source file without reading it."""
    out = []
    for path in paths:
        try:
            st = os.stat(path)
            out.append([path, st.st_size, st.st_mtime_ns])
        except OSError:
            out.append([path, None, None])
    return out


def _fix_nan(sig: np.ndarray, mode: str) -> np.ndarray:
    bad = np.isnan(sig)
    if not bad.any():
        return sig
    sig = sig.copy()
    if mode == "zero":
        sig[bad] = 0.0
        return sig
    grid = np.arange(sig.shape[-1])
    for lead in range(sig.shape[0]):
        ok = ~bad[lead]
        sig[lead] = np.interp(grid, grid[ok], sig[lead, ok]) if ok.any() else 0.0
    return sig


def _common_reasons(skipped: list, most: int = 3) -> str:
    """The most frequent reasons among `skipped` ((path, reason) pairs), each with its
    count and one record: one broken file among records skipped for a misspelt lead
    must not be the only reason named."""
    by_reason: dict[str, list[str]] = {}
    for path, reason in skipped:
        by_reason.setdefault(reason, []).append(path)
    ranked = sorted(by_reason.items(), key=lambda kv: -len(kv[1]))
    parts = [f"{len(ps)} x {reason} (e.g. {ps[0]})" for reason, ps in ranked[:most]]
    if len(ranked) > most:
        parts.append(f"{sum(len(ps) for _, ps in ranked[most:])} more for other reasons")
    return "; ".join(parts)


class WFDBDataset(Dataset):
    """Records of a folder tree of WFDB records (``.hea`` + ``.mat``/``.dat``), read with
    the ``wfdb`` package.

    Parameters
    ----------
    root : str or path
        Folder searched recursively for ``*.hea``; or a list of record paths.
    fs : float, optional
        Resample every record to this rate (``fastecg.ops.resample``); None keeps each
        record's own.
    leads : sequence of str, optional
        Lead names to return, in this order (each once); records without one of them are
        skipped (ValueError when that leaves none: a misspelt lead name).
    siglen : int, optional
        Crop (first samples) or zero-pad (at the end) to this many samples, after
        resampling.
    transforms : PreprocManager, optional
        Run on each signal, called as ``transforms(sig, fs, lead_names)``.
        ``rhythms`` masks follow its output rate; with them, a ``crop_or_pad`` step
        must keep the signal's start (mode ``"left"``).
    label_map : LabelMap, dict or str, optional
        Diagnosis codes (the header's ``Dx``) -> classes; default CinC 2021 with the
        equivalent classes merged (:meth:`LabelMap.cinc`).
    return_meta : bool, optional
        Items are ``(signal, label, meta)`` with the record's metadata row as a dict
        (batch them with ``DataLoader(..., collate_fn=collate_with_meta)``).
    nan : {"skip", "interpolate", "zero"}, optional
        Records with missing samples: skipped (their samples are read once when the
        dataset is built, to find them), or repaired when read.
    rhythms : sequence of str, optional
        With records annotated by rhythm (``.atr`` aux notes such as ``"(AFIB"``), items
        carry per-sample masks ``(len(rhythms), n_samples)`` float32 in place of the
        label, aligned with the signal by time (each sample takes the annotation of
        the nearest earlier sample of the record); records without annotations give
        zero masks.

    Attributes
    ----------
    metadata : pandas.DataFrame
        One row per usable record: ``record``, ``path``, ``fs``, ``n_samples``,
        ``n_leads``, ``lead_names`` (lists), ``age`` (float, NaN unknown), ``sex``,
        ``patient_id`` (missing where the source has none), ``dx_codes`` (lists of str),
        ``labels`` (lists of class indices), ``ann_symbols`` (lists of str).
        ``fs``, ``n_samples``, ``n_leads`` and ``lead_names`` are the record's own, as
        its header gives them; items follow `fs`, `siglen` and `leads`.
    skipped : list of (str, str)
        ``(record path, reason)`` of each record left out.

    Items are ``(signal, label)``: signal float32 ``(n_leads, n_samples)``, label a
    float32 multi-hot vector of ``label_map.num_classes``.

    Examples
    --------
    >>> from fastecg.data import WFDBDataset, bundled_records
    >>> ds = WFDBDataset(bundled_records(), fs=250.0, leads=["I", "II"])
    >>> sig, label = ds[0]
    >>> len(ds), sig.shape, sig.dtype, label.shape
    (4, torch.Size([2, 2500]), torch.float32, torch.Size([26]))
    >>> ds.metadata["record"].tolist()
    ['E07506', 'E07509', 'E07517', 'HR06002']
    """

    def __init__(self, root, fs: Optional[float] = None, leads: Optional[Sequence[str]] = None,
                 siglen: Optional[int] = None, transforms: Optional[Callable] = None,
                 label_map: Union[LabelMap, dict, str, None] = None, return_meta: bool = False,
                 nan: str = "skip", rhythms: Optional[Sequence[str]] = None):
        if nan not in _NAN_MODES:
            raise ValueError(f"WFDBDataset: nan must be one of {_NAN_MODES}, got {nan!r}")
        check_rate_and_length("WFDBDataset", "fs", fs, siglen)
        if leads is not None:
            leads = check_lead_names(leads, "WFDBDataset: leads")
        if rhythms is not None:
            check_time_transforms(transforms, "WFDBDataset", "rhythm masks")
        self.fs = None if fs is None else float(fs)
        self.leads = None if leads is None else list(leads)
        self.siglen = None if siglen is None else int(siglen)
        self.transforms = transforms
        self.label_map = LabelMap.from_any(label_map)
        self.return_meta = return_meta
        self.nan = nan
        self.rhythms = None if rhythms is None else tuple(rhythms)
        self.source = str(root) if not isinstance(root, (list, tuple)) else None
        if self.source is not None and not os.path.isdir(self.source):
            raise FileNotFoundError(f"WFDBDataset: {self.source!r} is not a folder (give a "
                                    "folder of records, or a list of record paths)")
        paths = (_wfdb.find_records(root) if not isinstance(root, (list, tuple))
                 else [str(p) for p in root])
        self.skipped: list[tuple[str, str]] = []
        self.headers = [h for h in (self._usable(p) for p in paths) if h is not None]
        if paths and not self.headers:  # (a wrong lead name, rate or folder: say so now)
            raise ValueError(f"WFDBDataset: all {len(paths)} records were skipped: "
                             f"{_common_reasons(self.skipped)}")
        self.metadata = self._build_metadata()

    def _usable(self, path: str) -> Optional[dict]:
        try:
            header = _wfdb.read_header(path)
        except (OSError, ValueError) as err:
            self.skipped.append((path, str(err)))
            return None
        reason = _wfdb.check_record(header, self.leads)
        if reason is None and self.nan == "skip":
            try:
                sig = _wfdb.read_signal(header, self.leads)
                if np.isnan(sig).any():
                    reason = f"{int(np.isnan(sig).sum())} missing (NaN) samples"
            except (OSError, ValueError) as err:
                reason = str(err)
        if reason is not None:
            self.skipped.append((path, reason))
            return None
        return header

    def _build_metadata(self):
        pd = _pandas()
        h = self.headers
        dx = [parse_dx(x.get("Dx")) for x in h]
        ages = [_number(x.get("Age")) for x in h]
        symbols = [_wfdb.annotation_symbols(x["path"]) for x in h]
        patient = [x.get("Patient") or x.get("patient_id") or x.get("Patient ID") for x in h]
        return pd.DataFrame({
            "record": _str_column([x["record"] for x in h]),
            "path": _str_column([x["path"] for x in h]),
            "fs": pd.Series([x["fs"] for x in h], dtype="float64"),
            "n_samples": pd.Series([x["n_samples"] for x in h], dtype="int64"),
            "n_leads": pd.Series([len(x["lead_names"]) for x in h], dtype="int64"),
            "lead_names": _object_column([x["lead_names"] for x in h]),
            "age": pd.Series(ages, dtype="float64"),
            "sex": _str_column([x.get("Sex") or None for x in h]),
            "patient_id": _str_column(patient),
            "dx_codes": _object_column(dx),
            "labels": _object_column([self.label_map.indices(codes) for codes in dx]),
            "ann_symbols": _object_column(symbols),
        })

    def __len__(self) -> int:
        return len(self.headers)

    def read(self, index: int) -> tuple[torch.Tensor, float, list[str]]:
        """Record `index` after lead selection, resampling and cropping, before
        `transforms`: ``(signal, fs, lead_names)``."""
        header = self.headers[index]
        sig = _wfdb.read_signal(header, self.leads)
        if self.nan != "skip":
            sig = _fix_nan(sig, self.nan)
        out, fs = prepare_signal(torch.from_numpy(sig), header["fs"], self.fs, self.siglen)
        return out, fs, list(self.leads or header["lead_names"])

    def __getitem__(self, index: int):
        index = record_index(index, len(self))
        sig, fs, names = self.read(index)
        if self.transforms is not None:
            sig, fs = self.transforms(sig, fs, names)
        if self.rhythms is not None:
            target = torch.from_numpy(self._rhythm_target(index, sig.shape[-1], fs))
        else:
            target = torch.from_numpy(self.target(index))
        if self.return_meta:
            return sig, target, metadata_row(self.metadata, index)
        return sig, target

    def target(self, index: int) -> np.ndarray:
        """The multi-hot label of record `index` (float32, ``label_map.num_classes``)."""
        return self.label_map.multi_hot(self.metadata["dx_codes"].iat[index])

    def fingerprint(self) -> str:
        """A digest of what :meth:`read` and :meth:`target` give: every record's files
        (path, size, modification time), the options and the label map."""
        files = []
        for h in self.headers:
            folder = os.path.dirname(h["path"])
            names = dict.fromkeys([os.path.basename(h["path"]) + ".hea", *h["files"]])
            files += [os.path.join(folder, name) for name in names]
        return digest(file_stamps(files), self.fs, self.leads, self.siglen, self.nan,
                      self.label_map.mapping, self.label_map.class_names)

    def _rhythm_target(self, index: int, n_out: int, fs_out: float) -> np.ndarray:
        """The rhythm masks of record `index` on the item's grid: `n_out` samples at
        `fs_out` (the rate after resampling and `transforms`) from the record's start."""
        header = self.headers[index]
        mask = _wfdb.rhythm_mask(header["path"], header["n_samples"], self.rhythms)
        if mask is None:
            return np.zeros((len(self.rhythms), n_out), dtype=np.float32)
        return follow_time(mask.astype(np.float32), header["fs"], n_out, fs_out)


def patient_key(value: Any) -> Optional[str]:
    """A patient id as a string to compare by value (``7``, ``np.int64(7)`` and
    ``tensor(7)`` are one patient), or None where it is missing (None, NaN, pandas' NA,
    "")."""
    if isinstance(value, torch.Tensor):
        value = value.item()
    if value is None or (isinstance(value, str) and not value):
        return None
    missing = _pandas().isna(value)
    if isinstance(missing, (bool, np.bool_)) and missing:
        return None
    return str(value)


def _number(text: Any) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return float("nan")
    return value if math.isfinite(value) else float("nan")


class ArrayDataset(Dataset):
    """A dataset over in-memory signals.

    Parameters
    ----------
    signals : array or Tensor ``(n_records, n_leads, n_samples)``, or a list of
        ``(n_leads, n_i)`` arrays (records of different lengths)
    labels : array, Tensor, sequence or pandas Series/DataFrame, optional
        One label per record (any shape), by position (a Series' index is not used);
        items are ``(signal, label)`` with it, or the signal alone without. Integer
        classes or multi-hot rows also go to ``metadata`` (``label`` / ``labels``), so
        that :func:`split` stratifies by them.
    fs : float
        Sampling rate in Hz (kept in ``metadata`` and given to `transforms`).
    lead_names : sequence of str, optional
        The records' leads in order, distinct, one per lead of every record.
    transforms : PreprocManager, optional
        Run on each signal as ``transforms(sig, fs, lead_names)``.

    The records keep the memory of `signals` where they can (no copy of a float32
    array); items are copies, so that changing one in place changes neither the dataset
    nor `signals` and `labels`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastecg.data import ArrayDataset
    >>> ds = ArrayDataset(np.zeros((3, 12, 100), np.float32), labels=[0, 1, 0], fs=100.0)
    >>> sig, label = ds[1]
    >>> len(ds), sig.shape, label
    (3, torch.Size([12, 100]), tensor(1))
    """

    def __init__(self, signals, labels=None, fs: float = 500.0,
                 lead_names: Optional[Sequence[str]] = None,
                 transforms: Optional[Callable] = None):
        if isinstance(signals, (np.ndarray, torch.Tensor)):
            if signals.ndim != 3:
                raise ValueError(f"ArrayDataset: signals must be (n_records, n_leads, "
                                 f"n_samples), got shape {tuple(signals.shape)}")
            records = list(signals)
        else:
            records = list(signals)
        self.signals = [torch.as_tensor(np.asarray(s) if not isinstance(s, torch.Tensor) else s,
                                        dtype=torch.float32) for s in records]
        if any(s.ndim != 2 for s in self.signals):
            raise ValueError("ArrayDataset: every record must be (n_leads, n_samples)")
        labels = _by_position(labels)
        if labels is not None and len(labels) != len(self.signals):
            raise ValueError(f"ArrayDataset: {len(labels)} labels for {len(self.signals)} "
                             "records")
        if not (math.isfinite(fs) and fs > 0):
            raise ValueError(f"ArrayDataset: fs must be a positive number, got {fs!r}")
        self.labels = labels
        self.fs = float(fs)
        self.lead_names = None if lead_names is None else \
            list(check_lead_names(lead_names, "ArrayDataset: lead_names"))
        if self.lead_names is not None:
            counts = sorted({s.shape[0] for s in self.signals})
            if counts and counts != [len(self.lead_names)]:
                raise ValueError(f"ArrayDataset: {len(self.lead_names)} lead names "
                                 f"{self.lead_names} for records of {counts} leads")
        self.transforms = transforms
        pd = _pandas()
        self.metadata = pd.DataFrame({
            "record": _str_column([str(i) for i in range(len(self.signals))]),
            "fs": pd.Series([self.fs] * len(self.signals), dtype="float64"),
            "n_samples": pd.Series([s.shape[-1] for s in self.signals], dtype="int64"),
            "n_leads": pd.Series([s.shape[0] for s in self.signals], dtype="int64"),
            **class_columns(labels),
        })

    def __len__(self) -> int:
        return len(self.signals)

    def read(self, index: int) -> tuple[torch.Tensor, float, Optional[list[str]]]:
        return self.signals[index], self.fs, self.lead_names

    def target(self, index: int):
        return None if self.labels is None else np.asarray(self.labels[index])

    def fingerprint(self) -> str:
        """A digest of the records' samples, the labels, the rate and the lead names."""
        labels = None if self.labels is None else [np.asarray(self.target(i))
                                                   for i in range(len(self))]
        return digest(*self.signals, *(labels or [None]), self.fs, self.lead_names)

    def __getitem__(self, index: int):
        index = record_index(index, len(self))
        # Items are copies: the stored records (views of the caller's array) must not
        # change when a consumer, or a transform, writes into an item in place; a
        # DataLoader's persistent workers would otherwise serve the changed record in
        # later epochs, and num_workers=0 would differ from forked workers.
        sig = self.signals[index].clone()
        if self.transforms is not None:
            sig, _ = self.transforms(sig, self.fs, self.lead_names)
        if self.labels is None:
            return sig
        label = self.labels[index]
        return sig, (label.clone() if isinstance(label, torch.Tensor)
                     else torch.as_tensor(np.array(label)))


class SyntheticECGDataset(Dataset):
    """Labelled synthetic 12-lead ECG (:func:`fastecg.data.synthetic.synthetic_record`).

    Items are ``(signal float32 (n_leads, n_samples), label int64)``, or with
    ``return_waves=True`` ``(signal, label, waves int64 (n_samples,))`` (0 none, 1 P,
    2 QRS, 3 T; on the signal's grid after `transforms`, whose ``crop_or_pad`` must
    then keep the start). Item `i` depends on ``(seed, i)`` only. ``metadata`` has ``record``,
    ``patient_id`` (str), ``label`` and ``class_name``; ``records_per_patient``
    consecutive records share a patient and a class.

    Examples
    --------
    >>> from fastecg.data import SyntheticECGDataset
    >>> ds = SyntheticECGDataset(4, seconds=2.0)
    >>> sig, label = ds[3]
    >>> sig.shape, sig.dtype, int(label)
    (torch.Size([12, 1000]), torch.float32, 1)
    >>> ds.metadata["class_name"].tolist()        # two records per patient, one class each
    ['NSR', 'NSR', 'SB', 'SB']
    """

    def __init__(self, n: int, fs: float = 500.0, seconds: float = 10.0,
                 classes: Sequence[str] = SYNTHETIC_CLASSES, seed: int = 0,
                 records_per_patient: int = 2, n_leads: int = 12,
                 transforms: Optional[Callable] = None, return_waves: bool = False):
        if n < 0:
            raise ValueError(f"SyntheticECGDataset: n must be >= 0, got {n}")
        self.n, self.fs, self.seconds = int(n), float(fs), float(seconds)
        self.classes, self.seed = tuple(classes), int(seed)
        self.records_per_patient, self.n_leads = int(records_per_patient), int(n_leads)
        self.transforms, self.return_waves = transforms, return_waves
        if return_waves:
            check_time_transforms(transforms, "SyntheticECGDataset", "waves")
        synthetic_record(0, fs=fs, seconds=min(seconds, 1.0), classes=self.classes,
                         records_per_patient=self.records_per_patient, n_leads=n_leads,
                         noise=False)  # checks the arguments now, not at the first item
        pd = _pandas()
        patients = [i // self.records_per_patient for i in range(self.n)]
        labels = [p % len(self.classes) for p in patients]
        self.metadata = pd.DataFrame({
            "record": _str_column([f"synthetic_{i:06d}" for i in range(self.n)]),
            "patient_id": _str_column([f"patient_{p:06d}" for p in patients]),
            "label": pd.Series(labels, dtype="int64"),
            "class_name": _str_column([self.classes[k] for k in labels]),
            "fs": pd.Series([self.fs] * self.n, dtype="float64"),
            "n_samples": pd.Series([int(round(self.fs * self.seconds))] * self.n,
                                   dtype="int64"),
        })

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return self.n

    def record(self, index: int) -> dict:
        index = record_index(index, self.n)
        return synthetic_record(index, fs=self.fs, seconds=self.seconds, classes=self.classes,
                                seed=self.seed, records_per_patient=self.records_per_patient,
                                n_leads=self.n_leads)

    def read(self, index: int) -> tuple[torch.Tensor, float, None]:
        return torch.from_numpy(self.record(index)["signal"]), self.fs, None

    def target(self, index: int) -> np.ndarray:
        return np.asarray(self.metadata["label"].iat[index], dtype=np.int64)

    def fingerprint(self) -> str:
        """A digest of the parameters, which determine every record."""
        return digest(type(self).__name__, self.n, self.fs, self.seconds, self.classes,
                      self.seed, self.records_per_patient, self.n_leads)

    def __getitem__(self, index: int):
        rec = self.record(index)
        sig, fs = torch.from_numpy(rec["signal"]), self.fs
        if self.transforms is not None:
            sig, fs = self.transforms(sig, self.fs)
        label = torch.tensor(rec["label"], dtype=torch.int64)
        if self.return_waves:
            waves = follow_time(rec["waves"].astype(np.int64), self.fs, sig.shape[-1], fs)
            return sig, label, torch.from_numpy(waves)
        return sig, label


def split(dataset, by: str = "record", stratify: bool = True,
          fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> list[Subset]:
    """Reproducible train/validation/test subsets.

    Parameters
    ----------
    dataset : a dataset with ``metadata`` (rows in item order)
    by : {"record", "patient"}
        Unit kept whole: with ``"patient"`` all records of a patient (``patient_id``, any
        value; a record without one, None, NaN or "", is its own patient) fall in one
        subset.
    stratify : bool
        Allocate the units of each class separately: a subset gets the floor or the
        ceiling of its share of each class (so a class reaches every subset whose share
        of it is a unit or more), and the totals stay within about one unit of their
        shares (class: ``label``, or the first of ``labels``; -1 for none). A dataset
        whose metadata has neither column is split unstratified.
    fractions : sequence of float
        Positive, summing to 1; one subset each.
    seed : int

    Returns
    -------
    list of torch.utils.data.Subset

    Examples
    --------
    >>> from fastecg.data import SyntheticECGDataset, split
    >>> train, test = split(SyntheticECGDataset(20, seconds=1.0), by="patient",
    ...                     fractions=(0.5, 0.5))
    >>> len(train), len(test)
    (10, 10)
    """
    if by not in ("record", "patient"):
        raise ValueError(f"split: by must be 'record' or 'patient', got {by!r}")
    fractions = [float(f) for f in fractions]
    if not fractions or any(not f > 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split: fractions must be positive and sum to 1, got {fractions}")
    meta = dataset.metadata
    n = len(meta)
    records = (meta["record"].astype(str).tolist() if "record" in meta
               else [str(i) for i in range(n)])
    if by == "patient" and "patient_id" in meta:
        ids = meta["patient_id"].tolist()
        keys = [patient_key(p) for p in ids]
        # (a record without a patient is a unit of its own, even where two records
        # share a name: the position tells them apart)
        units = [f"r:{r}:{i}" if k is None else f"p:{k}" for i, (k, r) in
                 enumerate(zip(keys, records))]
    else:
        units = [f"r:{r}:{i}" for i, r in enumerate(records)]
    if "label" in meta:
        classes = meta["label"].astype("int64").tolist()
    elif "labels" in meta:
        classes = [int(v[0]) if len(v) else -1 for v in meta["labels"]]
    else:
        classes = [-1] * n
    members: dict[str, list[int]] = {}
    unit_class: dict[str, int] = {}
    for i, unit in enumerate(units):
        members.setdefault(unit, []).append(i)
        unit_class.setdefault(unit, classes[i])
    strata: dict[int, list[str]] = {}
    for unit in sorted(members):
        strata.setdefault(unit_class[unit] if stratify else 0, []).append(unit)
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in fractions]
    share = np.asarray(fractions)
    counts = np.zeros(len(fractions))
    # Each subset takes the whole part of its share of a class (floor(share * n)), and
    # the class's remaining units go one each to the subsets with a fractional part left,
    # the largest fractional part plus the subset's deficit of the total first: the
    # counts of a class are the floor or the ceiling of its shares, and the totals stay
    # within about a unit of theirs (a class's own deficits alone sent every class of
    # one or two units to the largest subset: 100 such classes split 100/0/0).
    for key in sorted(strata):
        group = [strata[key][j] for j in rng.permutation(len(strata[key]))]
        ideal = share * len(group)
        take = np.floor(ideal + 1e-9)
        counts += take
        frac = np.where(ideal - take > 1e-9, ideal - take, -np.inf)
        for _ in range(len(group) - int(take.sum())):
            overall = share * (counts.sum() + 1) - counts
            part = int(np.argmax(frac + overall))
            frac[part] = -np.inf
            take[part] += 1
            counts[part] += 1
        for part, (a, b) in enumerate(zip(np.cumsum(take) - take, np.cumsum(take))):
            for unit in group[int(a):int(b)]:
                parts[part].extend(members[unit])
    return [Subset(dataset, sorted(p)) for p in parts]
