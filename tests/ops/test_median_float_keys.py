"""The CPU running median ranks float32 rows by linear keys computed in float arithmetic;
at the edges of float32 range those keys must still order the samples exactly, bit for
bit against scipy.ndimage.median_filter: a row whose range overflows float32 (``v - min``
is +inf for its largest samples, all on the top key) and rows so narrow that the key
scale (2**22 - 1) / range overflows float32 (ranked with float64 keys instead)."""

import numpy as np
import pytest
import scipy.ndimage as nd
import torch

from fastecg.ops import median_filter1d

FLOAT32_MAX = float(np.finfo(np.float32).max)


def _walk(seed: int) -> np.ndarray:
    """(3, 2000) float32 random walks: ECG-like runs above and below the median."""
    return np.random.default_rng(seed).standard_normal((3, 2000)).cumsum(-1).astype(np.float32)


def _case(name: str) -> np.ndarray:
    x = _walk(0)
    if name == "range_overflows_float32":
        x = (x / np.abs(x).max() * np.float32(0.9 * FLOAT32_MAX)).astype(np.float32)
        x[0, 5], x[0, 6] = FLOAT32_MAX, -FLOAT32_MAX
        x[1, 100:140] = x[1, 99]  # ties among the huge values
    elif name == "scale_overflows_float32":
        x = (x * np.float32(1e-35)).astype(np.float32)  # range ~1e-33 < 4194303 / FLOAT32_MAX
    else:  # "subnormal": values below float32's smallest normal, range ~1e-39
        x = (x * np.float32(1e-41)).astype(np.float32)
        x[2, 300:320] = -0.0  # a run of zeros between the negative and positive subnormals
    return x


@pytest.mark.parametrize("name", ["range_overflows_float32", "scale_overflows_float32",
                                  "subnormal"])
@pytest.mark.parametrize("mode", ["constant", "nearest", "reflect"])
def test_float32_linear_keys_at_the_edges_of_the_range(name, mode):
    x = _case(name)
    assert np.isfinite(x).all()
    out = median_filter1d(torch.from_numpy(x), 101, mode=mode, backend="cpu")
    ref = nd.median_filter(x, size=(1, 101), mode=mode)
    assert out.dtype == torch.float32
    assert np.array_equal(out.numpy(), ref)
