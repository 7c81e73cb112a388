"""HDF5Dataset on a small CODE-15%-style file (skipped without h5py)."""

import numpy as np
import pytest
import torch

h5py = pytest.importorskip("h5py")
pytest.importorskip("pandas")

from fastecg.data import ECGStore, HDF5Dataset, write_store  # noqa: E402


def test_code15_style_file(tmp_path):
    rng = np.random.default_rng(0)
    tracings = rng.standard_normal((4, 4096, 12)).astype(np.float32)
    tracings[3] = 0  # CODE-15% ends each part with a blank row of id 0
    path = tmp_path / "exams_part0.hdf5"
    with h5py.File(path, "w") as f:
        f["tracings"] = tracings
        f["exam_id"] = np.array([11, 12, 13, 0])
    ds = HDF5Dataset(path, labels=np.array([0, 1, 1, 0]))
    assert len(ds) == 3 and ds.metadata["record"].tolist() == ["11", "12", "13"]
    assert str(ds.metadata["record"].dtype) == "str"
    x, y = ds[1]
    np.testing.assert_array_equal(x.numpy(), tracings[1].T)
    assert y.item() == 1
    resampled = HDF5Dataset(path, target_fs=500.0, siglen=5000)
    assert resampled[0].shape == (12, 5000)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2)
    assert next(iter(loader))[0].shape == (3, 12, 4096)
    write_store(ds, tmp_path / "store", progress=False)
    torch.testing.assert_close(ECGStore(tmp_path / "store")[2][0], ds[2][0])
    with pytest.raises(ValueError, match="lead names"):
        HDF5Dataset(path, lead_names=["I", "II"])


def test_labels_by_position_and_classes_for_split(tmp_path):
    path = tmp_path / "part.hdf5"
    with h5py.File(path, "w") as f:
        f["tracings"] = np.zeros((4, 16, 12), np.float32)
        f["exam_id"] = np.array([5, 6, 7, 0])
    pd = pytest.importorskip("pandas")
    ds = HDF5Dataset(path, labels=pd.Series([1, 0, 1, 0], index=[3, 2, 1, 0]))
    assert [int(ds[i][1]) for i in range(3)] == [1, 0, 1]
    assert ds.metadata["label"].tolist() == [1, 0, 1]


def test_string_ids_and_bad_arguments(tmp_path):
    """Ids stored as strings (h5py reads bytes) name the records as text, none left out;
    an ids array that is missing or of another length than the records, and a scale that
    is not a finite non-zero number, are ValueErrors before any read."""
    rng = np.random.default_rng(1)
    path = tmp_path / "named.hdf5"
    with h5py.File(path, "w") as f:
        f["tracings"] = rng.standard_normal((3, 400, 12)).astype(np.float32)
        f["exam_id"] = np.array([b"a1", b"0", b"c3"])
        f["short"] = np.array([1, 2])
    ds = HDF5Dataset(path, fs=500.0)
    assert ds.metadata["record"].tolist() == ["a1", "0", "c3"]
    with pytest.raises(ValueError, match="one id per record"):
        HDF5Dataset(path, ids="short")
    with pytest.raises(ValueError, match="no dataset 'nope'"):
        HDF5Dataset(path, ids="nope")
    for scale in (float("nan"), float("inf"), 0.0):
        with pytest.raises(ValueError, match="scale"):
            HDF5Dataset(path, scale=scale)


def test_output_rate_and_length_are_checked(tmp_path):
    """A negative siglen would slice the record's end off ([..., :-5]); it, a zero or
    fractional one, and a rate that is not positive are ValueErrors before any read.
    Valid ones crop the resampled record as scipy's resample_poly does."""
    import scipy.signal

    path = tmp_path / "part.hdf5"
    x = np.random.default_rng(2).standard_normal((2, 400, 12)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f["tracings"] = x
        f["exam_id"] = np.array([1, 2])
    for siglen in (-5, 0, 50.5):
        with pytest.raises(ValueError, match="siglen must be a positive integer"):
            HDF5Dataset(path, siglen=siglen)
    for rate in (0.0, -400.0, float("nan")):
        with pytest.raises(ValueError, match="target_fs must be a positive number"):
            HDF5Dataset(path, target_fs=rate)
    sig = HDF5Dataset(path, target_fs=200.0, siglen=150.0)[1]
    expected = scipy.signal.resample_poly(x[1].T.astype(np.float64), 1, 2, axis=-1)[:, :150]
    assert sig.shape == (12, 150)
    np.testing.assert_allclose(sig.numpy(), expected, atol=1e-4 * np.abs(expected).max())
