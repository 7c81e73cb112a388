"""Peer libraries for the benchmarks and the tests that compare against them.

torch_ecg installed with ``--no-deps`` (as the benchmark environment installs it) cannot
be imported whole: its package ``__init__`` imports every subpackage (models, databases)
and their dependencies (boto3, sklearn, ...). :func:`import_torch_ecg` imports one of its
modules on its own, with empty modules standing in for the packages that module imports
but never calls.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types
from types import ModuleType
from typing import Optional, Sequence
from unittest import mock

__all__ = ["import_torch_ecg"]


class _Stubs(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Empty modules for the top-level packages in ``names``, with ``attrs`` set on them."""

    def __init__(self, attrs: dict):
        self.names: set[str] = set()
        self.attrs = attrs

    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in self.names:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = mock.MagicMock()
        module.__path__, module.__spec__, module.__name__ = [], spec, spec.name
        return module

    def exec_module(self, module):
        for key, value in self.attrs.items():
            setattr(module, key, value)


def import_torch_ecg(name: str, keep: bool = True, skip_init: Sequence[str] = (),
                     stub_attrs: Optional[dict] = None) -> Optional[ModuleType]:
    """torch_ecg's module `name` (``"torch_ecg.augmenters"``, ...), imported without
    torch_ecg's package ``__init__``, with empty modules for the top-level packages it
    imports but never calls; None where torch_ecg is not installed or `name` needs more
    than empty modules.

    `keep`: leave torch_ecg's modules and the empty ones in ``sys.modules`` (a benchmark
    process); ``False`` removes them afterwards (a test, so that later imports see the
    real packages). Real packages imported on the way stay either way: a C extension
    cannot be loaded twice. `skip_init`: torch_ecg's subpackages (``"torch_ecg.models"``)
    whose ``__init__`` is skipped too. `stub_attrs`: attributes of the empty modules
    (a decorator that must hand its function back rather than a mock).
    """
    spec = importlib.util.find_spec("torch_ecg")
    if spec is None:
        return None
    root = spec.submodule_search_locations[0]
    stubs = _Stubs(stub_attrs or {})

    def ours(key: str) -> bool:
        return key.split(".")[0] in stubs.names | {"torch_ecg"}

    sys.meta_path.append(stubs)
    try:
        for _ in range(30):
            for key in [k for k in sys.modules if ours(k)]:
                del sys.modules[key]
            for package_name in ("torch_ecg", *skip_init):
                package = types.ModuleType(package_name)
                package.__path__ = [os.path.join(root, *package_name.split(".")[1:])]
                sys.modules[package_name] = package
            try:
                return importlib.import_module(name)
            except ModuleNotFoundError as err:
                if err.name is None or err.name.split(".")[0] in stubs.names:
                    return None
                stubs.names.add(err.name.split(".")[0])
        return None
    finally:
        if not keep:
            sys.meta_path.remove(stubs)
            for key in [k for k in sys.modules if ours(k)]:
                del sys.modules[key]
