"""Datasets in DataLoader workers (fork and spawn) and items a consumer changes in place:
every sample the same whatever the workers, epoch after epoch."""

import numpy as np
import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader

pytest.importorskip("pandas")

from fastecg.data import (ArrayDataset, SyntheticECGDataset, WFDBDataset,  # noqa: E402
                          bundled_records, split)
from fastecg.preprocessors import PreprocManager  # noqa: E402


def records(n=4, n_leads=2, n_samples=60, seed=0):
    return np.random.default_rng(seed).standard_normal((n, n_leads, n_samples)) \
        .astype(np.float32)


@pytest.mark.parametrize("kind", ["numpy", "tensor"])
@pytest.mark.parametrize("transforms", [None, "identity"])
def test_array_dataset_items_changed_in_place_leave_the_records_as_they_were(kind, transforms):
    """Writing into an item (``sig -= sig.mean()`` in a training loop) changes neither
    the dataset nor the caller's arrays, also through transforms that pass the signal
    through (a resampling to the rate it has)."""
    x, y = records(), np.eye(4, dtype=np.float32)
    expected_x, expected_y = x.copy(), y.copy()
    signals, labels = (x, y) if kind == "numpy" else (torch.from_numpy(x), torch.from_numpy(y))
    pm = None if transforms is None else PreprocManager({"name": "resample", "dst_fs": 100.0},
                                                        fs=100.0)
    ds = ArrayDataset(signals, labels=labels, fs=100.0, transforms=pm)
    for i in range(len(ds)):
        sig, label = ds[i]
        sig.mul_(0)
        label.add_(5)
    np.testing.assert_array_equal(x, expected_x)
    np.testing.assert_array_equal(y, expected_y)
    for i in range(len(ds)):
        np.testing.assert_array_equal(ds[i][0].numpy(), expected_x[i])
        np.testing.assert_array_equal(ds[i][1].numpy(), expected_y[i])


def test_array_dataset_in_place_transform_does_not_drift():
    """A transform of the user's that works in place sees the stored record afresh at
    every call: the same item every epoch, as forked workers (which get copies) give."""
    x = records()

    def center(sig, fs, lead_names):
        sig -= 1.0
        return sig, fs

    ds = ArrayDataset(x.copy(), fs=100.0, transforms=center)
    for _ in range(3):
        np.testing.assert_array_equal(ds[1].numpy(), x[1] - 1.0)


def test_persistent_workers_serve_the_records_unchanged_after_the_consumer_wrote_to_them():
    """Without automatic batching a worker sends the item itself (through shared
    memory): a consumer writing into it must not change what later epochs get."""
    x = records(6)
    loader = DataLoader(ArrayDataset(x.copy(), fs=100.0), batch_size=None, num_workers=2,
                        persistent_workers=True, multiprocessing_context="fork")
    for _ in range(3):
        items = list(loader)
        np.testing.assert_array_equal(torch.stack(items).numpy(), x)
        for item in items:
            item.mul_(0)


def test_hdf5_labels_changed_in_place_leave_the_dataset_as_it_was(tmp_path):
    h5py = pytest.importorskip("h5py")
    from fastecg.data import HDF5Dataset

    path = tmp_path / "part.hdf5"
    with h5py.File(path, "w") as f:
        f["tracings"] = np.zeros((3, 16, 12), np.float32)
        f["exam_id"] = np.array([1, 2, 3])
    labels = np.eye(3, dtype=np.float32)
    ds = HDF5Dataset(path, labels=labels)
    ds[0][1].mul_(5)
    np.testing.assert_array_equal(labels, np.eye(3))
    np.testing.assert_array_equal(ds[0][1].numpy(), [1, 0, 0])


def _signal(item):
    return item[0] if isinstance(item, (tuple, list)) else item


def test_every_dataset_gives_the_same_items_in_spawned_workers(tmp_path):
    """The datasets and pipelines pickle to spawned workers (macOS' and Windows' start
    method) and give there exactly the items of the main process: an HDF5 file and a
    store already opened here, a store's random windows of a later epoch, a PreprocManager
    as transforms, a split's Subset."""
    h5py = pytest.importorskip("h5py")
    from fastecg.data import ECGStore, HDF5Dataset, write_store

    path = tmp_path / "part.hdf5"
    with h5py.File(path, "w") as f:
        f["tracings"] = np.random.default_rng(1).standard_normal((2, 400, 12)) \
            .astype(np.float32)
        f["exam_id"] = np.array([1, 2])
    hdf5 = HDF5Dataset(path, transforms=PreprocManager("bandpass", fs=400.0))
    write_store(SyntheticECGDataset(3, seconds=1.0), tmp_path / "store", progress=False)
    store = ECGStore(tmp_path / "store", crop=200, random_crop=True, seed=3)
    hdf5[0], store[0]  # opened in the parent
    store.set_epoch(4)
    parts = [WFDBDataset(bundled_records()[:2], transforms=PreprocManager.from_recipe("st_mem")),
             ArrayDataset(records(2), fs=100.0), hdf5, store,
             split(SyntheticECGDataset(4, seconds=1.0), fractions=(0.5, 0.5))[0]]
    data = ConcatDataset(parts)
    expected = [_signal(data[i]) for i in range(len(data))]
    got = [_signal(item) for item in DataLoader(data, batch_size=None, num_workers=2,
                                                multiprocessing_context="spawn")]
    assert len(got) == len(expected) == 11
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    window = np.asarray(store.record(1), np.float32)
    start = int(np.random.default_rng([3, 4, 1]).integers(0, window.shape[-1] - 200 + 1))
    np.testing.assert_array_equal(got[7].numpy(), window[:, start:start + 200])
