"""Print the README's backbone table (markdown) from benchmarks/results/models.json.

Usage: ``python benchmarks/models_table.py [path/to/models.json]``
"""

import json
import pathlib
import sys

DEFAULT = pathlib.Path(__file__).parent / "results" / "models.json"


def _params(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.0f} k"


def table(path: pathlib.Path = DEFAULT) -> str:
    data = json.loads(pathlib.Path(path).read_text())
    rows = sorted(data["results"], key=lambda r: r["label"])
    shape = "x".join(map(str, rows[0]["shape"])) if rows else "?"
    lines = [
        f"Forward of `forward_features` on ({shape}) float32, eval mode, `no_grad`, "
        f"{data['threads']} threads, {data['device']}, torch {data['versions']['torch']}, "
        f"commit {data['commit']}, {data['date']}; median of {rows[0]['rounds'] if rows else 0} "
        f"rounds.",
    ]
    loads = [r["load_avg_1min"] for r in rows if "load_avg_1min" in r]
    if loads:
        lines[-1] += (f" The machine was shared: 1-minute load average {min(loads):.1f}-"
                      f"{max(loads):.1f} during the run.")
    lines += [
        "",
        "| backbone | params | samples/s | median ms (p20-p80) | out channels | reduction |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        rate = r.get("samples_per_s", r["shape"][0] * 1e3 / r["median_ms"])
        lines.append(f"| `{r['label']}` | {_params(r['params'])} | {rate:.1f} | "
                     f"{r['median_ms']:.0f} ({r['p20_ms']:.0f}-{r['p80_ms']:.0f}) | "
                     f"{r['out_channels']} | {r['reduction']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT))
