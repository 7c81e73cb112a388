import os
import pathlib

import pytest
import torch

# Triton kernels run on the CPU only through the interpreter, which must be chosen
# before triton is first imported; on a GPU machine they run for real.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR",
                      str(pathlib.Path(__file__).resolve().parents[1] / ".inductor_cache"))

SAMPLE_DIR = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "cinc2021"


def pytest_collection_modifyitems(config, items):
    skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_cuda)


@pytest.fixture(scope="session")
def cinc_records():
    """Paths of the real CinC 2021 sample records (skips when the folder is absent)."""
    paths = sorted(SAMPLE_DIR.glob("*.hea"))
    if not paths:
        pytest.skip(f"sample records not found in {SAMPLE_DIR}")
    return [str(p.with_suffix("")) for p in paths]


@pytest.fixture
def one_thread():
    """torch on one thread for the test (``pytestmark = pytest.mark.usefixtures(
    "one_thread")``): with tiny models a parallel region costs more than the work on a
    shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
