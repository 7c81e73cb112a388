"""Sphinx configuration: API pages from the numpydoc docstrings (autodoc + napoleon).

Built with ``sphinx-build -b html docs docs/_build/html -W`` (warnings are errors) or
``make -C docs html``.
"""

import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))  # the checkout's package, built in place
# fastecg_docs: registry tables and op figures generated at build time (docs/_ext).
sys.path.insert(0, str(ROOT / "docs" / "_ext"))
# Triton kernels import on a machine without a GPU only under the CPU interpreter.
os.environ.setdefault("TRITON_INTERPRET", "1")

import fastecg  # noqa: E402

project = "fastecg"
author = "fastecg developers"
copyright = "fastecg developers"
version = release = fastecg.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",   # numpydoc sections (Parameters, Returns, Raises, Notes, ...)
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "fastecg_docs",
]
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"show-inheritance": False}
exclude_patterns = ["_build", "_generated"]

try:
    import furo  # noqa: F401

    html_theme = "furo"
except ImportError:  # the docs extra installs it; alabaster ships with Sphinx
    html_theme = "alabaster"
html_title = f"fastecg {release}"

# numpydoc types that name a class exported twice (fastecg.preprocessors and
# fastecg.numpy_path both have a PreprocManager): which one the docstrings mean.
napoleon_preprocess_types = True
napoleon_type_aliases = {"PreprocManager": "~fastecg.preprocessors.PreprocManager"}
# numpydoc References sections list works the text need not cite.
suppress_warnings = ["ref.footnote"]
# TransformManager documents its call in a "Calling" section: render it as Notes are.
napoleon_custom_sections = [("Calling", "Notes")]
