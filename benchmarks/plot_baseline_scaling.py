"""Plot benchmarks/results/baseline.json's scaling sweeps (log-log) to
benchmarks/results/baseline_scaling.png. Needs matplotlib (a benchmark-only extra)."""

import json
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = pathlib.Path(__file__).parent / "results"


def main() -> None:
    records = json.loads((RESULTS / "baseline.json").read_text())["results"]
    fig, (ax_w, ax_n) = plt.subplots(1, 2, figsize=(10, 4))
    for impl in ("fastecg", "scipy_1d"):
        pts = sorted((r["window"], r["median_ms"]) for r in records
                     if r["group"] == "baseline scaling window" and r.get("impl") == impl)
        if pts:
            ax_w.loglog(*zip(*pts), "o-", label=impl)
    ax_w.set(xlabel="window (samples)", ylabel="ms, (96, 5000) rows, one median stage",
             title="time vs window")
    ax_w.legend()
    pts = sorted((r["n_samples"], r["median_ms"]) for r in records
                 if r["group"] == "baseline scaling length")
    if pts:
        ax_n.loglog(*zip(*pts), "o-", label="fastecg dual median")
        n1, t1 = pts[-1]  # anchor the linear guide at the longest signal (least overhead)
        ax_n.loglog([p[0] for p in pts], [t1 * p[0] / n1 for p in pts], "k--", label="linear")
    ax_n.set(xlabel="samples per lead (12 leads)", ylabel="ms", title="time vs length")
    ax_n.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "baseline_scaling.png", dpi=100)


if __name__ == "__main__":
    main()
