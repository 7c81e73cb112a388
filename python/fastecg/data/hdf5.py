"""``HDF5Dataset``: records stored as one array in an HDF5 file (CODE-15% style), read
with h5py."""

from __future__ import annotations

import math
import os
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .._spec import check_lead_names
from .datasets import (_by_position, _pandas, _str_column, check_rate_and_length,
                       class_columns, digest, file_stamps, prepare_signal, record_index)

__all__ = ["HDF5Dataset"]

STANDARD_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


class HDF5Dataset(Dataset):
    """Records of an HDF5 file holding them as one array, such as CODE-15%'s
    ``exams_part*.hdf5`` (``tracings`` of shape (n_records, 4096, 12) at 400 Hz and
    ``exam_id``).

    Parameters
    ----------
    path : str or path
    signals : str
        Name of the array of records.
    ids : str, optional
        Name of the array of record ids (None: the row numbers). CODE-15% ends each
        file with an id of 0 and a blank tracing; rows whose id is the number 0 are left
        out. Stored strings (bytes) are decoded to the records' names.
    fs : float
        Sampling rate of the file's records, Hz (400 for CODE-15%).
    layout : {"samples_leads", "leads_samples"}
        Axis order of each record in the file: CODE-15% stores (n_samples, n_leads).
    lead_names : sequence of str
        Names of the file's leads in order (default the standard 12).
    labels : array_like, optional
        One label per row of the file (before rows are left out), by position (a pandas
        Series' index is not used).
    target_fs, siglen : optional
        Resample to this rate and crop or zero-pad to this length, as
        :class:`~fastecg.data.WFDBDataset` does.
    transforms : PreprocManager, optional
        Run as ``transforms(sig, fs, lead_names)``.
    scale : float
        Multiplies the stored values (to bring them to mV; finite, non-zero).

    Items are ``signal float32 (n_leads, n_samples)`` or ``(signal, label)``. The file
    is opened once per process, on first use (DataLoader workers each open their own).
    """

    def __init__(self, path, signals: str = "tracings", ids: Optional[str] = "exam_id",
                 fs: float = 400.0, layout: str = "samples_leads",
                 lead_names: Sequence[str] = STANDARD_LEADS, labels=None,
                 target_fs: Optional[float] = None, siglen: Optional[int] = None,
                 transforms: Optional[Callable] = None, scale: float = 1.0):
        import h5py  # optional dependency: ImportError names it

        if layout not in ("samples_leads", "leads_samples"):
            raise ValueError(f"HDF5Dataset: layout must be 'samples_leads' or "
                             f"'leads_samples', got {layout!r}")
        if not (math.isfinite(fs) and fs > 0):
            raise ValueError(f"HDF5Dataset: fs must be a positive number, got {fs!r}")
        if not (math.isfinite(scale) and scale != 0):
            raise ValueError(f"HDF5Dataset: scale must be a finite non-zero number, got "
                             f"{scale!r}")
        check_rate_and_length("HDF5Dataset", "target_fs", target_fs, siglen)
        self.path, self.signals_name, self.layout = os.fspath(path), signals, layout
        self.fs = float(fs)
        self.target_fs = None if target_fs is None else float(target_fs)
        self.siglen = None if siglen is None else int(siglen)
        self.lead_names = list(check_lead_names(lead_names, "HDF5Dataset: lead_names"))
        self.transforms, self.scale = transforms, scale
        with h5py.File(self.path, "r") as f:
            for name in (signals, ids):
                if name is not None and name not in f:
                    raise ValueError(f"{self.path}: no dataset {name!r} (has {sorted(f)})")
            shape = f[signals].shape
            row_ids = np.asarray(f[ids]) if ids is not None else np.arange(shape[0])
        if len(shape) != 3:
            raise ValueError(f"{self.path}: {signals!r} has shape {shape}, expected 3 axes")
        if row_ids.shape != shape[:1]:
            raise ValueError(f"{self.path}: {ids!r} has shape {row_ids.shape}, expected one "
                             f"id per record of {signals!r} ({shape[0]})")
        # h5py reads stored strings as bytes: names are their text, not "b'...'"
        names = [r.decode() if isinstance(r, bytes) else str(r) for r in row_ids.tolist()]
        n_leads = shape[2] if layout == "samples_leads" else shape[1]
        if len(self.lead_names) != n_leads:
            raise ValueError(f"HDF5Dataset: {len(self.lead_names)} lead names for "
                             f"{n_leads} leads")
        numeric = ids is not None and row_ids.dtype.kind in "biuf"
        self.rows = np.flatnonzero(row_ids != 0) if numeric else np.arange(shape[0])
        labels = _by_position(labels)
        if labels is not None and len(labels) != shape[0]:
            raise ValueError(f"HDF5Dataset: {len(labels)} labels for {shape[0]} rows")
        self.labels = labels
        n_samples = shape[1] if layout == "samples_leads" else shape[2]
        pd = _pandas()
        self.metadata = pd.DataFrame({
            "record": _str_column([names[r] for r in self.rows]),
            "row": pd.Series(self.rows, dtype="int64"),
            "fs": pd.Series([self.fs] * len(self.rows), dtype="float64"),
            "n_samples": pd.Series([n_samples] * len(self.rows), dtype="int64"),
            "n_leads": pd.Series([n_leads] * len(self.rows), dtype="int64"),
            **class_columns(None if labels is None else [labels[r] for r in self.rows]),
        })
        self._file = None
        self._pid = None

    def __len__(self) -> int:
        return len(self.rows)

    def _array(self):
        if self._file is None or self._pid != os.getpid():
            import h5py

            self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
        return self._file[self.signals_name]

    def read(self, index: int) -> tuple[torch.Tensor, float, list]:
        raw = np.asarray(self._array()[int(self.rows[index])], dtype=np.float32)
        sig = raw.T if self.layout == "samples_leads" else raw
        if self.scale != 1.0:
            sig = sig * np.float32(self.scale)
        out, fs = prepare_signal(torch.from_numpy(np.ascontiguousarray(sig)), self.fs,
                                 self.target_fs, self.siglen)
        return out, fs, list(self.lead_names)

    def target(self, index: int):
        return None if self.labels is None else np.asarray(self.labels[int(self.rows[index])])

    def fingerprint(self) -> str:
        """A digest of what :meth:`read` and :meth:`target` give: the file (path, size,
        modification time), the rows, the options and the labels."""
        return digest(file_stamps([self.path]), self.signals_name, self.rows, self.fs,
                      self.layout, self.lead_names, self.target_fs, self.siglen, self.scale,
                      *([] if self.labels is None else
                        [np.asarray(self.target(i)) for i in range(len(self))]))

    def __getitem__(self, index: int):
        index = record_index(index, len(self))
        sig, fs, names = self.read(index)
        if self.transforms is not None:
            sig, _ = self.transforms(sig, fs, names)
        if self.labels is None:
            return sig
        # (a copy: a label row changed in place must not change the dataset's labels)
        return sig, torch.as_tensor(np.array(self.target(index)))

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"] = state["_pid"] = None  # h5py handles do not pickle
        return state
