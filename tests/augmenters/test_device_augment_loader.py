"""DeviceAugmentLoader: batches with metadata, dict batches, distributed samplers; each
checked against the manager called on the whole data with the sample indices as keys."""

import collections

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

from fastecg.augmenters import AugmenterManager, DeviceAugmentLoader, IndexedDataset
from fastecg.data import collate_with_meta

N = 8


def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(N, 3, 120, generator=g), torch.rand(N, 4, generator=g)


def manager():
    return AugmenterManager({"name": "gaussian_noise", "prob": 1.0}, {"name": "random_flip"})


class WithMeta(Dataset):
    """Items ``(sig, label, metadata dict)``, as a ``return_meta=True`` dataset's."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i], {"record": f"r{i}", "age": float(i)}


class Dicts(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"patient_id": i, "signal": self.x[i], "label": self.y[i]}


def test_metadata_items_ride_along():
    x, y = data()
    am = manager()
    ref = am(x, y, seed=3, epoch=1, indices=torch.arange(N))
    for collate in (None, collate_with_meta):
        loader = DataLoader(WithMeta(x, y), batch_size=3, collate_fn=collate)
        out = list(DeviceAugmentLoader(loader, am, seed=3, epoch=1))
        torch.testing.assert_close(torch.cat([b[0] for b in out]), ref[0], rtol=0, atol=1e-6)
        torch.testing.assert_close(torch.cat([b[1] for b in out]), ref[1])
        assert all(len(b) == 3 for b in out)
        if collate is None:  # default_collate: a dict of columns
            assert sum((b[2]["record"] for b in out), []) == [f"r{i}" for i in range(N)]
            torch.testing.assert_close(torch.cat([b[2]["age"] for b in out]),
                                       torch.arange(N, dtype=torch.float64))
        else:
            assert [m["record"] for b in out for m in b[2]] == [f"r{i}" for i in range(N)]


def test_dict_batches_plain_and_indexed():
    x, y = data()
    am = manager()
    ref = am(x, y, seed=5, indices=torch.arange(N))
    order = [5, 2, 7, 0, 1, 6, 3, 4]
    for indexed in (False, True):
        ds = IndexedDataset(Dicts(x, y)) if indexed else Dicts(x, y)
        loader = DataLoader(ds, batch_size=4, sampler=order if indexed else None)
        out = list(DeviceAugmentLoader(loader, am, seed=5, indexed=indexed))
        expect = order if indexed else list(range(N))
        assert all(list(b) == ["patient_id", "signal", "label"] for b in out)
        torch.testing.assert_close(torch.cat([b["signal"] for b in out]), ref[0][expect],
                                   rtol=0, atol=1e-6)
        torch.testing.assert_close(torch.cat([b["label"] for b in out]), ref[1][expect])
        assert torch.cat([b["patient_id"] for b in out]).tolist() == expect


def test_ranks_key_their_samples_by_global_position():
    x, y = data()
    am = manager()
    # Without shuffling, rank r's k-th sample is sample k * world + r: keyed so, as on one
    # process, rather than k on every rank (two ranks' samples augmented alike).
    ref = am(x, y, seed=1, indices=torch.arange(N))
    for rank in (0, 1):
        sampler = DistributedSampler(TensorDataset(x, y), num_replicas=2, rank=rank,
                                     shuffle=False)
        loader = DataLoader(TensorDataset(x, y), batch_size=2, sampler=sampler)
        out = list(DeviceAugmentLoader(loader, am, seed=1))
        torch.testing.assert_close(torch.cat([s for s, _ in out]), ref[0][rank::2], rtol=0,
                                   atol=1e-6)


def test_set_epoch_reaches_a_distributed_sampler():
    x, y = data()
    ds = IndexedDataset(TensorDataset(x, y))
    sampler = DistributedSampler(ds, num_replicas=2, rank=1, shuffle=True, seed=4)
    aug = DeviceAugmentLoader(DataLoader(ds, batch_size=2, sampler=sampler), manager(),
                              indexed=True)
    aug.set_epoch(3)
    reference = DistributedSampler(ds, num_replicas=2, rank=1, shuffle=True, seed=4)
    reference.set_epoch(3)
    assert sampler.epoch == 3
    assert list(sampler) == list(reference)
    # and through a batch_sampler
    batches = torch.utils.data.BatchSampler(sampler, 2, drop_last=False)
    DeviceAugmentLoader(DataLoader(ds, batch_sampler=batches), manager()).set_epoch(6)
    assert sampler.epoch == 6


Meta = collections.namedtuple("Meta", ["record", "age"])


class WithNamedMeta(WithMeta):
    def __getitem__(self, i):
        return self.x[i], self.y[i], Meta(f"r{i}", float(i))


def test_namedtuple_metadata_rides_along():
    """default_collate keeps a namedtuple; moving it rebuilt it from one generator (a
    TypeError: a namedtuple takes its fields as arguments)."""
    x, y = data()
    am = manager()
    ref = am(x, y, seed=3, epoch=1, indices=torch.arange(N))
    out = list(DeviceAugmentLoader(DataLoader(WithNamedMeta(x, y), batch_size=3), am,
                                   seed=3, epoch=1))
    torch.testing.assert_close(torch.cat([b[0] for b in out]), ref[0], rtol=0, atol=1e-6)
    assert all(isinstance(b[2], Meta) for b in out)
    assert [r for b in out for r in b[2].record] == [f"r{i}" for i in range(N)]
    torch.testing.assert_close(torch.cat([b[2].age for b in out]),
                               torch.arange(N, dtype=torch.float64))


def test_batches_move_with_the_callers_non_blocking(monkeypatch):
    """The loader and the Trainer move batches with one helper; the loader passes its
    ``non_blocking``, the Trainer always True (its loader pins memory on CUDA)."""
    from fastecg.train import Trainer

    seen = []
    to = torch.Tensor.to

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("non_blocking"))
        return to(self, *args, **kwargs)

    x, y = data()
    monkeypatch.setattr(torch.Tensor, "to", spy)
    for flag in (False, True):
        seen.clear()
        loader = DataLoader(WithMeta(x, y), batch_size=4)
        list(DeviceAugmentLoader(loader, manager(), non_blocking=flag))
        # per batch: signal, label, the metadata's one tensor (age)
        assert seen.count(flag) >= 3 * 2 and not seen.count(not flag), (flag, seen)
    trainer = Trainer(torch.nn.Linear(1, 1), loss_fn=lambda out: out.sum(), progress=False)
    seen.clear()
    batch = trainer._prepare((x[:2], {"age": y[:2], "ids": [1, 2]}, Meta(["a", "b"], y[:2])))
    assert seen == [True, True, True]
    assert isinstance(batch[2], Meta) and batch[1]["ids"] == [1, 2]


class EpochRecorder(TensorDataset):
    """A dataset with a plain-attribute ``set_epoch``."""

    epoch = None

    def set_epoch(self, epoch):
        self.epoch = epoch


def test_set_epoch_reaches_the_dataset_through_an_indexed_dataset(tmp_path):
    """ECGStore(random_crop=True) draws its windows by the epoch the loader's set_epoch
    now forwards (it reached the samplers only, so every epoch had epoch 0's windows);
    its epoch is shared memory, so persistent workers see it. Reference: the windows of
    a second store given the epoch directly, augmented with the same keys."""
    import numpy as np

    from fastecg.data import ArrayDataset, ECGStore, write_store

    x, y = data()
    for ds in (EpochRecorder(x, y), IndexedDataset(EpochRecorder(x, y))):
        DeviceAugmentLoader(DataLoader(ds, batch_size=4), manager()).set_epoch(5)
        assert (ds.dataset if isinstance(ds, IndexedDataset) else ds).epoch == 5
    DeviceAugmentLoader(DataLoader(TensorDataset(x, y)), manager()).set_epoch(2)  # none

    records = np.random.default_rng(0).standard_normal((6, 1, 400)).astype(np.float32)
    write_store(ArrayDataset(records, fs=100.0), tmp_path, progress=False)
    store = ECGStore(tmp_path, crop=50, random_crop=True, seed=3)
    reference = ECGStore(tmp_path, crop=50, random_crop=True, seed=3)
    am = manager()
    loader = DataLoader(IndexedDataset(store), batch_size=3, num_workers=1,
                        persistent_workers=True)
    aug = DeviceAugmentLoader(loader, am, seed=7, indexed=True)
    seen = []
    for epoch in range(3):
        aug.set_epoch(epoch)
        reference.set_epoch(epoch)
        assert store.epoch == epoch
        got = torch.cat([b[0] for b in aug])
        windows = torch.stack([reference[i] for i in range(6)])
        ref = am(windows, None, seed=7, epoch=epoch, indices=torch.arange(6))[0]
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)
        seen.append(got)
    assert not torch.equal(seen[0], seen[1]) and not torch.equal(seen[1], seen[2])


def test_set_epoch_reaches_every_dataset_of_a_concat_dataset():
    # a ConcatDataset keeps its parts in .datasets: set_epoch stopped there, and stores
    # inside one drew epoch 0's windows every epoch
    from torch.utils.data import ConcatDataset, Subset

    x, y = data()
    parts = [EpochRecorder(x, y), EpochRecorder(x, y), EpochRecorder(x, y)]
    ds = IndexedDataset(ConcatDataset([parts[0], Subset(ConcatDataset(parts[1:]), [0, 1])]))
    DeviceAugmentLoader(DataLoader(ds, batch_size=4), manager()).set_epoch(4)
    assert [p.epoch for p in parts] == [4, 4, 4]
