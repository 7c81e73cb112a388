"""Build fastecg and its compiled extension ``fastecg._C``.

The C++ kernels (csrc/ops.cpp + csrc/cpu/*.cpp) always build.  The CUDA kernels
(csrc/cuda/*.cu + their torch glue) build only when nvcc and a CUDA build of
torch are both present; ``FASTECG_CUDA=0`` or ``1`` forces the choice.
"""

import glob
import os
import shutil

import torch
from setuptools import setup
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
    # -falign-loops=32: the hot loops are long (40-100 instructions); on Zen 3 the same
    # 4-section filter loop measured 8.5 or 13 cycles a step depending only on where
    # it was placed (csrc/cpu/sosfilt.cpp, pass_direct1).
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


setup(
    name="fastecg",
    version="0.1.0",
    description="Compiled-kernel acceleration for ECG deep learning in PyTorch",
    package_dir={"fastecg": "python/fastecg", "fastecg.triton_kernels": "triton_kernels"},
    packages=[
        "fastecg",
        "fastecg.ops",
        "fastecg.preprocessors",
        "fastecg.numpy_path",
        "fastecg.data",
        "fastecg.train",
        "fastecg.triton_kernels",
    ],
    python_requires=">=3.10",
    install_requires=["torch>=2.6", "numpy>=1.24", "scipy>=1.15"],
    extras_require={
        "triton": ["triton>=3.2"],
        "test": ["pytest>=8", "pytest-benchmark>=4"],
        "benchmark": ["pytest-benchmark>=4", "bottleneck"],
    },
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    entry_points={"console_scripts": ["fastecg=fastecg.cli:main"]},
)
