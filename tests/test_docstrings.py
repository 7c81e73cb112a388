"""Every public name (each package's ``__all__``) has a docstring: the documentation site
is generated from them (docs/, autodoc), so a missing one is a missing page entry."""

import importlib
import inspect

import pytest

PACKAGES = ["fastecg.ops", "fastecg.preprocessors", "fastecg.augmenters", "fastecg.transforms",
            "fastecg.data", "fastecg.ssl", "fastecg.train", "fastecg.models",
            "fastecg.numpy_path", "fastecg.registry", "fastecg.bench.workloads",
            "fastecg.bench.timing", "fastecg.bench.runner"]


@pytest.mark.parametrize("package", PACKAGES)
def test_public_names_have_docstrings(package):
    module = importlib.import_module(package)
    public = getattr(module, "__all__", None)
    assert public, f"{package} declares no __all__"
    missing = []
    for name in public:
        assert hasattr(module, name), f"{package}.__all__ names {name!r}, which it lacks"
        obj = getattr(module, name)
        if (inspect.isclass(obj) or inspect.isroutine(obj)) and not (obj.__doc__ or "").strip():
            missing.append(name)
    assert not missing, f"{package}: no docstring for {missing}"
