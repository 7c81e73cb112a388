"""ECGStore: what is read back equals the pipeline run on the fly; resume, overwrite,
float16, crops, DataLoader workers."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

from fastecg.data import ArrayDataset, ECGStore, SyntheticECGDataset, write_store  # noqa: E402
from fastecg.preprocessors import PreprocManager  # noqa: E402

CONFIG = {"steps": [{"name": "bandpass", "lowcut": 0.5, "highcut": 40.0},
                    {"name": "resample", "dst_fs": 250.0, "method": "poly"},
                    {"name": "normalize", "method": "z-score"}]}


@pytest.fixture(scope="module")
def source():
    return SyntheticECGDataset(10, seconds=2.0, seed=4)


@pytest.fixture(scope="module")
def store_dir(source, tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    summary = write_store(source, root, PreprocManager.from_config(CONFIG), batch_size=4,
                          progress=False)
    assert summary["written"] == 10 and not summary["resumed"]
    return root


def test_round_trip_equals_the_pipeline_on_the_fly(source, store_dir):
    store = ECGStore(store_dir)
    pm = PreprocManager.from_config(store.preprocessing)  # the stored config rebuilds it
    assert len(store) == 10 and store.fs == 250.0
    for i in range(len(store)):
        x, y = store[i]
        ref, fs = pm(source.read(i)[0], 500.0)
        assert x.dtype == torch.float32 and x.shape == (12, 500) and fs == 250.0
        torch.testing.assert_close(x, ref, rtol=0, atol=1e-6)
        assert y.item() == source.metadata["label"].iat[i]
    meta = store.metadata
    assert meta["record"].tolist() == source.metadata["record"].tolist()
    assert str(meta["patient_id"].dtype) == "str"


def test_files_layout_and_memmap(store_dir):
    assert sorted(os.listdir(store_dir)) == ["index.npy", "metadata.parquet",
                                             "preprocessing.json", "settings.json",
                                             "shard-00000.npz", "signals-00000.bin",
                                             "store.json", "targets.npy"]
    store = ECGStore(store_dir)
    assert isinstance(store.signals(0), np.memmap)
    assert store.signals(0).size == 10 * 12 * 500
    info = json.loads((store_dir / "store.json").read_text())
    assert info["n_records"] == 10 and info["dtype"] == "float32"


def test_resume_keeps_and_overwrite_rewrites(source, store_dir):
    pm = PreprocManager.from_config(CONFIG)
    before = {n: (store_dir / n).read_bytes() for n in os.listdir(store_dir)}
    mtime = os.stat(store_dir / "signals-00000.bin").st_mtime_ns
    assert write_store(source, store_dir, pm, progress=False)["resumed"] is True
    assert os.stat(store_dir / "signals-00000.bin").st_mtime_ns == mtime
    summary = write_store(source, store_dir, pm, overwrite=True, batch_size=3, progress=False)
    assert summary["written"] == 10 and not summary["resumed"]
    # Batches of another size, same bytes.
    assert {n: (store_dir / n).read_bytes() for n in os.listdir(store_dir)} == before


def test_float16_variable_length_crops_and_workers(tmp_path):
    rng = np.random.default_rng(0)
    records = [rng.standard_normal((2, n)).astype(np.float32) for n in (300, 1000, 1000, 50)]
    write_store(ArrayDataset(records, fs=100.0), tmp_path, dtype="float16", progress=False,
                workers=2)
    store = ECGStore(tmp_path)
    assert [store[i].shape[-1] for i in range(4)] == [300, 1000, 1000, 50]
    np.testing.assert_array_equal(store[1].numpy(), records[1].astype(np.float16))
    crops = ECGStore(tmp_path, crop=200, random_crop=True, seed=1)
    a = crops[1]
    assert a.shape == (2, 200) and torch.equal(a, crops[1])
    crops.set_epoch(1)
    assert not torch.equal(a, crops[1])
    assert crops[3].shape == (2, 200) and crops[3][:, 50:].abs().sum() == 0
    loader = torch.utils.data.DataLoader(ECGStore(tmp_path, crop=40), batch_size=2,
                                         num_workers=2)
    assert torch.cat(list(loader)).shape == (4, 2, 40)


def test_shards_and_resuming_after_an_interruption(source, tmp_path):
    """Shards of at most 3 records; a run stopped after the first two shards is resumed
    from the third and gives the same files as an uninterrupted one."""
    pm = PreprocManager.from_config(CONFIG)
    record_bytes = 12 * 500 * 4
    clean, resumed = tmp_path / "clean", tmp_path / "resumed"
    write_store(source, clean, pm, shard_bytes=3 * record_bytes, progress=False)
    store = ECGStore(clean)
    assert store.info["n_shards"] == 4 and store.index[:, 0].tolist() == [0] * 3 + [1] * 3 + \
        [2] * 3 + [3]
    for i in (0, 4, 9):
        torch.testing.assert_close(store[i][0], pm(source.read(i)[0], 500.0)[0], rtol=0,
                                   atol=1e-6)

    class Interrupted(Exception):
        pass

    flaky = SyntheticECGDataset(10, seconds=2.0, seed=4)  # the same records, read until 7
    read = flaky.read
    flaky.read = lambda index: read(index) if index != 7 else (_ for _ in ()).throw(
        Interrupted())
    with pytest.raises(Interrupted):
        write_store(flaky, resumed, pm, shard_bytes=3 * record_bytes, progress=False,
                    batch_size=1)
    assert not (resumed / "store.json").exists()
    assert (resumed / "signals-00001.bin").exists() and not (resumed / "signals-00002.bin").exists()
    summary = write_store(source, resumed, pm, shard_bytes=3 * record_bytes, progress=False)
    assert summary["resumed"] == 6 and summary["written"] == 4
    for name in os.listdir(clean):
        if name != "store.json":  # (its settings hold the summary of this call)
            assert (resumed / name).read_bytes() == (clean / name).read_bytes(), name


def test_a_write_leaves_the_users_own_files_alone(tmp_path):
    """Only the store's own files are removed or replaced in its folder: a user's
    notes.tmp, shard-notes.txt and signals-old.txt stay (they were deleted, and such a
    name broke resuming), through a first write, an overwrite and a resume."""
    mine = {"notes.tmp": b"a", "shard-notes.txt": b"b", "signals-old.txt": b"c",
            "store.json.bak": b"d"}
    for name, data in mine.items():
        (tmp_path / name).write_bytes(data)
    x = np.arange(3 * 2 * 10, dtype=np.float32).reshape(3, 2, 10)
    for overwrite in (False, True, False):
        write_store(ArrayDataset(x, fs=100.0), tmp_path, progress=False, overwrite=overwrite)
        for name, data in mine.items():
            assert (tmp_path / name).read_bytes() == data, name
        torch.testing.assert_close(ECGStore(tmp_path)[2], torch.from_numpy(x[2]))  # no labels


def test_incomplete_store_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="store.json"):
        ECGStore(tmp_path)


def test_every_dataset_takes_the_indices_a_subset_passes(source, store_dir):
    # A Subset over torch.randperm(n) indexes with 0-d tensors; NumPy integers and
    # negative indices are Python's; anything else is a TypeError, out of range an
    # IndexError. Each record must be the one its integer index gives.
    import os

    from fastecg.data import WFDBDataset, bundled_records

    wfdb_ds = WFDBDataset(os.path.dirname(bundled_records()[0]))
    arrays = ArrayDataset(np.random.default_rng(0).standard_normal((5, 2, 50), np.float32),
                          labels=np.arange(5))
    for ds in (source, ECGStore(store_dir), arrays, wfdb_ds):
        n = len(ds)

        def same(a, b):
            return all(torch.equal(torch.as_tensor(u), torch.as_tensor(v)) for u, v in zip(a, b))

        assert same(ds[torch.tensor(n - 1)], ds[n - 1])
        assert same(ds[np.int64(1)], ds[1]) and same(ds[-1], ds[n - 1])
        order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
        subset = torch.utils.data.Subset(ds, order)
        assert same(subset[0], ds[int(order[0])])
        with pytest.raises(TypeError, match="must be an integer"):
            ds[1.0]
        with pytest.raises(IndexError, match="out of range"):
            ds[n]
        with pytest.raises(IndexError, match="out of range"):
            ds[-n - 1]


def test_a_store_of_other_data_is_written_again(tmp_path):
    """A complete store is kept only for the same records: other samples, labels or
    seeds under the same (or no) source folder start over."""
    zeros, ones = np.zeros((3, 2, 10), np.float32), np.ones((3, 2, 10), np.float32)
    assert not write_store(ArrayDataset(zeros, fs=100.0), tmp_path, progress=False)["resumed"]
    assert write_store(ArrayDataset(zeros, fs=100.0), tmp_path, progress=False)["resumed"] is True
    assert not write_store(ArrayDataset(ones, fs=100.0), tmp_path, progress=False)["resumed"]
    assert float(ECGStore(tmp_path)[0].min()) == 1.0
    write_store(ArrayDataset(ones, labels=[0, 1, 2], fs=100.0), tmp_path, progress=False)
    assert not write_store(ArrayDataset(ones, labels=[2, 1, 0], fs=100.0), tmp_path,
                           progress=False)["resumed"]
    assert int(ECGStore(tmp_path)[0][1]) == 2
    for seed in (0, 1):
        write_store(SyntheticECGDataset(2, seconds=1.0, seed=seed), tmp_path, progress=False)
        torch.testing.assert_close(ECGStore(tmp_path)[1][0],
                                   SyntheticECGDataset(2, seconds=1.0, seed=seed)[1][0])


def test_set_epoch_reaches_persistent_workers(tmp_path):
    """Random windows depend on (seed, epoch, index) only, also in DataLoader workers
    that outlive an epoch."""
    records = np.random.default_rng(0).standard_normal((6, 1, 400)).astype(np.float32)
    write_store(ArrayDataset(records, fs=100.0), tmp_path, progress=False)
    store = ECGStore(tmp_path, crop=50, random_crop=True, seed=3)
    loader = torch.utils.data.DataLoader(store, batch_size=3, num_workers=2,
                                         persistent_workers=True)
    reference = ECGStore(tmp_path, crop=50, random_crop=True, seed=3)
    seen = []
    for epoch in range(3):
        store.set_epoch(epoch)
        reference.set_epoch(epoch)
        got = torch.cat(list(loader))
        torch.testing.assert_close(got, torch.stack([reference[i] for i in range(6)]),
                                   rtol=0, atol=0)
        seen.append(got)
    assert not torch.equal(seen[0], seen[1]) and not torch.equal(seen[1], seen[2])


def test_a_store_written_again_while_open_is_not_read_as_the_old_one(tmp_path):
    old, new = (SyntheticECGDataset(4, seconds=1.0, seed=s) for s in (0, 1))
    write_store(old, tmp_path, progress=False)
    unread, mapped = ECGStore(tmp_path), ECGStore(tmp_path)
    torch.testing.assert_close(mapped[0][0], old.read(0)[0], rtol=0, atol=0)
    write_store(new, tmp_path, progress=False)  # other records, same shapes
    # Not yet mapped: the old index would point into the new samples.
    with pytest.raises(RuntimeError, match="written again"):
        unread[0]
    with pytest.raises(RuntimeError, match="written again"):
        unread.metadata
    # Mapped before: the map keeps the old file, so the old records, whole.
    for i in range(4):
        torch.testing.assert_close(mapped[i][0], old.read(i)[0], rtol=0, atol=0)
    torch.testing.assert_close(ECGStore(tmp_path)[3][0], new.read(3)[0], rtol=0, atol=0)


def test_real_records_round_trip_within_the_stored_dtype(cinc_records, tmp_path):
    wfdb = pytest.importorskip("wfdb")
    from fastecg.data import WFDBDataset

    ds = WFDBDataset(cinc_records[:4])
    for dtype, eps in (("float32", 2.0 ** -24), ("float16", 2.0 ** -11)):
        write_store(ds, tmp_path / dtype, dtype=dtype, progress=False)
        store = ECGStore(tmp_path / dtype)
        for i, path in enumerate(cinc_records[:4]):
            ref = wfdb.rdsamp(path)[0].T  # float64 physical values, mV
            sig, target = store[i]
            # Rounding to the stored dtype: half an ulp, relative (float16's normals
            # start at 6.1e-5 mV, below the records' 1 uV resolution).
            err = np.abs(sig.numpy().astype(np.float64) - ref)
            assert (err <= eps * np.abs(ref) + 1e-12).all(), dtype
            np.testing.assert_array_equal(target.numpy(), ds.target(i))


def test_an_items_metadata_is_the_callers_own(tmp_path):
    """As WFDBDataset's: list cells of an item's metadata are copies, not the store's."""
    pytest.importorskip("wfdb")
    from fastecg.data import WFDBDataset, bundled_records

    write_store(WFDBDataset(bundled_records()), tmp_path, progress=False)
    store = ECGStore(tmp_path, return_meta=True)
    codes = [list(c) for c in store.metadata["dx_codes"]]
    meta = store[2][-1]
    assert meta["dx_codes"] == codes[2]
    meta["dx_codes"].append("999999")
    assert [list(c) for c in store.metadata["dx_codes"]] == codes
    assert store[2][-1]["dx_codes"] == codes[2]


def test_a_copied_or_reloaded_store_reaches_persistent_workers(tmp_path):
    """A deep copy or an unpickled store held its epoch in an ordinary tensor: forked
    persistent workers never saw a later set_epoch (epoch 1 repeated epoch 0)."""
    import copy
    import pickle

    records = np.random.default_rng(0).standard_normal((4, 1, 400)).astype(np.float32)
    write_store(ArrayDataset(records, fs=100.0), tmp_path / "s", progress=False)
    original = ECGStore(tmp_path / "s", crop=50, random_crop=True, seed=3)
    reference = ECGStore(tmp_path / "s", crop=50, random_crop=True, seed=3)
    for store in (copy.deepcopy(original), pickle.loads(pickle.dumps(original))):
        loader = torch.utils.data.DataLoader(store, batch_size=4, num_workers=1,
                                             persistent_workers=True)
        for epoch in range(2):
            store.set_epoch(epoch)
            reference.set_epoch(epoch)
            torch.testing.assert_close(next(iter(loader)),
                                       torch.stack([reference[i] for i in range(4)]),
                                       rtol=0, atol=0)
        assert original.epoch == 0  # the copy's epoch is its own
