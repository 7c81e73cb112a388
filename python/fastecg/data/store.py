"""``ECGStore``: preprocessed records in one memory-mapped file, for fast training.

A store is a folder::

    signals.bin          every record's samples, C order (n_leads, n_samples), one after
                         another, float32 or float16 (store.json says which)
    index.npy            int64 (n_records, 3): element offset, n_leads, n_samples
    targets.npy          the records' labels, one row each (when the source has them)
    metadata.parquet     the source's metadata, one row per record, in store order
    preprocessing.json   the PreprocManager config that produced the signals
    store.json           format, dtype, output rate and leads, counts; written last

Fixed-length and variable-length (Holter) records share the layout: the index gives each
record's place, so reading one is a slice of the memory map, O(1), no file opened per
item. Every file is written under a temporary name and renamed when complete, so a killed
run leaves no half-written file, and ``store.json`` appearing marks a complete store.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["ECGStore", "write_store", "STORE_FORMAT"]

STORE_FORMAT = 1
_DTYPES = {"float32": np.float32, "float16": np.float16}
_FILES = ("signals.bin", "index.npy", "targets.npy", "metadata.parquet",
          "preprocessing.json", "store.json")
_TMP = ".tmp"


class ECGStore(Dataset):
    """A store written by :func:`write_store` (``fastecg preprocess``), as a Dataset.

    Parameters
    ----------
    root : str or path
        The store's folder.
    crop : int, optional
        Return windows of this many samples: random ones with ``random_crop=True``
        (SSL on long records), else the first. Records shorter than `crop` are
        zero-padded at the end.
    random_crop : bool, optional
        Window start drawn from ``(seed, epoch, index)`` (see :meth:`set_epoch`), so a
        sample's window does not depend on workers or ranks.
    seed : int, optional
    return_meta : bool, optional
        Items end with the record's metadata row as a dict.

    Items are ``(signal float32 (n_leads, n_samples), target)`` when the store has
    targets, else the signal alone. Works with ``DistributedSampler`` (any sampler over
    ``range(len(store))``) and DataLoader workers: the memory map is opened in each
    process on first use.
    """

    def __init__(self, root, crop: Optional[int] = None, random_crop: bool = False,
                 seed: int = 0, return_meta: bool = False):
        self.root = os.fspath(root)
        info_path = os.path.join(self.root, "store.json")
        if not os.path.isfile(info_path):
            raise FileNotFoundError(f"{self.root} is not a complete ECG store (no store.json)")
        with open(info_path, encoding="utf-8") as f:
            self.info = json.load(f)
        if self.info.get("format") != STORE_FORMAT:
            raise ValueError(f"{self.root}: store format {self.info.get('format')}, this "
                             f"fastecg reads {STORE_FORMAT}")
        with open(os.path.join(self.root, "preprocessing.json"), encoding="utf-8") as f:
            self.preprocessing = json.load(f)
        self.index = np.load(os.path.join(self.root, "index.npy"))
        targets = os.path.join(self.root, "targets.npy")
        self.targets = np.load(targets, mmap_mode="r") if os.path.isfile(targets) else None
        if crop is not None and (int(crop) != crop or crop < 1):
            raise ValueError(f"ECGStore: crop must be a positive integer, got {crop!r}")
        self.crop, self.random_crop, self.seed = crop, random_crop, int(seed)
        self.return_meta = return_meta
        self.epoch = 0
        self._signals: Optional[np.memmap] = None
        self._pid: Optional[int] = None
        self._metadata = None

    @property
    def fs(self) -> Optional[float]:
        return self.info["fs"]

    @property
    def lead_names(self) -> Optional[list]:
        return self.info["lead_names"]

    @property
    def metadata(self):
        """The source's metadata (pandas DataFrame), one row per record in store order."""
        if self._metadata is None:
            import pandas as pd

            meta = pd.read_parquet(os.path.join(self.root, "metadata.parquet"))
            # Parquet gives list columns back as arrays; lists again, as the source had.
            for name in meta.columns:
                if meta[name].dtype == object and any(isinstance(v, np.ndarray)
                                                      for v in meta[name]):
                    column = np.empty(len(meta), dtype=object)
                    column[:] = [v.tolist() if isinstance(v, np.ndarray) else v
                                 for v in meta[name]]
                    meta[name] = pd.Series(column, index=meta.index, dtype=object)
            self._metadata = meta
        return self._metadata

    def set_epoch(self, epoch: int) -> None:
        """Draw new random windows (as ``DistributedSampler.set_epoch``)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.index)

    def signals(self) -> np.memmap:
        """The memory map of all samples (opened once per process)."""
        if self._signals is None or self._pid != os.getpid():
            path = os.path.join(self.root, "signals.bin")
            dtype = _DTYPES[self.info["dtype"]]
            if os.path.getsize(path) == 0:  # np.memmap refuses an empty file
                self._signals = np.zeros(0, dtype=dtype)
            else:
                self._signals = np.memmap(path, dtype=dtype, mode="r")
            self._pid = os.getpid()
        return self._signals

    def record(self, index: int) -> np.ndarray:
        """Record `index` as a read-only view of the memory map, its stored dtype."""
        offset, n_leads, n_samples = (int(v) for v in self.index[index])
        return self.signals()[offset:offset + n_leads * n_samples].reshape(n_leads, n_samples)

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} records")
        index %= len(self)
        sig = self.record(index)
        if self.crop is not None:
            sig = self._window(sig, index)
        # One copy, into float32: the map is read-only and may be float16.
        out = torch.from_numpy(np.array(sig, dtype=np.float32))
        items: list[Any] = [out]
        if self.targets is not None:
            items.append(torch.from_numpy(np.array(self.targets[index])))
        if self.return_meta:
            items.append(self.metadata.iloc[index].to_dict())
        return items[0] if len(items) == 1 else tuple(items)

    def _window(self, sig: np.ndarray, index: int) -> np.ndarray:
        n = sig.shape[-1]
        if n < self.crop:
            return np.pad(sig, ((0, 0), (0, self.crop - n)))
        start = 0
        if self.random_crop and n > self.crop:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            start = int(rng.integers(0, n - self.crop + 1))
        return sig[:, start:start + self.crop]

    def __getstate__(self):
        # Workers reopen the map themselves rather than pickling it.
        state = dict(self.__dict__)
        state["_signals"] = None
        state["_pid"] = None
        return state


class _RawItems(Dataset):
    """A source dataset's records before its transforms, for DataLoader workers:
    ``(index, signal, fs, lead_names, target or None)``."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        sig, fs, names = self.dataset.read(index)
        target = getattr(self.dataset, "target", None)
        return index, sig, fs, names, None if target is None else target(index)


def _first(batch):
    return batch


def _settings(dataset, pipeline, dtype: str) -> dict:
    return {"source": getattr(dataset, "source", None),
            "n_source_records": len(dataset), "fs": getattr(dataset, "fs", None),
            "leads": getattr(dataset, "leads", None), "siglen": getattr(dataset, "siglen", None),
            "pipeline": None if pipeline is None else pipeline.to_config(),
            "dtype": dtype}


def write_store(dataset, root, pipeline: Optional[Callable] = None, *, batch_size: int = 32,
                workers: int = 0, dtype: str = "float32", device: str = "cpu",
                overwrite: bool = False, progress: bool = True) -> dict:
    """Run `pipeline` over every record of `dataset` and write the store at `root`.

    Parameters
    ----------
    dataset : WFDBDataset, ArrayDataset or SyntheticECGDataset
        Anything with ``read(i) -> (signal (n_leads, n), fs, lead_names)``, ``__len__``
        and ``metadata``; its own `transforms` are not used. ``target(i)``, when
        present, gives the label stored with each record.
    root : str or path
        The store's folder (created).
    pipeline : PreprocManager, optional
        Run on batches of records of equal shape and rate as
        ``pipeline(batch, fs, lead_names) -> (out, fs_out)``; None stores the records
        as read.
    batch_size, workers : int
        Records per pipeline call; DataLoader worker processes that read the records.
    dtype : {"float32", "float16"}
    device : str
        Where the pipeline runs.
    overwrite : bool
        Rewrite a complete store; without it a complete store written with the same
        settings is left as it is (the run is resumed as done).
    progress : bool
        Show a tqdm bar (records/s).

    Returns
    -------
    dict
        ``written``, ``skipped`` (list of (record, reason)), ``seconds``, ``resumed``
        (True when a complete store was found and kept).
    """
    if dtype not in _DTYPES:
        raise ValueError(f"write_store: dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    root = os.fspath(root)
    start = time.perf_counter()
    settings = _settings(dataset, pipeline, dtype)
    info_path = os.path.join(root, "store.json")
    if os.path.isfile(info_path) and not overwrite:
        with open(info_path, encoding="utf-8") as f:
            if json.load(f).get("settings") == settings:
                return {"written": 0, "skipped": list(getattr(dataset, "skipped", [])),
                        "seconds": time.perf_counter() - start, "resumed": True}
    os.makedirs(root, exist_ok=True)
    _remove_leftovers(root)
    if os.path.isfile(info_path):
        os.remove(info_path)  # the store is incomplete from here until the rename below
    # The pipeline is not moved with .to(device): its steps keep no tensors and design
    # their filters on the input's device.

    index: list[tuple[int, int, int]] = []
    targets: list[np.ndarray] = []
    out_fs: set = set()
    out_leads: Optional[list] = None
    offset = 0
    bar = _progress(len(dataset), progress)
    loader = DataLoader(_RawItems(dataset), batch_size=None, num_workers=workers,
                        collate_fn=_first)
    signals_tmp = os.path.join(root, "signals.bin" + _TMP)
    with open(signals_tmp, "wb") as f:
        pending: list = []

        def flush():
            nonlocal offset, out_leads
            if not pending:
                return
            batch = torch.stack([item[1] for item in pending]).to(device)
            fs, names = pending[0][2], pending[0][3]
            if pipeline is None:
                out, fs_out = batch, fs
            else:
                out, fs_out = pipeline(batch, fs, names)
            arr = out.detach().cpu().numpy().astype(_DTYPES[dtype], copy=False)
            for k, item in enumerate(pending):
                rec = np.ascontiguousarray(arr[k])
                f.write(rec.tobytes())
                index.append((offset, rec.shape[0], rec.shape[1]))
                offset += rec.size
                if item[4] is not None:
                    targets.append(np.asarray(item[4]))
            out_fs.add(float(fs_out))
            out_leads = _out_leads(pipeline, names)
            bar.update(len(pending))
            pending.clear()

        for item in loader:
            key = (tuple(item[1].shape), item[2], tuple(item[3] or ()))
            if pending and ((tuple(pending[0][1].shape), pending[0][2],
                             tuple(pending[0][3] or ())) != key or len(pending) >= batch_size):
                flush()
            pending.append(item)
        flush()
    bar.close()

    _save_npy(root, "index.npy", np.asarray(index, dtype=np.int64).reshape(-1, 3))
    if targets and len(targets) == len(index):
        _save_npy(root, "targets.npy", np.stack(targets))
    elif os.path.isfile(os.path.join(root, "targets.npy")):
        os.remove(os.path.join(root, "targets.npy"))  # an overwritten store's
    metadata = dataset.metadata.reset_index(drop=True)
    _atomic(root, "metadata.parquet", lambda path: metadata.to_parquet(path, index=False))
    config = None if pipeline is None else pipeline.to_config()
    _write_json(root, "preprocessing.json", config)
    info = {"format": STORE_FORMAT, "dtype": dtype, "n_records": len(index),
            "fs": out_fs.pop() if len(out_fs) == 1 else None,
            "lead_names": out_leads, "settings": settings}
    os.replace(signals_tmp, os.path.join(root, "signals.bin"))
    _write_json(root, "store.json", info)
    return {"written": len(index), "skipped": list(getattr(dataset, "skipped", [])),
            "seconds": time.perf_counter() - start, "resumed": False}


def _out_leads(pipeline, names) -> Optional[list]:
    """Lead names after the pipeline: those a lead-selection step keeps, else the input's."""
    leads = list(names) if names else None
    for step in getattr(pipeline, "steps", []) or []:
        config = step.config() if hasattr(step, "config") else {}
        if "leads" in config and config["leads"] is not None:
            leads = [str(x) for x in config["leads"]]
    return leads


def _progress(total: int, enabled: bool):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: no bar then
        enabled = False
    if not enabled:
        class _Quiet:
            def update(self, n): pass
            def close(self): pass
        return _Quiet()
    return tqdm(total=total, unit="rec", desc="preprocess", smoothing=0.1)


def _atomic(root: str, name: str, write: Callable[[str], None]) -> None:
    tmp = os.path.join(root, name + _TMP)
    write(tmp)
    os.replace(tmp, os.path.join(root, name))


def _save_npy(root: str, name: str, arr: np.ndarray) -> None:
    def write(path):
        with open(path, "wb") as f:  # a file object: np.save would append ".npy" to a name
            np.save(f, arr)
    _atomic(root, name, write)


def _write_json(root: str, name: str, value: Any) -> None:
    def write(path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(value, f, indent=1, sort_keys=True)
            f.write("\n")
    _atomic(root, name, write)


def _remove_leftovers(root: str) -> None:
    for name in _FILES:
        tmp = os.path.join(root, name + _TMP)
        if os.path.exists(tmp):
            os.remove(tmp)
