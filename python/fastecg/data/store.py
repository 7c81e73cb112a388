"""``ECGStore``: preprocessed records in memory-mapped files, for fast training.

A store is a folder::

    signals-00000.bin    records' samples, C order (n_leads, n_samples), one after another,
    signals-00001.bin    float32 or float16 (store.json says which); a new shard starts
    ...                  before a file would pass the shard size (2 GiB by default)
    shard-00000.npz      each finished shard's index and targets (for resuming)
    index.npy            int64 (n_records, 4): shard, element offset, n_leads, n_samples
    targets.npy          the records' labels, one row each (when the source has them)
    metadata.parquet     the source's metadata, one row per record, in store order
    preprocessing.json   the PreprocManager config that produced the signals
    settings.json        what the run was asked to do (a re-run with others starts over)
    store.json           format, dtype, output rate and lead names (None where the records
                         differ), counts; written last

Fixed-length and variable-length (Holter) records share the layout: the index gives each
record's place, so reading one is a slice of a memory map, O(1), no file opened per item.
Every file is written under a temporary name and renamed when complete, so a killed run
leaves no half-written file; a re-run keeps the finished shards and goes on from there,
and ``store.json`` appearing marks a complete store.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from .._spec import check_lead_names
from .datasets import digest, metadata_row, record_index

__all__ = ["ECGStore", "write_store", "STORE_FORMAT"]

STORE_FORMAT = 2  # 2: sharded signals, index rows (shard, offset, n_leads, n_samples)
# The store's own files: the only ones a write removes or renames in its folder (a user's
# notes.tmp or shard-notes.txt there are left alone).
_SHARD_FILE = re.compile(r"(signals-\d{5}\.bin|shard-\d{5}\.npz)")
_OWN_FILE = re.compile(r"(signals-\d{5}\.bin|shard-\d{5}\.npz|index\.npy|targets\.npy|"
                       r"metadata\.parquet|preprocessing\.json|settings\.json|store\.json)")
_DTYPES = {"float32": np.float32, "float16": np.float16}
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
        Seed of the random windows.
    return_meta : bool, optional
        Items end with the record's metadata row as a dict (batch them with
        ``DataLoader(..., collate_fn=collate_with_meta)``).

    Notes
    -----
    Items are ``(signal, target)`` (the signal float32, shape ``(n_leads, n_samples)``)
    when the store has targets, else the signal alone. Works with ``DistributedSampler`` (any sampler over
    ``range(len(store))``) and DataLoader workers: the memory map is opened in each
    process on first use. A store written again (:func:`write_store` on its folder)
    after this object opened it gives RuntimeError where a process opens a signal file
    or the metadata, rather than other records' samples: open it again.

    Examples
    --------
    >>> import tempfile
    >>> from fastecg.data import ECGStore, SyntheticECGDataset, write_store
    >>> folder = tempfile.TemporaryDirectory()
    >>> _ = write_store(SyntheticECGDataset(6, seconds=1.0), folder.name, progress=False)
    >>> store = ECGStore(folder.name, crop=250, random_crop=True, seed=0)
    >>> sig, target = store[0]
    >>> len(store), store.fs, sig.shape
    (6, 500.0, torch.Size([12, 250]))
    >>> folder.cleanup()
    """

    def __init__(self, root, crop: Optional[int] = None, random_crop: bool = False,
                 seed: int = 0, return_meta: bool = False):
        self.root = os.fspath(root)
        info_path = os.path.join(self.root, "store.json")
        if not os.path.isfile(info_path):
            raise FileNotFoundError(f"{self.root} is not a complete ECG store (no store.json)")
        with open(info_path, encoding="utf-8") as f:
            # Which store.json this is: a re-run of write_store replaces it (and removes
            # it first), so a file with another identity later means other records.
            self._stamp = _identity(os.fstat(f.fileno()))
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
        # Random windows read the epoch from shared memory, so that DataLoader workers,
        # persistent ones included, see set_epoch (a shared tensor holds a file
        # descriptor: only a store that needs one makes it).
        self._epoch = torch.zeros((), dtype=torch.int64)
        if random_crop:
            self._epoch.share_memory_()
        self._signals: dict = {}
        self._pid: Optional[int] = None
        self._metadata = None
        self._check_unchanged()  # the index and targets read above are this store's

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
            self._check_unchanged()
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

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Draw new random windows (as ``DistributedSampler.set_epoch``), call it before
        each epoch's ``iter(loader)``. The epoch lives in shared memory, so DataLoader
        workers started earlier (``persistent_workers=True``) see it too."""
        self._epoch.fill_(int(epoch))

    def __len__(self) -> int:
        return len(self.index)

    def signals(self, shard: int = 0) -> np.ndarray:
        """The memory map of shard `shard`'s samples (opened once per process)."""
        if self._pid != os.getpid():
            self._signals, self._pid = {}, os.getpid()
        if shard not in self._signals:
            path = os.path.join(self.root, f"signals-{shard:05d}.bin")
            dtype = _DTYPES[self.info["dtype"]]
            if os.path.getsize(path) == 0:  # np.memmap refuses an empty file
                self._signals[shard] = np.zeros(0, dtype=dtype)
            else:
                self._signals[shard] = np.memmap(path, dtype=dtype, mode="r")
            # Checked after mapping: an open map keeps its file, so once this passes the
            # map holds this store's samples even if the store is written again later.
            self._check_unchanged()
        return self._signals[shard]

    def _check_unchanged(self) -> None:
        """RuntimeError if the store has been written again, or is being written, since
        it was opened: its index would then point into other records' samples."""
        try:
            stamp = _identity(os.stat(os.path.join(self.root, "store.json")))
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            self._signals = {}
            raise RuntimeError(f"ECGStore: {self.root} has been written again (or is being "
                               "written) since this ECGStore opened it; open it again once "
                               "the write is complete")

    def record(self, index: int) -> np.ndarray:
        """Record `index` as a read-only view of its memory map, in the stored dtype."""
        shard, offset, n_leads, n_samples = (int(v) for v in self.index[index])
        return self.signals(shard)[offset:offset + n_leads * n_samples].reshape(n_leads,
                                                                               n_samples)

    def __getitem__(self, index: int):
        index = record_index(index, len(self))
        sig = self.record(index)
        if self.crop is not None:
            sig = self._window(sig, index)
        # One copy, into float32: the map is read-only and may be float16.
        out = torch.from_numpy(np.array(sig, dtype=np.float32))
        items: list[Any] = [out]
        if self.targets is not None:
            items.append(torch.from_numpy(np.array(self.targets[index])))
        if self.return_meta:
            items.append(metadata_row(self.metadata, index))
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

    def __setstate__(self, state):
        self.__dict__.update(state)
        # A deep copy or an unpickled store (torch.load, pickle) holds its epoch in an
        # ordinary tensor: shared again, so that persistent workers forked from the copy
        # see its set_epoch. (One a DataLoader sent to spawned workers is shared already:
        # sharing it again is a no-op, and a clone would cut it off from the parent.)
        if self.random_crop and not self._epoch.is_shared():
            self._epoch.share_memory_()


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


def _fingerprint(dataset) -> str:
    """What the records are made of: the dataset's ``fingerprint()``, or for another
    dataset a digest of its metadata (then a store is only kept, or resumed, when that
    is the same)."""
    if hasattr(dataset, "fingerprint"):
        return dataset.fingerprint()
    meta = dataset.metadata
    return digest(type(dataset).__name__, [str(c) for c in meta.columns],
                  *(meta[c].to_numpy() for c in meta.columns))


def _settings(dataset, pipeline, dtype: str) -> dict:
    return {"source": getattr(dataset, "source", None),
            "fingerprint": _fingerprint(dataset),
            "n_source_records": len(dataset), "fs": getattr(dataset, "fs", None),
            "leads": getattr(dataset, "leads", None), "siglen": getattr(dataset, "siglen", None),
            "pipeline": None if pipeline is None else pipeline.to_config(),
            "dtype": dtype}


def write_store(dataset, root, pipeline: Optional[Callable] = None, *, batch_size: int = 32,
                workers: int = 0, dtype: str = "float32", device: str = "cpu",
                overwrite: bool = False, progress: bool = True,
                shard_bytes: int = 2 ** 31) -> dict:
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
        Start over. Without it, a complete store written with the same settings is kept
        as it is, and an interrupted one keeps its finished shards.
    progress : bool
        Show a tqdm bar (records/s).
    shard_bytes : int
        Size above which a new signal file starts (a record is never split).

    Returns
    -------
    dict
        ``written`` (records processed by this call), ``skipped`` (list of (record,
        reason)), ``seconds``, ``resumed`` (records kept from an earlier run, or True
        when a complete store was kept whole).

    Examples
    --------
    >>> import tempfile
    >>> from fastecg.data import ECGStore, SyntheticECGDataset, write_store
    >>> folder = tempfile.TemporaryDirectory()
    >>> report = write_store(SyntheticECGDataset(6, seconds=1.0), folder.name, progress=False)
    >>> report["written"], report["skipped"]
    (6, [])
    >>> len(ECGStore(folder.name))
    6
    >>> folder.cleanup()
    """
    if dtype not in _DTYPES:
        raise ValueError(f"write_store: dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    if int(shard_bytes) != shard_bytes or shard_bytes < 1:
        raise ValueError(f"write_store: shard_bytes must be a positive integer, got "
                         f"{shard_bytes!r}")
    root = os.fspath(root)
    start = time.perf_counter()
    settings = {**_settings(dataset, pipeline, dtype), "shard_bytes": int(shard_bytes)}
    skipped = list(getattr(dataset, "skipped", []))
    if not overwrite and _read_json(root, "store.json", {}).get("settings") == settings:
        return {"written": 0, "skipped": skipped, "seconds": time.perf_counter() - start,
                "resumed": True}
    os.makedirs(root, exist_ok=True)
    _remove_temporary(root)
    _remove(root, ["store.json"])  # incomplete from here until it is written again
    if overwrite or _read_json(root, "settings.json", None) != settings:
        _remove(root, _shard_files(root))
        _write_json(root, "settings.json", settings)
    shards = _finished_shards(root)
    first = int(shards[-1]["end"]) if shards else 0

    item_bytes = np.dtype(_DTYPES[dtype]).itemsize
    state = {"shard": len(shards), "offset": 0, "start": first, "index": [], "targets": [],
             "file": None}
    out_fs: set = {float(v) for sh in shards for v in sh["fs"]}
    # The output lead names of every record so far (tuples; None: not known).
    out_leads: set = {None if v is None else tuple(v) for sh in shards for v in sh["leads"]}

    def close_shard():
        if state["file"] is None:
            return
        state["file"].close()
        k = state["shard"]
        end = state["start"] + len(state["index"])
        _save_npz(root, f"shard-{k:05d}.npz", index=np.asarray(state["index"], np.int64)
                  .reshape(-1, 4), targets=_stack(state["targets"], len(state["index"])),
                  start=state["start"], end=end, fs=np.asarray(sorted(out_fs)),
                  leads=np.asarray(json.dumps(sorted(out_leads, key=str))))
        os.replace(os.path.join(root, f"signals-{k:05d}.bin{_TMP}"),
                   os.path.join(root, f"signals-{k:05d}.bin"))
        shards.append(_load_shard(root, k))
        state.update(shard=k + 1, offset=0, start=end, index=[], targets=[], file=None)

    def write(rec: np.ndarray, target) -> None:
        if state["file"] is not None and state["offset"] and \
                (state["offset"] + rec.size) * item_bytes > shard_bytes:
            close_shard()
        if state["file"] is None:
            state["file"] = open(os.path.join(root, f"signals-{state['shard']:05d}.bin{_TMP}"),
                                 "wb")
        state["file"].write(rec.tobytes())
        state["index"].append((state["shard"], state["offset"], rec.shape[0], rec.shape[1]))
        state["offset"] += rec.size
        state["targets"].append(None if target is None else np.asarray(target))
        if state["offset"] * item_bytes >= shard_bytes:  # full: finished now, not later
            close_shard()

    pending: list = []

    def flush():
        if not pending:
            return
        batch = torch.stack([item[1] for item in pending]).to(device)
        fs, names = pending[0][2], pending[0][3]
        out, fs_out = (batch, fs) if pipeline is None else pipeline(batch, fs, names)
        arr = out.detach().cpu().numpy().astype(_DTYPES[dtype], copy=False)
        out_fs.add(float(fs_out))
        out_leads.add(_lead_key(pipeline, names))
        for k, item in enumerate(pending):
            write(np.ascontiguousarray(arr[k]), item[4])
        bar.update(len(pending))
        pending.clear()

    bar = _progress(len(dataset), progress, first)
    remaining = Subset(_RawItems(dataset), range(first, len(dataset)))
    loader = DataLoader(remaining, batch_size=None, num_workers=workers, collate_fn=_first)
    try:
        for item in loader:
            key = (tuple(item[1].shape), item[2], tuple(item[3] or ()))
            if pending and ((tuple(pending[0][1].shape), pending[0][2],
                             tuple(pending[0][3] or ())) != key or len(pending) >= batch_size):
                flush()
            pending.append(item)
        flush()
        close_shard()
    finally:
        if state["file"] is not None:
            state["file"].close()
        bar.close()

    index = np.concatenate([sh["index"] for sh in shards]) if shards else \
        np.zeros((0, 4), np.int64)
    _save_npy(root, "index.npy", index)
    targets = [sh["targets"] for sh in shards]
    if shards and all(t is not None for t in targets):
        _save_npy(root, "targets.npy", np.concatenate(targets))
    else:
        _remove(root, ["targets.npy"])  # an overwritten store's
    metadata = dataset.metadata.reset_index(drop=True)
    _atomic(root, "metadata.parquet", lambda path: metadata.to_parquet(path, index=False))
    _write_json(root, "preprocessing.json", None if pipeline is None else pipeline.to_config())
    if not out_leads and len(dataset):
        out_leads.add(_lead_key(pipeline, dataset.read(0)[2]))
    # One rate and one lead order for all records, or None: the records differ.
    leads = out_leads.pop() if len(out_leads) == 1 else None
    info = {"format": STORE_FORMAT, "dtype": dtype, "n_records": int(len(index)),
            "n_shards": len(shards), "fs": out_fs.pop() if len(out_fs) == 1 else None,
            "lead_names": None if leads is None else list(leads), "settings": settings}
    _write_json(root, "store.json", info)
    return {"written": len(dataset) - first, "skipped": skipped,
            "seconds": time.perf_counter() - start, "resumed": first}


def _identity(st: os.stat_result) -> tuple:
    """What tells one file from another at a path (a file replaced by rename has another
    inode)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _stack(targets: list, n: int) -> np.ndarray:
    if n and all(t is not None for t in targets):
        return np.stack(targets)
    return np.zeros(0)  # no targets: an empty array marks it


def _finished_shards(root: str) -> list[dict]:
    """The shards an earlier run finished, in order (stops at the first missing one)."""
    shards = []
    while os.path.isfile(os.path.join(root, f"shard-{len(shards):05d}.npz")) and \
            os.path.isfile(os.path.join(root, f"signals-{len(shards):05d}.bin")):
        shards.append(_load_shard(root, len(shards)))
    # Files of later shards than the first gap would be overwritten: drop them now.
    _remove(root, [n for n in _shard_files(root) if int(n.split("-")[1][:5]) >= len(shards)])
    return shards


def _shard_files(root: str) -> list[str]:
    return [n for n in os.listdir(root) if _SHARD_FILE.fullmatch(n)]


def _load_shard(root: str, k: int) -> dict:
    with np.load(os.path.join(root, f"shard-{k:05d}.npz")) as f:
        targets = f["targets"]
        leads = json.loads(str(f["leads"])) if "leads" in f else [None]
        return {"index": f["index"], "end": int(f["end"]), "fs": f["fs"].tolist(),
                "leads": leads,
                "targets": targets if len(targets) == len(f["index"]) and len(targets) else
                None}


def _read_json(root: str, name: str, default):
    try:
        with open(os.path.join(root, name), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def _remove(root: str, names) -> None:
    for name in names:
        path = os.path.join(root, name)
        if os.path.isfile(path):
            os.remove(path)


def _out_leads(pipeline, names) -> Optional[list]:
    """Lead names after the pipeline: those a lead-selection step keeps, else the input's."""
    if names is not None:
        names = check_lead_names(names, "the dataset's read(i) lead names", distinct=False)
    leads = list(names) if names else None
    for step in getattr(pipeline, "steps", []) or []:
        config = step.config() if hasattr(step, "config") else {}
        if "leads" in config and config["leads"] is not None:
            leads = [str(x) for x in config["leads"]]
    return leads


def _lead_key(pipeline, names) -> Optional[tuple]:
    """:func:`_out_leads` as a set member (None: not known)."""
    leads = _out_leads(pipeline, names)
    return None if leads is None else tuple(leads)


def _progress(total: int, enabled: bool, done: int = 0):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: no bar then
        enabled = False
    if not enabled:
        class _Quiet:
            def update(self, n): pass
            def close(self): pass
        return _Quiet()
    return tqdm(total=total, initial=done, unit="rec", desc="preprocess", smoothing=0.1)


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


def _save_npz(root: str, name: str, **arrays) -> None:
    def write(path):
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    _atomic(root, name, write)


def _remove_temporary(root: str) -> None:
    _remove(root, [n for n in os.listdir(root)
                   if n.endswith(_TMP) and _OWN_FILE.fullmatch(n[:-len(_TMP)])])
