"""``fastecg bench``: runs the registered workloads, checks every candidate's output
against the workload's reference, times the candidates in paired rounds, and writes
``results.json``, a terminal table and PNG plots."""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import os
import pathlib
import platform
import subprocess
import time
from typing import Optional, Sequence

import numpy as np

from . import timing, workloads
from .workloads import Size, Workload

__all__ = ["BenchConfig", "run", "machine_info", "versions", "commit"]

SIZE_CHOICES = ("small", "ecg", "holter", "sweep")
# --quick: a quarter of the ecg batch (each candidate is called at least 10 times; SciPy's
# FIR and median and torch's dual avg_pool take 0.5-2.5 s a call on 64 records of a busy
# 2-core machine) and 10 min of Holter.
QUICK_SIZES = {"ecg": Size("ecg", (16, 12, 5000)),
               "holter": Size("holter", (2, 12, 500 * 600), seed=1)}


@dataclasses.dataclass
class BenchConfig:
    ops: list[str]
    device: str = "cpu"
    sizes: list[str] = dataclasses.field(default_factory=lambda: ["ecg"])
    threads: Optional[int] = None
    quick: bool = False
    out: Optional[pathlib.Path] = None

    def size_list(self) -> list[Size]:
        out: list[Size] = []
        for name in self.sizes:
            if name == "sweep":
                out += workloads.sweep_sizes(self.quick)
            elif self.quick and name in QUICK_SIZES:
                out.append(QUICK_SIZES[name])
            else:
                out.append(workloads.SIZES[name])
        return out


# ---- what the JSON says about the machine ---------------------------------------------------

def commit() -> Optional[str]:
    """The checkout's commit (``FASTECG_COMMIT`` for a copy without .git), or None.

    Examples
    --------
    >>> import os
    >>> from fastecg.bench.runner import commit
    >>> os.environ["FASTECG_COMMIT"] = "abc1234"
    >>> commit()
    'abc1234'
    >>> del os.environ["FASTECG_COMMIT"]
    """
    if os.environ.get("FASTECG_COMMIT"):
        return os.environ["FASTECG_COMMIT"]
    try:
        res = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10, cwd=pathlib.Path(__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_isa() -> Optional[str]:
    import torch

    try:
        from fastecg import _C  # noqa: F401  (registers fastecg::_cpu_isa)
    except ImportError:
        return None
    return str(torch.ops.fastecg._cpu_isa())


def _gpu_peak_gb_per_s() -> Optional[float]:
    """The device's peak memory bandwidth from its clock and bus width (DDR: 2 transfers
    per clock), where torch reports them."""
    import torch

    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    clock_khz = getattr(props, "memory_clock_rate", None)
    bus_bits = getattr(props, "memory_bus_width", None)
    if not clock_khz or not bus_bits:
        return None
    return 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9


def machine_info(device: str) -> dict:
    """What ran the benchmark: platform, CPU model, core counts, the kernels' instruction
    set, and on ``device="cuda"`` the GPU's name and peak memory bandwidth.

    Examples
    --------
    >>> from fastecg.bench.runner import machine_info
    >>> sorted(machine_info("cpu"))
    ['cpu_count', 'cpu_isa', 'cpu_model', 'cpus_allowed', 'gpu', 'gpu_peak_gb_per_s', 'machine', 'platform']
    """
    import torch

    info = {"platform": platform.platform(), "machine": platform.machine(),
            "cpu_model": _cpu_model(), "cpu_count": os.cpu_count(),
            "cpus_allowed": workloads.default_workers(), "cpu_isa": _cpu_isa(),
            "gpu": None, "gpu_peak_gb_per_s": None}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
        info["gpu_peak_gb_per_s"] = _gpu_peak_gb_per_s()
    return info


def versions() -> dict:
    """Versions of what was timed: fastecg, torch (and its CUDA), triton, NumPy, SciPy, Python.

    Examples
    --------
    >>> import fastecg
    >>> from fastecg.bench.runner import versions
    >>> v = versions()
    >>> sorted(v), v["fastecg"] == fastecg.__version__
    (['cuda', 'fastecg', 'numpy', 'python', 'scipy', 'torch', 'triton'], True)
    """
    import scipy
    import torch

    import fastecg

    out = {"fastecg": fastecg.__version__, "torch": torch.__version__,
           "cuda": torch.version.cuda, "numpy": np.__version__, "scipy": scipy.__version__,
           "python": platform.python_version(), "triton": None}
    try:  # the installed version, without importing triton (seconds, and a GPU probe)
        out["triton"] = importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        pass
    return out


# ---- one workload -------------------------------------------------------------------------

def _max_rel_error(out, ref: np.ndarray) -> float:
    out = workloads._to_numpy(out)
    if out.shape != ref.shape:
        return float("inf")
    scale = float(np.abs(ref).max()) or 1.0
    return float(np.abs(out.astype(np.float64) - ref).max() / scale)


def _run_workload(wl: Workload, x: np.ndarray, device: str, cfg: BenchConfig,
                  gpu_peak: Optional[float], log) -> list[dict]:
    import torch

    xt = torch.from_numpy(x).to(device)
    ref = wl.reference(x)
    records, calls, on_device = [], {}, {}
    for cand in wl.candidates:
        arg = x if cand.host else xt
        rec = {"op": wl.op, "variant": wl.variant, "size": wl.size.name,
               "shape": list(wl.size.shape), "fs": wl.size.fs, "params": wl.params,
               "label": cand.label, "role": cand.role,
               "device": "host" if cand.host else device, "checked": cand.checked,
               "tolerance": wl.tolerance}
        try:
            with torch.no_grad():
                out = cand.fn(arg)
            if not cand.host and device == "cuda":
                torch.cuda.synchronize()
        except (RuntimeError, ValueError, NotImplementedError) as err:
            rec["failed"] = f"{type(err).__name__}: {err}"
            records.append(rec)
            continue
        err = _max_rel_error(out, ref)
        rec["max_rel_error"] = err
        rec["within_tolerance"] = bool(err <= wl.tolerance)
        del out
        calls[cand.label] = (lambda fn=cand.fn, a=arg: fn(a))
        on_device[cand.label] = not cand.host and device == "cuda"
        records.append(rec)
    if not calls:
        return records
    with torch.no_grad():
        timed = timing.time_paired(
            calls, on_device=on_device, min_rounds=5 if cfg.quick else 10,
            budget_s=0.3 if cfg.quick else 3.0, max_rounds=30 if cfg.quick else 100)
        for rec in records:
            label = rec["label"]
            if label not in timed:
                continue
            rec.update(timed[label].summary())
            rec["gb_per_s"] = wl.bytes_moved / rec["median_ms"] / 1e6
            if gpu_peak and rec["device"] == "cuda":
                rec["fraction_of_peak_bandwidth"] = rec["gb_per_s"] / gpu_peak
            rec["speedup_over"] = {
                other: timing.paired_ratios(timed[label].seconds, timed[other].seconds)
                for other in timed if other != label}
            rec["peak_memory_bytes"] = timing.peak_memory(
                calls[label], "cuda" if on_device[label] else "cpu")
    log(f"  {wl.name} {wl.size.name} {tuple(wl.size.shape)}: " + ", ".join(
        f"{r['label']} {r['median_ms']:.3g} ms" for r in records if "median_ms" in r))
    return records


def run(cfg: BenchConfig, log=print) -> dict:
    """Runs ``cfg`` and returns the results document (see ``results.json``).

    Examples
    --------
    >>> from fastecg.bench.runner import BenchConfig, run
    >>> doc = run(BenchConfig(ops=["normalize"], sizes=["small"], quick=True),
    ...           log=lambda *args: None)                # a few seconds
    >>> doc["device"], doc["sizes"]
    ('cpu', ['small'])
    >>> sorted({result["op"] for result in doc["results"]})
    ['normalize']
    """
    import torch

    unknown = [op for op in cfg.ops if op not in workloads.names()]
    if unknown:
        raise ValueError(f"no bench workloads for {unknown}; known: {workloads.names()}")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is visible to torch")
    threads_before = torch.get_num_threads()
    threads = cfg.threads or workloads.default_workers()
    torch.set_num_threads(threads)
    pools = workloads.Pools(threads)
    started = time.perf_counter()
    try:
        gpu_peak = _gpu_peak_gb_per_s() if cfg.device == "cuda" else None
        results = []
        for size in cfg.size_list():
            x = workloads.make_input(size)
            for op in cfg.ops:
                for wl in workloads.build(op, size, cfg.device, pools):
                    results += _run_workload(wl, x, cfg.device, cfg, gpu_peak, log)
    finally:
        pools.close()
        torch.set_num_threads(threads_before)
    return {"schema": 1, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "commit": commit(), "device": cfg.device, "threads": threads,
            "quick": cfg.quick, "ops": list(cfg.ops), "sizes": list(cfg.sizes),
            "machine": machine_info(cfg.device), "versions": versions(),
            "wall_s": round(time.perf_counter() - started, 2), "results": results}


# ---- reporting ----------------------------------------------------------------------------

def _peer_ratio(rec: dict, records: Sequence[dict], role: str) -> Optional[dict]:
    """Paired speed-up of ``rec`` over the first candidate of ``role`` in its workload."""
    for other in records:
        if (other["role"] == role and other["op"] == rec["op"] and other is not rec
                and other["variant"] == rec["variant"] and other["size"] == rec["size"]
                and other["label"] in rec.get("speedup_over", {})):
            return {"label": other["label"], **rec["speedup_over"][other["label"]]}
    return None


def table_rows(doc: dict) -> list[list[str]]:
    rows = []
    for rec in doc["results"]:
        name = f"{rec['op']} {rec['variant']}"
        size = f"{rec['size']} {'x'.join(map(str, rec['shape']))}"
        if "failed" in rec:
            rows.append([name, size, rec["label"], rec["role"], "failed", "", "", "", "", "",
                         rec["failed"][:60]])
            continue
        peer = _peer_ratio(rec, doc["results"], "peer")
        approx = _peer_ratio(rec, doc["results"], "approx")
        ok = ("ok" if rec["within_tolerance"] else "FAIL") if rec["checked"] else "n/a"
        rows.append([
            name, size, rec["label"], rec["role"],
            f"{rec['median_ms']:.3g} [{rec['p20_ms']:.3g}-{rec['p80_ms']:.3g}]",
            f"{peer['median']:.2f}x" if peer else "",
            f"{approx['median']:.2f}x" if approx else "",
            f"{rec['gb_per_s']:.3g}" + (f" ({100 * rec['fraction_of_peak_bandwidth']:.0f}%)"
                                        if "fraction_of_peak_bandwidth" in rec else ""),
            f"{rec['peak_memory_bytes'] / 2 ** 20:.3g}",
            f"{rec['max_rel_error']:.1e}", ok])
    return rows


HEADER = ["workload", "size", "candidate", "role", "ms median [p20-p80]", "vs peer",
          "vs torch", "GB/s", "peak MiB", "error", "ok"]


def print_table(doc: dict, console_file=None) -> None:
    """A rich table when rich is installed, aligned plain text otherwise. "vs peer" and
    "vs torch": the SciPy/NumPy peer's (the torch approximation's) time over this
    candidate's, paired per round (above 1: this one is faster). On a GPU, GB/s is
    followed by the fraction of the device's peak memory bandwidth."""
    rows = table_rows(doc)
    title = (f"fastecg bench on {doc['device']} ({doc['machine']['cpu_model']}, "
             f"{doc['threads']} threads)")
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(str(r[i])) for r in rows + [HEADER]) for i in range(len(HEADER))]
        print(title, file=console_file)
        for r in [HEADER] + rows:
            print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip(),
                  file=console_file)
        return
    table = Table(title=title)
    for col in HEADER:
        table.add_column(col, justify="left" if col in HEADER[:4] + ["ok"] else "right")
    for r in rows:
        table.add_row(*r)
    Console(file=console_file, width=200).print(table)


def write_json(doc: dict, out: pathlib.Path) -> pathlib.Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path
