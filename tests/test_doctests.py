"""Every ``>>>`` example in the package runs as a doctest and passes.

The examples are the documentation's (docs/, autodoc renders them), so one that fails is
a page that lies. Every ``.py`` module under ``python/fastecg`` is collected, whoever
owns it; none is skipped. Each docstring's examples run in a copy of their module's
globals, after ``torch.manual_seed(0)`` and ``numpy.random.seed(0)``, with ``ELLIPSIS``
(``...`` stands for the digits of a float that would be brittle to spell out) and
``NORMALIZE_WHITESPACE``.
"""

import doctest
import importlib
import io
import pathlib
import re

import numpy as np
import pytest
import torch

import fastecg

PACKAGE_DIR = pathlib.Path(fastecg.__file__).resolve().parent
OPTIONFLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
PROMPT = re.compile(r"^\s*>>> ", re.MULTILINE)


def _module_names():
    names = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


MODULES = _module_names()


def test_collects_every_module():
    # The list is built from the files, not from imports, so a module that fails to
    # import fails its own test below instead of vanishing from the list.
    assert "fastecg" in MODULES and "fastecg.models.backbones.resnet" in MODULES
    assert len(MODULES) == len(list(PACKAGE_DIR.rglob("*.py")))


@pytest.mark.parametrize("name", MODULES)
def test_examples(name):
    module = importlib.import_module(name)
    tests = doctest.DocTestFinder(exclude_empty=True).find(module, name)
    runner = doctest.DocTestRunner(optionflags=OPTIONFLAGS)
    report = io.StringIO()
    ran = 0
    for test in sorted(tests, key=lambda t: t.lineno or 0):
        torch.manual_seed(0)
        np.random.seed(0)
        ran += runner.run(test, out=report.write, clear_globs=True).attempted
    assert runner.failures == 0, f"{runner.failures} failing example(s) in {name}:\n" \
                                 f"{report.getvalue()}"
    # A prompt the finder does not reach (a nested function's docstring, a string that is
    # not a docstring) would never run: every ">>>" in the file must be one that ran.
    source = pathlib.Path(module.__file__).read_text()
    assert ran == len(PROMPT.findall(source)), (
        f"{name}: {len(PROMPT.findall(source))} '>>>' prompts in the file, {ran} ran as "
        f"doctests; move the others into a docstring the doctest finder reaches")
