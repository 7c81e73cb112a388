"""PNG plots of a ``fastecg bench`` results document (matplotlib, Agg backend): fastecg's
speed-up over each peer per workload, and, from the ``sweep`` sizes, time per call
against signal length and against the median filter's window (log-log)."""

from __future__ import annotations

import math
import pathlib
from collections import defaultdict

__all__ = ["write_plots"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in CI
    import matplotlib.pyplot as plt

    return plt


def _plain_log_labels(plt, axis) -> None:
    """"20" rather than "2 x 10^1" on a log axis; minor ticks labelled at 2 and 5 only,
    which stay legible over several decades."""
    def minor(v, _):
        mantissa = round(v / 10 ** math.floor(math.log10(v))) if v > 0 else 0
        return f"{v:g}" if mantissa in (2, 5) else ""
    axis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(plt.FuncFormatter(minor))


def _speedup_plot(plt, doc: dict, size: str, path: pathlib.Path) -> None:
    """Horizontal bars: for every fastecg candidate, its paired speed-up (median, bars
    from the 20th to the 80th percentile) over each other candidate of its workload."""
    recs = [r for r in doc["results"] if r["size"] == size and "speedup_over" in r]
    roles = {(r["op"], r["variant"], r["label"]): r["role"] for r in recs}
    bars = []
    for r in recs:
        if r["role"] != "fastecg":
            continue
        for other, ratio in r["speedup_over"].items():
            role = roles.get((r["op"], r["variant"], other))
            if role in ("peer", "approx"):
                bars.append((f"{r['op']} {r['variant']}: {r['label']}\nvs {other}", ratio,
                             role))
    if not bars:
        return
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(bars) + 1.6))
    colours = {"peer": "tab:blue", "approx": "tab:orange"}
    ys = range(len(bars))
    med = [b[1]["median"] for b in bars]
    err = [[b[1]["median"] - b[1]["p20"] for b in bars],
           [b[1]["p80"] - b[1]["median"] for b in bars]]
    ax.barh(list(ys), med, xerr=err, color=[colours[b[2]] for b in bars], capsize=3)
    ax.set_yticks(list(ys), [b[0] for b in bars], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    for y, b in zip(ys, bars):  # right of the error bar, so the two never overlap
        ax.annotate(f"{b[1]['median']:.3g}x", (max(b[1]["p80"], b[1]["median"]), y),
                    xytext=(6, 0), textcoords="offset points", va="center", fontsize=7)
    shape = "x".join(map(str, recs[0]["shape"]))
    ax.set_xlabel("speed-up of fastecg (other's time / fastecg's, paired per round; "
                  "bars: p20-p80)")
    ax.set_title(f"fastecg bench, {size} ({shape} float32) on {doc['device']}, "
                 f"{doc['threads']} threads\n{doc['machine']['cpu_model']}", fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    ax.legend(handles, ["vs SciPy/NumPy peer", "vs plain-PyTorch approximation"],
              fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _length_plot(plt, doc: dict, path: pathlib.Path) -> None:
    """One panel per workload: median time per call against samples per lead, log-log,
    one line per candidate (shaded: p20-p80)."""
    recs = [r for r in doc["results"] if r["size"].startswith("sweep_") and "median_ms" in r
            and "window" not in r["params"]]
    panels: dict = defaultdict(lambda: defaultdict(list))
    for r in recs:
        panels[f"{r['op']} {r['variant']}"][r["label"]].append(r)
    if not panels:
        return
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, (name, lines) in zip(axes.flat, panels.items()):
        for label, points in sorted(lines.items()):
            points.sort(key=lambda r: r["shape"][-1])
            n = [p["shape"][-1] for p in points]
            ax.plot(n, [p["median_ms"] for p in points], marker="o", markersize=3,
                    label=label, linestyle="--" if points[0]["role"] != "fastecg" else "-")
            ax.fill_between(n, [p["p20_ms"] for p in points], [p["p80_ms"] for p in points],
                            alpha=0.2)
        ax.set_xscale("log")
        ax.set_yscale("log")
        # the measured lengths as the ticks: log-axis minor labels collide at this width
        ticks = sorted({p["shape"][-1] for pts in lines.values() for p in pts})
        ax.set_xticks(ticks, [f"{t / 1000:g}k" if t >= 10_000 else str(t) for t in ticks],
                      fontsize=7)
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        _plain_log_labels(plt, ax.yaxis)
        ax.tick_params(axis="y", which="both", labelsize=7)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(f"samples per lead (at {recs[0]['fs']:g} Hz)", fontsize=8)
        ax.set_ylabel("time per call (ms)", fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    records, leads = recs[0]["shape"][:2]
    fig.suptitle(f"time against signal length ({records} records x {leads} leads, float32) on "
                 f"{doc['device']}, {doc['threads']} threads", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _window_plot(plt, doc: dict, path: pathlib.Path) -> None:
    """Median time per call against the median filter's window, log-log, per candidate."""
    recs = [r for r in doc["results"] if "window" in r["params"] and "median_ms" in r]
    if not recs:
        return
    lines: dict = defaultdict(list)
    for r in recs:
        lines[r["label"]].append(r)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, points in sorted(lines.items()):
        points.sort(key=lambda r: r["params"]["window"])
        w = [p["params"]["window"] for p in points]
        ax.plot(w, [p["median_ms"] for p in points], marker="o", markersize=3, label=label,
                linestyle="--" if points[0]["role"] != "fastecg" else "-")
        ax.fill_between(w, [p["p20_ms"] for p in points], [p["p80_ms"] for p in points],
                        alpha=0.2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = sorted({r["params"]["window"] for r in recs})
    ax.set_xticks(ticks, [str(t) for t in ticks], fontsize=7)
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    _plain_log_labels(plt, ax.yaxis)
    ax.tick_params(axis="y", which="both", labelsize=7)
    ax.set_xlabel(f"median filter window (samples at {recs[0]['fs']:g} Hz)", fontsize=8)
    ax.set_ylabel("time per call (ms)", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    shape = "x".join(map(str, recs[0]["shape"]))
    ax.set_title(f"one median filter against its window ({shape} float32)\non "
                 f"{doc['device']}, {doc['threads']} threads", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_plots(doc: dict, out: pathlib.Path) -> list[pathlib.Path]:
    """Writes the plots that ``doc`` has data for into ``out``; returns their paths."""
    plt = _pyplot()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for size in dict.fromkeys(r["size"] for r in doc["results"]):
        if size.startswith("sweep_"):
            continue
        path = out / f"speedup_{size}.png"
        _speedup_plot(plt, doc, size, path)
        if path.exists():
            written.append(path)
    for name, plot in (("time_vs_length.png", _length_plot),
                       ("time_vs_window.png", _window_plot)):
        path = out / name
        plot(plt, doc, path)
        if path.exists():
            written.append(path)
    return written
