"""Build fastecg's compiled extension ``fastecg._C`` and map its packages.

Static metadata is in pyproject.toml (``[project]``).

The C++ kernels (csrc/ops.cpp + csrc/cpu/*.cpp) always build.  The CUDA kernels
(csrc/cuda/*.cu + their torch glue) build only when nvcc and a CUDA build of
torch are both present; ``FASTECG_CUDA=0`` or ``1`` forces the choice.
"""

import glob
import os
import shutil

import torch
from setuptools import find_packages, setup
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

HERE = os.path.dirname(os.path.abspath(__file__))


def _want_cuda() -> bool:
    forced = os.environ.get("FASTECG_CUDA")
    have = shutil.which("nvcc") is not None and torch.version.cuda is not None
    if forced == "1" and not have:
        raise RuntimeError(
            "FASTECG_CUDA=1 but the CUDA part cannot build here: it needs nvcc on PATH "
            f"and a CUDA build of torch (this torch is {torch.__version__}, "
            f"torch.version.cuda={torch.version.cuda})."
        )
    return have if forced is None else forced == "1"


def _sources(pattern: str) -> list[str]:
    return sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, pattern)))


def _extension():
    # -g0: Python's CFLAGS bring -g, which costs seconds per TU and huge objects.
    # -falign-loops=32: the hot loops are long (40-100 instructions); without it the same
    # filter loop ran up to 1.5x slower depending only on where it was placed
    # (benchmarks/CPU_NOTES.md).
    cxx_flags = ["-O3", "-std=c++20", "-fopenmp", "-g0", "-DNDEBUG", "-falign-loops=32"]
    sources = ["csrc/ops.cpp"] + _sources("csrc/cpu/*.cpp")
    if _want_cuda():
        sources += _sources("csrc/cuda/*.cu") + _sources("csrc/cuda/*.cpp")
        return CUDAExtension(
            "fastecg._C",
            sources,
            define_macros=[("FASTECG_WITH_CUDA", "1")],
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-std=c++20"]},
            extra_link_args=["-fopenmp"],
        )
    return CppExtension(
        "fastecg._C", sources, extra_compile_args={"cxx": cxx_flags}, extra_link_args=["-fopenmp"]
    )


def _packages() -> list[str]:
    # Every package under python/ and triton_kernels/ is found, so a new subpackage
    # ships without anyone editing a list (a hand-kept one left out fastecg.models).
    found = find_packages(os.path.join(HERE, "python"), include=["fastecg", "fastecg.*"])
    kernels = find_packages(os.path.join(HERE, "triton_kernels"))
    kernels = ["fastecg.triton_kernels"] + [f"fastecg.triton_kernels.{name}" for name in kernels]
    return found + kernels


# Metadata (name, version, dependencies, extras, the `fastecg` command) lives in
# pyproject.toml; this file adds what needs code: the package map and the extension.
setup(
    package_dir={"": "python", "fastecg.triton_kernels": "triton_kernels"},
    packages=_packages(),
    # The real records bundled as the default sample data (fastecg.data.bundled_records).
    package_data={"fastecg.data": ["samples/*.hea", "samples/*.mat", "samples/*.md"]},
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
