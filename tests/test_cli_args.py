"""Fuzz test of the ``fastecg`` command's argument parsing (issue 28, item 5): every bad
value ends in an argparse message and exit status 2, never a traceback; whatever is
accepted is safe for the demo to run.

``fastecg.cli.main`` runs in-process. Bad values are rejected before any work; the random
sweep swaps the demo for a stub that checks what it was given, so it stays fast.
"""

from __future__ import annotations

import math
import os
import pathlib
import random
import subprocess
import sys

import pytest

import fastecg
from fastecg import cli
from helpers import assert_usage_error

ROOT = pathlib.Path(__file__).resolve().parents[1]

# What the demo needs, stated independently of cli.py: a 4th-order 0.5-45 Hz Butterworth
# band-pass (fs above 90 Hz, and more samples than sosfiltfilt's padding, 3 * (2 * 4 + 1)).
MIN_FS_EXCLUSIVE = 90.0
MIN_SAMPLES = 28

NOT_NUMBERS = ["", " ", "abc", "nan", "NaN", "inf", "-inf", "Infinity", "1e400", "0x10",
               "1,5", "10Hz", "None", "True", "--", "\x00", "½"]
BAD_INTS = ["0", "-1", "-64", "1.5", "64.0", "1e3", "9" * 30, "9" * 5000, *NOT_NUMBERS]
BAD = {
    "--records": BAD_INTS + [str(2 ** 26 + 1)],
    "--repeats": BAD_INTS + ["1001"],
    "--seed": ["-1", "4294967296", "1.5", "1e3", "9" * 30, *NOT_NUMBERS],
    "--fs": ["0", "-500", "-0.0", "80", "90", "90.0", "1e6", "100000.5", "1e-300", "1e400",
             *NOT_NUMBERS],
    "--seconds": ["0", "-1", "0.02", "-0.0", "1e-300", "3601", "1e400", *NOT_NUMBERS],
}
# Each value fine alone, the combination not: too short for the filter, or too big.
BAD_COMBOS = [
    ["--seconds", "0.05"],                                   # 25 samples at 500 Hz
    ["--fs", "91", "--seconds", "0.29"],                     # 26 samples
    ["--fs", "100000", "--seconds", "0.00027"],              # 27 samples
    ["--records", "67108864"],
    ["--records", "1000", "--seconds", "600"],
    ["--fs", "100000", "--seconds", "3600", "--records", "1"],
]


@pytest.fixture
def stub_demo(monkeypatch):
    """Replaces the demo's work by a check that its arguments are safe to run with."""
    seen = []

    def check(args):
        assert isinstance(args.records, int) and args.records >= 1
        assert isinstance(args.repeats, int) and 1 <= args.repeats <= 1000
        assert isinstance(args.seed, int) and 0 <= args.seed < 2 ** 32
        assert math.isfinite(args.fs) and args.fs > MIN_FS_EXCLUSIVE
        assert math.isfinite(args.seconds)
        n_samples = int(round(args.fs * args.seconds))
        assert n_samples >= MIN_SAMPLES
        assert args.records * 12 * n_samples <= 2 ** 26
        seen.append(args)
        return 0

    monkeypatch.setattr(cli, "_demo", check)
    return seen


@pytest.mark.parametrize("option,value",
                         [(opt, v) for opt, values in BAD.items() for v in values],
                         ids=lambda v: repr(v)[:20])
def test_bad_value_is_a_usage_error(capsys, stub_demo, option, value):
    err = assert_usage_error(capsys, ["demo", option, value])
    assert "fastecg demo" in err
    assert stub_demo == []


@pytest.mark.parametrize("argv", BAD_COMBOS, ids=" ".join)
def test_bad_combination_is_a_usage_error(capsys, stub_demo, argv):
    err = assert_usage_error(capsys, ["demo", *argv])
    assert stub_demo == []
    assert "--" in err  # names the options


@pytest.mark.parametrize("argv", [["demo", "--records"], ["demo", "--bogus", "1"],
                                  ["demo", "extra"], ["info", "--records", "1"],
                                  ["bogus"], ["--bogus"], ["demo", "--fs=-1e5"]])
def test_malformed_command_line_is_a_usage_error(capsys, argv):
    assert_usage_error(capsys, argv)


def _random_value(rng: random.Random) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        return str(rng.randint(-10 ** 12, 10 ** 12))
    if kind == 1:
        return str(rng.randint(-5, 2000))
    if kind == 2:
        return f"{rng.choice('-+')}{rng.uniform(1, 10):.6f}e{rng.randint(-330, 330)}"
    if kind == 3:
        return repr(rng.uniform(-1, 1000))
    if kind == 4:
        return rng.choice(NOT_NUMBERS)
    return "".join(rng.choice("0123456789.e+-_x nai") for _ in range(rng.randint(0, 8)))


def test_random_arguments_are_rejected_cleanly_or_safe_to_run(capsys, stub_demo):
    """Random options and values (fixed seed): each call either reaches the demo with
    arguments it can run (the stub asserts it) or exits 2 with a usage message."""
    rng = random.Random(20240528)
    accepted = rejected = 0
    for _ in range(600):
        argv = ["demo"]
        for option in rng.sample(sorted(BAD), rng.randint(1, 3)):
            argv += [f"{option}={_random_value(rng)}"]
        before = len(stub_demo)
        try:
            code = cli.main(argv)
        except SystemExit as exc:
            err = capsys.readouterr().err
            assert exc.code == 2 and "error:" in err and "Traceback" not in err, (
                argv, exc.code, err)
            assert len(stub_demo) == before
            rejected += 1
        else:
            assert code == 0 and len(stub_demo) == before + 1, argv
            accepted += 1
    assert accepted > 20 and rejected > 200, (accepted, rejected)  # both paths exercised


def test_library_value_error_is_reported_not_raised(capsys, monkeypatch):
    """A ValueError/TypeError the checks let through reaches the user as a usage error;
    anything else (a bug) still raises."""
    def fails(exc):
        def demo(args):
            raise exc
        return demo

    for exc in (ValueError("band (0.5, 45.0) Hz not inside (0, 40)"), TypeError("bad dtype")):
        monkeypatch.setattr(cli, "_demo", fails(exc))
        err = assert_usage_error(capsys, ["demo"])
        assert f"fastecg demo: error: {exc}" in err
    monkeypatch.setattr(cli, "_demo", fails(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["demo"])


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code in (0, None)
    assert capsys.readouterr().out.strip() == f"fastecg {fastecg.__version__}"


def test_version_and_bad_arguments_do_not_import_torch():
    code = ("import sys, fastecg.cli as c\n"
            "for argv in (['--version'], ['demo', '--records', '0'], ['demo', '--fs', '80']):\n"
            "    try: c.main(argv)\n"
            "    except SystemExit: pass\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, cwd=ROOT,
                   env={**os.environ, "TRITON_INTERPRET": "0"})


def test_smallest_demo_runs(capsys):
    assert cli.main(["demo", "--records", "1", "--seconds", "0.1", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "bandpass 0.5-45 Hz" in out and out.rstrip().splitlines()[-1].startswith("timing:")
