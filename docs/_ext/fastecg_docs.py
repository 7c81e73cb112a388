"""Sphinx extension: the parts of the fastecg site that are generated at build time.

``.. fastecg-registry:: NAME``
    A table of every entry of ``fastecg.registry.NAME`` (a :class:`~fastecg.registry.Registry`
    instance, e.g. ``BACKBONES``), or of ``RECIPES`` (``fastecg.transforms.recipes``): its
    name, the object it builds and the first paragraph of that object's docstring. With
    ``:parameters:``, each entry is built with its default arguments for 12 leads and its
    parameter count is shown. Entries registered later appear without editing a page,
    and the build warns (an error under ``-W``) if a registry of ``fastecg.registry`` is
    on no page at all.

Footnotes of docstrings
    numpydoc References are numbered footnotes (``.. [1]``, cited as ``[1]_``); two
    documented objects on one page would define ``[1]`` twice. Each object's labels are
    made its own (``[#fastecg-ssl-STMEM-1]``), rendered with the same numbers.

Op figures
    At ``builder-inited``, :data:`FIGURES` draws each op's before/after figure on a
    bundled real record (``fastecg.data.bundled_records``) with matplotlib into
    ``docs/_generated/`` (git-ignored), where the op pages include them from. Each
    figure also plots the difference to the op's SciPy reference where there is one.
"""

from __future__ import annotations

import inspect
import pathlib
import re

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.errors import ExtensionError
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

GENERATED = pathlib.Path(__file__).resolve().parents[1] / "_generated"
RECORD = "E07506"  # a bundled record with visible baseline wander and no flat edges
LEAD = "II"
N_LEADS = 12

# -- registry tables ---------------------------------------------------------------

_CITATION = re.compile(r"\s*\[[\w#*]+\]_")
SUMMARY_CHARS = 200


def summary(obj) -> str:
    """First paragraph of `obj`'s docstring on one line (its first sentence if the
    paragraph is long), citations (``[1]_``) removed (their targets are not on the
    registry page)."""
    doc = inspect.getdoc(obj) or ""
    paragraph = doc.strip().split("\n\n", 1)[0]
    text = _CITATION.sub("", " ".join(line.strip() for line in paragraph.splitlines()))
    sentence_end = re.search(r"\.\s+(?=[A-Z])", text)
    if len(text) > SUMMARY_CHARS and sentence_end:  # torch's long first paragraphs
        text = text[:sentence_end.start() + 1]
    return text or "(no docstring)"


def qualified_name(obj) -> str:
    """``module.QualName`` of `obj`; only the module for a factory made in a function."""
    module, qualname = getattr(obj, "__module__", "?"), getattr(obj, "__qualname__", "")
    return module if not qualname or "<locals>" in qualname else f"{module}.{qualname}"


def _registries():
    import fastecg.registry as registry

    return {name: getattr(registry, name) for name in registry.__all__
            if isinstance(getattr(registry, name), registry.Registry)}


def _entries(name: str):
    """``[(entry name, object)]`` of a registry of fastecg.registry, or of RECIPES."""
    if name == "RECIPES":
        from fastecg.transforms.recipes import RECIPES

        return sorted(RECIPES.items())
    registries = _registries()
    if name not in registries:
        raise ValueError(f"fastecg-registry: no registry {name!r} in fastecg.registry "
                         f"(registries: {', '.join(sorted(registries))}, and RECIPES)")
    reg = registries[name]
    return [(entry, reg.get(entry)) for entry in reg.list()]


def parameter_count(registry: str, entry: str) -> int:
    """Parameters of ``registry``'s ``entry`` built with its defaults for 12 leads."""
    model = _registries()[registry].build(entry, in_channels=N_LEADS)
    return sum(p.numel() for p in model.parameters())


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n:,}"


class RegistryTable(SphinxDirective):
    """``.. fastecg-registry:: BACKBONES`` (options: ``:parameters:``)."""

    required_arguments = 1
    option_spec = {"parameters": directives.flag}

    def run(self):
        name = self.arguments[0]
        try:
            entries = _entries(name)
        except (ValueError, ImportError) as err:
            raise self.error(str(err)) from err
        self.env.fastecg_registries_shown = getattr(self.env, "fastecg_registries_shown", {})
        self.env.fastecg_registries_shown.setdefault(self.env.docname, set()).add(name)
        counted = "parameters" in self.options
        header = ["Name", "Parameters (12 leads)", "Summary"] if counted else ["Name", "Summary"]
        widths = "18 14 68" if counted else "20 80"
        lines = [".. list-table::", "   :header-rows: 1", f"   :widths: {widths}", ""]
        lines += ["   * - " + header[0]] + [f"     - {h}" for h in header[1:]]
        for entry, obj in entries:
            lines.append(f"   * - ``{entry}``")
            if counted:
                lines.append(f"     - {_millions(parameter_count(name, entry))}")
            lines.append(f"     - {summary(obj)} (``{qualified_name(obj)}``)")
        node = nodes.container(classes=["fastecg-registry"])
        self.state.nested_parse(StringList(lines, source=f"<fastecg-registry {name}>"),
                                self.content_offset, node)
        return [node]


def _purge(app, env, docname):
    getattr(env, "fastecg_registries_shown", {}).pop(docname, None)


def _merge(app, env, docnames, other):
    shown = getattr(env, "fastecg_registries_shown", {})
    shown.update(getattr(other, "fastecg_registries_shown", {}))
    env.fastecg_registries_shown = shown


def _always_reread(app, env, added, changed, removed):
    # The tables come from the code, not the page: re-read their pages on every build.
    return sorted(getattr(env, "fastecg_registries_shown", {}))


def _check_every_registry_shown(app, env):
    shown = set().union(*getattr(env, "fastecg_registries_shown", {}).values())
    missing = sorted(set(_registries()) - shown)
    if missing:
        logger.warning("registries on no documentation page (add a fastecg-registry "
                       "directive): %s", ", ".join(missing))


# -- docstring footnotes ------------------------------------------------------------

_FOOTNOTE = re.compile(r"(\.\. |)\[(\d+)\](_?)")


def _own_footnotes(app, what, name, obj, options, lines):
    key = re.sub(r"[^\w]+", "-", name)

    def label(m):
        definition, number, cite = m.groups()
        if not (definition or cite):  # "[1]" in plain text, not a footnote
            return m.group(0)
        return f"{definition}[#{key}-{number}]{cite}"

    lines[:] = [_FOOTNOTE.sub(label, line) for line in lines]


# -- op figures --------------------------------------------------------------------


def _record():
    import numpy as np
    import torch

    from fastecg.data import bundled_records
    from fastecg.data.wfdb import load_cinc_record

    paths = [p for p in bundled_records() if pathlib.Path(p).name == RECORD]
    if not paths:
        raise RuntimeError(f"bundled record {RECORD} not found in {bundled_records()}")
    signal, header = load_cinc_record(paths[0])
    lead = header["lead_names"].index(LEAD)
    return torch.from_numpy(np.ascontiguousarray(signal)), float(header["fs"]), lead


def _axes(n_rows, height=2.3):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(n_rows, 1, figsize=(9, height * n_rows), sharex=True,
                             squeeze=False, layout="constrained")
    return fig, axes[:, 0]


def _title(fs):
    return f"PhysioNet/CinC 2021 record {RECORD}, lead {LEAD}, {fs:g} Hz"


def _error_panel(ax, t, ours, ref, what):
    """fastecg's float32 output minus the float64 SciPy reference, in units of the
    reference's peak (the tolerance's unit on the op pages)."""
    import numpy as np

    err = (ours.double().numpy() - ref) / np.abs(ref).max()
    ax.plot(t, err, color="C3", lw=0.8,
            label=f"fastecg (float32) - {what} (float64); max {np.abs(err).max():.1e}")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    ax.set(xlabel="time (s)", ylabel="error / peak |x|")
    ax.legend(loc="upper right")


def _bandpass(path):
    import numpy as np
    from scipy import signal

    import fastecg.ops as ops

    x, fs, lead = _record()
    y = ops.bandpass(x, fs, 0.5, 45.0)
    sos = signal.butter(4, [0.5, 45.0], btype="bandpass", fs=fs, output="sos")
    ref = signal.sosfiltfilt(sos, x.double().numpy(), padtype="odd")
    t = np.arange(x.shape[-1]) / fs
    fig, (top, bottom) = _axes(2)
    top.plot(t, x[lead], color="0.6", lw=0.8, label="raw")
    top.plot(t, y[lead], color="C0", lw=0.8, label="bandpass 0.5-45 Hz, order 4")
    top.set(ylabel="mV", title=_title(fs))
    top.legend(loc="upper right")
    _error_panel(bottom, t, y[lead], ref[lead], "scipy.signal.sosfiltfilt")
    fig.savefig(path, dpi=110)


def _baseline(path):
    import numpy as np

    import fastecg.ops as ops

    x, fs, lead = _record()
    y = ops.remove_baseline(x, fs)
    t = np.arange(x.shape[-1]) / fs
    fig, (top, bottom) = _axes(2)
    top.plot(t, x[lead], color="0.6", lw=0.8, label="raw")
    top.plot(t, (x - y)[lead], color="C1", lw=1.5, label="baseline: median 0.2 s, then 0.6 s")
    top.set(ylabel="mV", title=_title(fs))
    top.legend(loc="upper right")
    bottom.plot(t, y[lead], color="C0", lw=0.8, label="raw - baseline")
    bottom.axhline(0.0, color="0.8", lw=0.8)
    bottom.set(xlabel="time (s)", ylabel="mV")
    bottom.legend(loc="upper right")
    fig.savefig(path, dpi=110)


def _normalize(path):
    import numpy as np

    import fastecg.ops as ops

    x, fs, lead = _record()
    y = ops.normalize(x, "z-score", per_channel=True)
    t = np.arange(x.shape[-1]) / fs
    fig, (top, bottom) = _axes(2)
    for k, name in ((0, "I"), (lead, LEAD), (7, "V2")):
        top.plot(t, x[k], lw=0.7, label=f"lead {name}")
        bottom.plot(t, y[k], lw=0.7, label=f"lead {name}")
    top.set(ylabel="mV", title=f"PhysioNet/CinC 2021 record {RECORD}, three leads, {fs:g} Hz")
    top.legend(loc="upper right", ncols=3)
    bottom.set(xlabel="time (s)", ylabel="z-score (unitless)")
    bottom.legend(loc="upper right", ncols=3, title="normalize(x, 'z-score', per_channel=True)")
    fig.savefig(path, dpi=110)


def _resample(path):
    import numpy as np
    from scipy import signal

    import fastecg.ops as ops

    x, fs, lead = _record()
    fs_out = 360.0
    y = ops.resample(x, fs_in=fs, fs_out=fs_out)
    ref = signal.resample_poly(x.double().numpy(), 18, 25, axis=-1)
    t_in = np.arange(x.shape[-1]) / fs
    t_out = np.arange(y.shape[-1]) / fs_out
    start, stop = 1.70, 1.95  # a QRS complex: where the samples of both rates differ most
    window = (t_in >= start) & (t_in < stop)
    window_out = (t_out >= start) & (t_out < stop)
    fig, (top, bottom) = _axes(2)
    top.plot(t_in[window], x[lead][window], "o", color="0.6", ms=5, label=f"{fs:g} Hz")
    top.plot(t_out[window_out], y[lead][window_out], ".-", color="C0", ms=3, lw=0.6,
             label=f"resampled to {fs_out:g} Hz (up 18, down 25)")
    top.set(ylabel="mV", title=_title(fs) + f", {stop - start:g} s shown")
    top.legend(loc="upper right")
    _error_panel(bottom, t_out[window_out], y[lead][window_out], ref[lead][window_out],
                 "scipy.signal.resample_poly")
    fig.savefig(path, dpi=110)


def _masking(path):
    import numpy as np
    import torch

    import fastecg.ops as ops

    x, fs, lead = _record()
    patch = 50
    out = ops.patch_mask(x[None], patch, 0.75, generator=torch.Generator().manual_seed(0))
    masked = out.mask[0].bool().numpy()
    t = np.arange(x.shape[-1]) / fs
    fig, (top,) = _axes(1, height=2.8)
    kept = np.where(np.repeat(masked, patch), np.nan, x[lead].numpy())
    top.plot(t, x[lead], color="0.55", lw=0.6)
    top.plot(t, kept, color="C0", lw=0.9, label="kept patches (encoded)")
    for token in np.flatnonzero(masked):
        top.axvspan(token * patch / fs, (token + 1) * patch / fs, color="0.85", lw=0)
    top.plot([], [], color="0.85", lw=6, label="masked patches (reconstructed)")
    top.set(xlabel="time (s)", ylabel="mV",
            title=f"patch_mask: {patch}-sample patches, mask ratio 0.75 ({RECORD}, lead {LEAD})")
    top.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncols=2)
    fig.savefig(path, dpi=110)


def _augmentation(path):
    import numpy as np
    import torch

    from fastecg.augmenters import AugmenterManager

    x, fs, lead = _record()
    t = np.arange(x.shape[-1]) / fs
    steps = [("baseline_wander", {"prob": 1.0}), ("powerline_noise", {"prob": 1.0}),
             ("stretch_compress", {"prob": 1.0}), ("vcg_rotation", {"prob": 1.0}),
             ("random_masking", {"prob": 1.0})]
    fig, axes = _axes(len(steps), height=1.7)
    for ax, (name, kwargs) in zip(axes, steps):
        am = AugmenterManager({"name": name, **kwargs}, fs=fs)
        y = am(x[None].clone(), seed=0, indices=torch.tensor([0]))[0][0]
        ax.plot(t, x[lead], color="0.65", lw=0.7, label="record")
        ax.plot(t, y[lead], color="C0", lw=0.8, label=f"{name} (seed 0)")
        ax.set(ylabel="mV")
        ax.legend(loc="upper right", fontsize=8)
    axes[0].set_title(_title(fs) + ": one augmenter a row, prob 1")
    axes[-1].set(xlabel="time (s)")
    fig.savefig(path, dpi=110)


FIGURES = {"bandpass": _bandpass, "baseline": _baseline, "normalize": _normalize,
           "resample": _resample, "patch_mask": _masking,
           "augmentation": _augmentation}


def _draw_figures(app):
    try:
        import matplotlib
    except ImportError as err:
        raise ExtensionError("the op pages' figures are drawn with matplotlib: pip install "
                             "matplotlib (or the docs extra)") from err

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    GENERATED.mkdir(exist_ok=True)
    for name, draw in FIGURES.items():
        draw(GENERATED / f"{name}.png")
        plt.close("all")


def setup(app):
    app.add_directive("fastecg-registry", RegistryTable)
    app.connect("builder-inited", _draw_figures)
    app.connect("autodoc-process-docstring", _own_footnotes)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.connect("env-get-outdated", _always_reread)
    app.connect("env-check-consistency", _check_every_registry_shown)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
