"""``fastecg bench``: a --quick run on the small size writes results.json (machine,
versions, every timing) and the plots, every checked output within its tolerance; an
op registered later appears without editing the command; every bad argument ends in an
argparse message and exit status 2, never a traceback.

The runs are in-process with one thread: on a busy 2-core machine two OpenMP threads
spin-wait each other (see benchmarks/README.md), and the test times nothing it asserts.
"""

from __future__ import annotations

import json
import os
import pathlib
import random
import subprocess
import sys

import numpy as np
import pytest

from fastecg import cli
from helpers import assert_usage_error
from fastecg.bench import command, workloads

ROOT = pathlib.Path(__file__).resolve().parents[1]
BUILTIN_OPS = ["normalize", "bandpass", "baseline", "resample", "mae_mask"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    code = cli.main(["bench", "--quick", "--sizes", "small", "--threads", "1",
                     "--ops", ",".join(BUILTIN_OPS), "--out", str(out)])
    return code, out, json.loads((out / "results.json").read_text())


def test_quick_run_passes_and_records_every_timing(quick_run):
    code, _, doc = quick_run
    assert code == 0  # every checked candidate within its op's tolerance
    for key in ("date", "commit", "device", "threads", "machine", "versions", "results"):
        assert key in doc, key
    assert doc["device"] == "cpu" and doc["threads"] == 1
    for key in ("cpu_model", "cpu_count", "cpu_isa", "platform", "gpu"):
        assert key in doc["machine"], key
    assert doc["machine"]["cpu_isa"] in ("generic", "avx2", "avx512")
    for key in ("fastecg", "torch", "triton", "numpy", "scipy", "python"):
        assert key in doc["versions"], key
    assert {r["op"] for r in doc["results"]} == set(BUILTIN_OPS)
    variants = {(r["op"], r["variant"]) for r in doc["results"]}
    assert {("bandpass", "iir"), ("bandpass", "fft"), ("bandpass", "fir"),
            ("baseline", "median"), ("baseline", "mean")} <= variants
    for op, variant in variants:
        roles = {r["role"] for r in doc["results"] if (r["op"], r["variant"]) == (op, variant)}
        assert {"fastecg", "peer"} <= roles, (op, variant, roles)
    for r in doc["results"]:
        assert "failed" not in r, r
        assert r["rounds"] >= 5 and 0 < r["p20_ms"] <= r["median_ms"] <= r["p80_ms"], r
        assert r["peak_memory_bytes"] >= 0 and r["gb_per_s"] > 0
        assert np.isfinite(r["max_rel_error"])
        if r["checked"]:
            assert r["within_tolerance"] and r["max_rel_error"] <= r["tolerance"], r
        others = {o["label"] for o in doc["results"] if (o["op"], o["variant"]) ==
                  (r["op"], r["variant"]) and o is not r}
        assert set(r["speedup_over"]) == others
        for ratio in r["speedup_over"].values():
            assert ratio["p20"] <= ratio["median"] <= ratio["p80"]
    exact = [r for r in doc["results"] if r["variant"] == "median" or r["op"] == "mae_mask"]
    assert exact and all(r["max_rel_error"] == 0 for r in exact)  # bit-for-bit


def test_quick_run_writes_plots(quick_run):
    pytest.importorskip("matplotlib")
    _, out, _ = quick_run
    png = out / "speedup_small.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plain_text_table_without_rich(quick_run, monkeypatch, capsys):
    from fastecg.bench import runner

    _, _, doc = quick_run
    monkeypatch.setitem(sys.modules, "rich", None)  # import rich... raises ImportError
    monkeypatch.setitem(sys.modules, "rich.console", None)
    runner.print_table(doc)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:3] == ["workload", "size", "candidate"]
    assert len(lines) == 2 + len(doc["results"])


def test_an_op_registered_later_appears_without_editing_the_command(tmp_path, monkeypatch):
    monkeypatch.setattr(workloads, "_BUILDERS", dict(workloads._BUILDERS))

    @workloads.register("toy_scale")
    def _toy(size, device, pools):
        return [workloads.Workload(
            "toy_scale", "x2", size,
            [workloads.Candidate("fastecg_torch", lambda x: x * 2, "fastecg"),
             workloads.Candidate("numpy", lambda x: x * np.float32(2), "peer", host=True)],
            lambda x: x.astype(np.float64) * 2, tolerance=0.0)]

    with pytest.raises(ValueError, match="already registered"):
        workloads.register("toy_scale")(_toy)
    assert "toy_scale" in workloads.names()
    assert cli.main(["bench", "--quick", "--sizes", "small", "--threads", "1",
                     "--ops", "toy_scale", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "results.json").read_text())
    assert [r["label"] for r in doc["results"]] == ["fastecg_torch", "numpy"]


# ---- bad arguments ------------------------------------------------------------------------

@pytest.fixture
def stub_bench(monkeypatch):
    """Replaces the run by a check that its arguments are safe to run with."""
    seen = []

    def check(args):
        assert args.ops is None or (args.ops and set(args.ops) <= set(workloads.names()))
        assert args.sizes and set(args.sizes) <= set(command.SIZE_NAMES)
        assert args.threads is None or (isinstance(args.threads, int)
                                        and 1 <= args.threads <= command.MAX_THREADS)
        assert args.device in ("cpu", "cuda")
        assert not pathlib.Path(args.out).exists() or pathlib.Path(args.out).is_dir()
        seen.append(args)
        return 0

    monkeypatch.setattr(command, "run_command", check)
    return seen


NOT_NUMBERS = ["", " ", "abc", "nan", "inf", "1e400", "0x10", "1,5", "None", "--", "\x00", "½"]
BAD = {
    "--ops": ["", "bogus", "normalize,bogus", "normalize,", ",", "Normalize", "bandpass iir",
              "normalize;bandpass", "\x00", "½"],
    "--sizes": ["", "huge", "ecg,", "ECG", "small,huge", "1", "sweep ecg", "\x00"],
    "--threads": ["0", "-1", "1.5", "2.0", "1e3", "4097", "9" * 30, *NOT_NUMBERS],
    "--device": ["", "gpu", "CUDA", "cuda:0", "mps", "cpu,cuda"],
}


@pytest.mark.parametrize("option,value",
                         [(opt, v) for opt, values in BAD.items() for v in values],
                         ids=lambda v: repr(v)[:20])
def test_bad_value_is_a_usage_error(capsys, stub_bench, option, value):
    err = assert_usage_error(capsys, ["bench", option, value])
    assert "fastecg bench" in err
    assert stub_bench == []


def test_out_that_is_a_file_is_a_usage_error(capsys, stub_bench, tmp_path):
    path = tmp_path / "a_file"
    path.write_text("")
    err = assert_usage_error(capsys, ["bench", "--out", str(path)])
    assert "--out" in err and stub_bench == []


@pytest.mark.parametrize("where", ["under_a_file", "proc"])
def test_out_that_cannot_be_created_is_a_usage_error_before_any_run(capsys, stub_bench,
                                                                     tmp_path, where):
    """A folder that cannot be made or written ends in a usage error before any benchmark
    runs (the stub would record it), not in a traceback after all of them."""
    if where == "proc":
        if not pathlib.Path("/proc/self").is_dir():
            pytest.skip("no /proc on this system")
        out = "/proc/nope"
    else:
        (tmp_path / "a_file").write_text("")
        out = str(tmp_path / "a_file" / "results")
    err = assert_usage_error(capsys, ["bench", "--ops", "normalize", "--sizes", "small",
                                      "--out", out])
    assert f"--out {out}: cannot write there" in err and stub_bench == []
    assert not pathlib.Path(out).exists()


def test_out_is_created_before_the_run(stub_bench, tmp_path):
    out = tmp_path / "new" / "folder"
    assert cli.main(["bench", "--ops", "normalize", "--sizes", "small", "--out", str(out)]) == 0
    assert out.is_dir() and list(out.iterdir()) == [] and len(stub_bench) == 1


def test_cuda_without_a_gpu_is_a_usage_error(capsys, stub_bench):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    err = assert_usage_error(capsys, ["bench", "--device", "cuda"])
    assert "--device cuda" in err and stub_bench == []


@pytest.mark.parametrize("argv", [["bench", "--ops"], ["bench", "--bogus"], ["bench", "extra"],
                                  ["bench", "--quick=1"], ["bench", "--threads"],
                                  ["bench", "--sizes=-1"], ["bench", "--device=--"],
                                  ["bench", "--ops=--"], ["bench", "--sizes=--"],
                                  ["bench", "--threads=--"], ["bench", "--out=--"]])
def test_malformed_command_line_is_a_usage_error(capsys, stub_bench, argv):
    assert_usage_error(capsys, argv)
    assert stub_bench == []


def test_repeats_are_dropped_and_defaults_run_everything(stub_bench, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default --out, ./fastecg_bench, is created by the check
    assert cli.main(["bench", "--ops", "baseline,normalize,baseline", "--sizes", "ecg,ecg",
                     "--out", str(tmp_path)]) == 0
    assert stub_bench[-1].ops == ["baseline", "normalize"] and stub_bench[-1].sizes == ["ecg"]
    assert cli.main(["bench"]) == 0
    assert stub_bench[-1].ops is None and stub_bench[-1].sizes == ["ecg"]


def _random_value(rng: random.Random, option: str) -> str:
    pools = {"--ops": workloads.names() + ["bogus", ""], "--sizes": list(command.SIZE_NAMES) +
             ["huge", ""], "--device": ["cpu", "cuda", "gpu", ""]}
    kind = rng.randrange(4)
    if option == "--threads":
        return rng.choice([str(rng.randint(-5, 5000)), rng.choice(NOT_NUMBERS),
                           f"{rng.uniform(0, 10):.2f}"])
    if kind == 0:
        return rng.choice(NOT_NUMBERS)
    return ",".join(rng.choice(pools[option]) for _ in range(rng.randint(1, 3)))


def test_random_arguments_are_rejected_cleanly_or_safe_to_run(capsys, stub_bench, tmp_path):
    """Random options and values (fixed seed): each call either reaches the run with
    arguments it can use (the stub asserts it) or exits 2 with a usage message."""
    import torch

    rng = random.Random(20261206)
    accepted = rejected = 0
    for _ in range(400):
        argv = ["bench", "--out", str(tmp_path)]
        for option in rng.sample(["--ops", "--sizes", "--threads", "--device"],
                                 rng.randint(1, 3)):
            argv += [f"{option}={_random_value(rng, option)}"]
        if rng.random() < 0.3:
            argv.append("--quick")
        before = len(stub_bench)
        try:
            code = cli.main(argv)
        except SystemExit as exc:
            err = capsys.readouterr().err
            assert exc.code == 2 and "error:" in err and "Traceback" not in err, (argv, err)
            assert len(stub_bench) == before
            rejected += 1
        else:
            assert code == 0 and len(stub_bench) == before + 1, argv
            assert torch.cuda.is_available() or stub_bench[-1].device == "cpu"
            accepted += 1
    assert accepted > 20 and rejected > 100, (accepted, rejected)


def test_bad_arguments_do_not_import_torch():
    code = ("import sys, fastecg.cli as c\n"
            "for argv in (['bench', '--ops', 'bogus'], ['bench', '--threads', '0'],\n"
            "             ['bench', '--sizes', 'huge']):\n"
            "    try: c.main(argv)\n"
            "    except SystemExit: pass\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, cwd=ROOT,
                   env={**os.environ, "TRITON_INTERPRET": "0"})


def test_sweep_plots_from_a_results_document(tmp_path):
    """The time-against-length and time-against-window plots, from records shaped as the
    sweep writes them (no timing: the plots' inputs only)."""
    pytest.importorskip("matplotlib")
    from fastecg.bench.plots import write_plots

    def rec(label, role, n, ms, params=None, variant="median"):
        return {"op": "baseline", "variant": variant, "size": f"sweep_{n}", "shape": [4, 12, n],
                "fs": 500.0, "params": params or {}, "label": label, "role": role,
                "median_ms": ms, "p20_ms": 0.9 * ms, "p80_ms": 1.1 * ms}

    results = [rec(label, role, n, scale * n / 1000) for n in (1250, 5000, 20000)
               for label, role, scale in (("fastecg_cpu", "fastecg", 1), ("scipy", "peer", 8))]
    results += [rec(label, role, 5000, scale * w / 100, {"window": w}, f"w={w}")
                for w in (51, 101, 1001) for label, role, scale in
                (("fastecg_cpu", "fastecg", 1), ("scipy", "peer", 5))]
    doc = {"device": "cpu", "threads": 1, "machine": {"cpu_model": "test"}, "results": results}
    paths = write_plots(doc, tmp_path)
    assert {p.name for p in paths} == {"time_vs_length.png", "time_vs_window.png"}
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)


def test_first_peak_memory_in_a_process_is_the_call_alone():
    """The profiler's own first-use allocations are not charged to the first call
    measured in a process (they were ~74 MB for a 1 MiB array)."""
    code = ("import numpy as np; from fastecg.bench.timing import peak_memory; "
            "print([peak_memory(lambda: np.ones(1 << 20, np.uint8)) for _ in range(2)])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    first, second = json.loads(out)
    assert 1 << 20 <= first <= (1 << 20) + (256 << 10), first
    assert 1 << 20 <= second <= (1 << 20) + (256 << 10), second


def test_a_result_is_freed_after_its_time_is_taken():
    """Freeing a result (glibc handing heap back to the system can take milliseconds) is
    not part of the call's time: a result whose release sleeps 0.2 s times as a quick call."""
    import time

    from fastecg.bench.timing import time_paired

    class SlowToFree:
        def __del__(self):
            time.sleep(0.2)

    timed = time_paired({"slow_free": SlowToFree}, warmup=5, min_rounds=2, max_rounds=2)
    assert len(timed["slow_free"].seconds) == 2
    assert max(timed["slow_free"].seconds) < 0.1
