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
