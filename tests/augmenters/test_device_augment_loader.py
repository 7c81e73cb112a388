"""DeviceAugmentLoader: batches with metadata, dict batches, distributed samplers; each
checked against the manager called on the whole data with the sample indices as keys."""

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
