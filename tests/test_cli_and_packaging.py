"""The command line, the NumPy path's independence from torch, CUDA sources."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, check=True,
                          cwd=ROOT, env={**os.environ, "TRITON_INTERPRET": "0"}).stdout


def test_info_shows_cpu_extension_built():
    out = run("-m", "fastecg.cli", "info")
    assert "cpu     yes" in out and "torch   yes" in out
    assert "focal" in out  # registries listed


def test_info_lists_every_registry_with_its_entries():
    from fastecg import registry

    out = run("-m", "fastecg.cli", "info")
    lines = out.split("registries:\n", 1)[1].splitlines()
    registries = [registry.MODELS, registry.BACKBONES, registry.ATTN_LAYERS,
                  registry.OPTIMIZERS, registry.SCHEDULERS, registry.LOSSES,
                  registry.PREPROCESSORS, registry.AUGMENTERS, registry.SSL]
    assert len(lines) == len(registries)
    for line, reg in zip(lines, registries):
        assert line.startswith(f"  {reg.kind} ")
        assert line[len(reg.kind) + 2:].strip().split(", ") == reg.list()
    assert "non_local" in registry.ATTN_LAYERS.list()


def test_help_lists_commands():
    out = run("-m", "fastecg.cli", "--help")
    assert "info" in out and "demo" in out


def test_python_m_fastecg_is_the_command():
    import fastecg

    assert run("-m", "fastecg", "--version").split()[-1] == fastecg.__version__
    assert "pretrain" in run("-m", "fastecg", "--help")


def test_demo_runs_and_agrees_with_numpy_path():
    out = run("-m", "fastecg.cli", "demo", "--records", "4", "--repeats", "1")
    line = next(ln for ln in out.splitlines() if "max |fastecg - NumPy path|" in ln)
    assert float(line.split("=")[1]) < 1e-5
    line = next(ln for ln in out.splitlines() if "SciPy sosfiltfilt| =" in ln)
    assert float(line.split("=")[1].split()[0]) < 1e-6
    line = next(ln for ln in out.splitlines() if ln.startswith("baseline removal"))
    assert line.endswith("True")


def test_numpy_path_imports_no_torch():
    code = ("import sys, numpy as np, fastecg.numpy_path as npp, fastecg.data as d;"
            "npp.normalize(d.synthetic_ecg(1)); npp.remove_baseline(d.synthetic_ecg(1), 500.0);"
            "npp.bandpass(d.synthetic_ecg(1), 500.0); npp.BandPass(500.0, filter_type='fir')"
            "(d.synthetic_ecg(1));"
            "assert 'torch' not in sys.modules, 'torch was imported'")
    run("-c", code)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
@pytest.mark.parametrize("source", sorted((ROOT / "csrc" / "cuda").glob("*.cu")), ids=str)
def test_cuda_sources_compile(source, tmp_path):
    subprocess.run(["nvcc", "-c", "-O3", "-std=c++17", "-Xcompiler", "-fPIC", "-gencode",
                    "arch=compute_90,code=sm_90", str(source), "-o", str(tmp_path / "k.o")],
                   check=True, capture_output=True, text=True)


@pytest.mark.parametrize("module", ["fastecg", "fastecg.numpy_path", "fastecg.registry",
                                    "fastecg.data"])
def test_torch_free_modules_import_no_torch(module):
    run("-c", f"import sys, {module}; assert 'torch' not in sys.modules, 'torch was imported'")


def test_pyproject_version_is_the_package_version():
    tomllib = pytest.importorskip("tomllib")
    import fastecg

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["version"] == fastecg.__version__
    assert project["scripts"]["fastecg"] == "fastecg.cli:main"


def test_setup_finds_every_package(tmp_path):
    # The wheel ships every package with an __init__.py (a hand-kept list once left out
    # fastecg.models); egg_info lists them without compiling anything.
    run("setup.py", "-q", "egg_info", "-e", str(tmp_path))
    sources = (tmp_path / "fastecg.egg-info" / "SOURCES.txt").read_text().split()
    expected = {str(p.relative_to(ROOT)) for p in (ROOT / "python").rglob("__init__.py")}
    expected |= {str(p.relative_to(ROOT)) for p in (ROOT / "triton_kernels").rglob("*.py")}
    assert expected <= set(sources), sorted(expected - set(sources))
    assert "python/fastecg/models/backbones/resnet.py" in sources
