"""The torch preprocessing steps refuse what the NumPy path refuses, with a clear error."""

import numpy as np
import pytest
import torch
from scipy.interpolate import interp1d

from fastecg import numpy_path
from fastecg.preprocessors import CropOrPad, PreprocManager, Resample


@pytest.mark.parametrize("method", ["fft", "linear"])
def test_resample_refuses_integer_samples_as_the_numpy_path(method):
    # [0, 3] linearly onto 3 samples is [0, 1.5, 3]: an int16 result would hold 1.
    digital = torch.tensor([[0, 3, 0, 3]], dtype=torch.int16)
    with pytest.raises(TypeError, match="floating-point"):
        Resample(fs=4.0, dst_fs=6.0, method=method)(digital)
    with pytest.raises(TypeError, match="floating-point"):
        PreprocManager({"name": "resample", "dst_fs": 6.0, "method": method})(digital, 4.0)
    with pytest.raises(TypeError, match="floating-point"):
        numpy_path.PreprocManager({"name": "resample", "dst_fs": 6.0,
                                   "method": method})(digital.numpy(), 4.0)
    analog = digital.double()
    out = Resample(fs=4.0, dst_fs=6.0, method="linear")(analog)
    grid = np.linspace(0, 5, 4)  # fairseq-signals' interp1d grid
    ref = interp1d(grid, analog.numpy(), axis=-1)(np.arange(6))
    np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("step", [Resample(fs=500.0, dst_fs=250.0, method="fft"),
                                  CropOrPad(length=10)], ids=["Resample", "CropOrPad"])
def test_a_0d_tensor_is_a_value_error(step):
    with pytest.raises(ValueError, match=r"0-d|got shape \(\)"):
        step(torch.tensor(1.0))


def test_crop_or_pad_still_moves_integer_samples():
    digital = torch.arange(24, dtype=torch.int16).view(2, 12)
    assert torch.equal(CropOrPad(length=6)(digital), digital[:, 3:9])
