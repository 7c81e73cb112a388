"""ArrayDataset's labels: by position whatever their container, and known to split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pd = pytest.importorskip("pandas")

from fastecg.data import ArrayDataset, split  # noqa: E402

X = np.arange(6 * 2 * 5, dtype=np.float32).reshape(6, 2, 5)


def test_pandas_labels_are_taken_by_position():
    """A Series' index is not what numbers the records: record i gets the i-th value."""
    for index in (range(10, 16), [5, 4, 3, 2, 1, 0]):
        ds = ArrayDataset(X, labels=pd.Series([7, 8, 9, 10, 11, 12], index=index), fs=100.0)
        assert [int(ds[i][1]) for i in range(6)] == [7, 8, 9, 10, 11, 12]
    frame = pd.DataFrame({"a": [0, 1] * 3, "b": [1, 0] * 3}, index=range(20, 26))
    assert ArrayDataset(X, labels=frame, fs=100.0)[1][1].tolist() == [1, 0]


def test_split_stratifies_by_array_labels():
    x = np.zeros((12, 1, 4), np.float32)
    for labels in ([0] * 6 + [1] * 6, torch.tensor([0.0] * 6 + [1.0] * 6)):
        ds = ArrayDataset(x, labels=labels, fs=100.0)
        assert ds.metadata["label"].tolist() == [0] * 6 + [1] * 6
        for part in split(ds, fractions=(0.5, 0.5), seed=0):
            assert sorted(int(ds[i][1]) for i in part.indices) == [0, 0, 0, 1, 1, 1]
    multi_hot = np.zeros((12, 3), np.float32)
    multi_hot[np.arange(12), np.arange(12) % 3] = 1
    ds = ArrayDataset(x, labels=multi_hot, fs=100.0)
    assert ds.metadata["labels"].tolist() == [[i % 3] for i in range(12)]
    for part in split(ds, fractions=(0.5, 0.5), seed=0):
        assert sorted(ds.metadata["labels"].iloc[part.indices].str[0]) == [0, 0, 1, 1, 2, 2]
    # Labels that are not classes (a regression target) add no column: unstratified.
    assert "label" not in ArrayDataset(x, labels=np.linspace(0, 1, 12), fs=100.0).metadata


@pytest.mark.parametrize("class_sizes, fractions", [
    ([2] * 50, (0.8, 0.1, 0.1)), ([1] * 100, (0.7, 0.3)), ([26, 1, 1, 1, 1], (0.8, 0.1, 0.1)),
    ([300, 40, 7, 3], (0.6, 0.2, 0.2)), ([5] * 20, (0.5, 0.25, 0.25))])
def test_stratified_split_keeps_totals_and_classes_within_a_unit(class_sizes, fractions):
    """Many small classes (CinC's first labels) no longer all go to the largest subset
    (100 classes of one record split 100/0); each subset's total and its count of each
    class stay within about one unit of their shares."""
    labels = np.repeat(np.arange(len(class_sizes)), class_sizes)
    ds = ArrayDataset(np.zeros((len(labels), 1, 4), np.float32), labels=labels, fs=100.0)
    for seed in range(3):
        parts = split(ds, fractions=fractions, seed=seed)
        assert sorted(i for p in parts for i in p.indices) == list(range(len(labels)))
        share = np.asarray(fractions)
        totals = np.array([len(p) for p in parts])
        assert np.abs(totals - share * len(labels)).max() <= 1.2
        for k, size in enumerate(class_sizes):
            in_class = np.array([(labels[p.indices] == k).sum() for p in parts])
            assert np.abs(in_class - share * size).max() <= 1.2


def test_records_without_patient_ids_are_units_of_their_own_whatever_their_names():
    """Two databases with the same record names and no patient ids: by="patient" places
    each record on its own (the bare name made db1/r1 and db2/r1 one patient)."""
    x = np.arange(8, dtype=np.float32)[:, None, None] * np.ones((1, 1, 4), np.float32)
    ds = ArrayDataset(x, fs=100.0)
    ds.metadata["record"] = [f"r{i % 4}" for i in range(8)]
    ds.metadata["patient_id"] = None
    together = 0
    for seed in range(20):
        first, _ = split(ds, by="patient", stratify=False, fractions=(0.5, 0.5), seed=seed)
        assert len(first) == 4
        together += sum((i in first.indices) == (i + 4 in first.indices) for i in range(4))
    assert together < 80  # always together before: 4 pairs x 20 seeds
