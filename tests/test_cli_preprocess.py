"""``fastecg preprocess``: end to end on a few sample records (in-process), and every bad
argument ends in an argparse message and exit status 2, never a traceback."""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest
import torch

from fastecg import cli
from helpers import assert_usage_error

pytest.importorskip("wfdb")
pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

NOT_NUMBERS = ["", " ", "abc", "nan", "inf", "-inf", "1e400", "0x10", "1,5", "None", "\x00"]
BAD = {
    "--fs": ["0", "-250", "-0.0", "1e6", "100000.5", *NOT_NUMBERS],
    "--siglen": ["0", "-1", "1.5", "1e3", str(2 ** 31), "9" * 40, *NOT_NUMBERS],
    "--workers": ["-1", "257", "1.0", *NOT_NUMBERS],
    "--batch-size": ["0", "-3", "65537", "2.5", *NOT_NUMBERS],
    "--recipe": ["", "st-mem", "ST_MEM", "bogus", "\x00"],
    "--dtype": ["float64", "half", ""],
    "--device": ["gpu", "cuda:0", ""],
    "--shard-mb": ["0", "-1", "1e7", *NOT_NUMBERS],
    "--leads": ["", ",", "I,,II", "I,I", " ", "I,\x00"],
}


@pytest.fixture(scope="module")
def src(cinc_records, tmp_path_factory):
    folder = tmp_path_factory.mktemp("src")
    for path in cinc_records[:3]:
        for ext in (".hea", ".mat"):
            shutil.copy(path + ext, folder)
    return folder


@pytest.fixture
def stub(monkeypatch):
    seen = []

    def check(args):
        seen.append(args)
        return 0

    monkeypatch.setattr(cli, "_preprocess", check)
    return seen


def test_preprocess_end_to_end(src, tmp_path, capsys):
    from fastecg.data import ECGStore, WFDBDataset
    from fastecg.preprocessors import PreprocManager

    dst = tmp_path / "store"
    argv = ["preprocess", str(src), str(dst), "--recipe", "st_mem", "--leads", "II,I,V1",
            "--quiet"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "wrote 3 records" in out and "skipped 0 records" in out
    store = ECGStore(dst)
    ds = WFDBDataset(src, leads=["II", "I", "V1"])
    pm = PreprocManager.from_recipe("st_mem")
    assert store.preprocessing == pm.to_config() and store.fs == 250.0
    for i in range(3):
        sig, fs, names = ds.read(i)
        ref, _ = pm(sig, fs, names)
        torch.testing.assert_close(store[i][0], ref, rtol=0, atol=1e-6)
    assert store.metadata["record"].tolist() == ds.metadata["record"].tolist()
    # A second run finds the store complete; --overwrite rewrites the same bytes.
    data = (dst / "signals-00000.bin").read_bytes()
    assert cli.main(argv) == 0 and "nothing to do" in capsys.readouterr().out
    assert cli.main(argv + ["--overwrite"]) == 0 and "wrote 3" in capsys.readouterr().out
    assert (dst / "signals-00000.bin").read_bytes() == data


def test_preprocess_with_config_fs_and_siglen(src, tmp_path, capsys):
    from fastecg.data import ECGStore

    config = tmp_path / "pipeline.json"
    config.write_text(json.dumps({"steps": [{"name": "normalize", "method": "z-score"}]}))
    dst = tmp_path / "store"
    assert cli.main(["preprocess", str(src), str(dst), "--config", str(config), "--fs", "100",
                     "--siglen", "800", "--dtype", "float16", "--quiet"]) == 0
    store = ECGStore(dst)
    x, y = store[0]
    assert x.shape == (12, 800) and store.info["dtype"] == "float16" and y.shape == (26,)
    assert abs(float(x[:, :1000].mean())) < 0.05  # z-scored before the zero padding
    assert np.isfinite(x.numpy()).all()


@pytest.mark.parametrize("option,value",
                         [(opt, v) for opt, values in BAD.items() for v in values],
                         ids=lambda v: repr(v)[:20])
def test_bad_value_is_a_assert_usage_error(capsys, stub, src, tmp_path, option, value):
    err = assert_usage_error(capsys, ["preprocess", str(src), str(tmp_path / "o"), option, value])
    assert "fastecg preprocess" in err and stub == []


def test_bad_paths_and_combinations(capsys, stub, src, tmp_path):
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    scalar = tmp_path / "scalar.json"
    scalar.write_text("3")
    empty = tmp_path / "empty"
    empty.mkdir()
    out = str(tmp_path / "o")
    for argv in ([str(tmp_path / "missing"), out], [str(a_file), out], [str(empty), out],
                 [str(src), str(a_file)], [str(src), str(src)],
                 [str(src), out, "--config", str(tmp_path / "none.json")],
                 [str(src), out, "--config", str(bad_json)],
                 [str(src), out, "--config", str(scalar)],
                 [str(src), out, "--recipe", "st_mem", "--config", str(bad_json)],
                 [str(src)], [], [str(src), out, "extra"], [str(src), out, "--bogus"]):
        assert_usage_error(capsys, ["preprocess", *argv])
    assert stub == []


def test_bad_pipeline_config_is_a_assert_usage_error(capsys, src, tmp_path):
    config = tmp_path / "p.json"
    config.write_text(json.dumps({"steps": [{"name": "bandpas", "lowcut": 1.0}]}))
    err = assert_usage_error(capsys, ["preprocess", str(src), str(tmp_path / "o"), "--config",
                               str(config), "--quiet"])
    assert "bandpass" in err  # the close match


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_gpu_is_a_assert_usage_error(capsys, stub, src, tmp_path):
    err = assert_usage_error(capsys, ["preprocess", str(src), str(tmp_path / "o"), "--device", "cuda"])
    assert "no CUDA GPU" in err


def test_random_arguments_are_rejected_cleanly_or_accepted(capsys, stub, src, tmp_path):
    rng = random.Random(32)
    values = [v for vs in BAD.values() for v in vs] + ["1", "2", "250", "500", "5000", "st_mem",
                                                       "float16", "cpu", "I,II", "0.5"]
    accepted = rejected = 0
    for _ in range(300):
        argv = ["preprocess", str(src), str(tmp_path / "o")]
        for option in rng.sample(sorted(BAD), rng.randint(1, 3)):
            argv.append(f"{option}={rng.choice(values)}")
        before = len(stub)
        try:
            code = cli.main(argv)
        except SystemExit as exc:
            err = capsys.readouterr().err
            assert exc.code == 2 and "error:" in err and "Traceback" not in err, (argv, err)
            assert len(stub) == before
            rejected += 1
        else:
            assert code == 0 and len(stub) == before + 1, argv
            args = stub[-1]
            assert args.fs is None or 0 < args.fs <= 100_000
            assert args.siglen is None or 1 <= args.siglen < 2 ** 31
            accepted += 1
    assert accepted > 10 and rejected > 100, (accepted, rejected)


@pytest.mark.slow
def test_killed_run_then_rerun_gives_identical_files(cinc_records, tmp_path, capsys):
    """A run killed mid-way (SIGKILL) leaves only temporary files and no store.json; a
    re-run then writes the same bytes as an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    src = tmp_path / "src"
    src.mkdir()
    for path in cinc_records[:4]:
        for ext in (".hea", ".mat"):
            shutil.copy(path + ext, src)
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    options = ["--recipe", "st_mem", "--batch-size", "1", "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "fastecg.cli", "preprocess", str(src),
                             str(killed), *options], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    partial = killed / "signals-00000.bin.tmp"
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if partial.exists() and partial.stat().st_size > 0:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    if proc.returncode == 0:
        pytest.skip("the run finished before it could be killed")
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "store.json").exists()
    assert not any(name.endswith(".bin") for name in os.listdir(killed))
    assert cli.main(["preprocess", str(src), str(killed), *options]) == 0
    assert cli.main(["preprocess", str(src), str(clean), *options]) == 0
    names = sorted(os.listdir(clean))
    assert sorted(os.listdir(killed)) == names and "store.json" in names
    for name in names:
        if name == "store.json":  # names its source folder, the same here
            continue
        assert (killed / name).read_bytes() == (clean / name).read_bytes(), name


def test_a_recipe_reads_the_standard_leads_in_order(tmp_path):
    """Recipes take the 12 standard leads in order: records stored in another order are
    reordered, and store.json says which leads the store holds."""
    import wfdb

    from fastecg.data import ECGStore
    from fastecg.transforms.recipes import STANDARD_LEADS

    src = tmp_path / "src"
    src.mkdir()
    sig = np.cumsum(np.random.default_rng(0).standard_normal((5000, 12)), 0) / 50
    for name, order in (("std", list(STANDARD_LEADS)), ("rev", list(STANDARD_LEADS)[::-1])):
        cols = [list(STANDARD_LEADS).index(lead) for lead in order]
        wfdb.wrsamp(name, fs=500, units=["mV"] * 12, sig_name=order, p_signal=sig[:, cols],
                    fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12,
                    write_dir=str(src))
    assert cli.main(["preprocess", str(src), str(tmp_path / "st"), "--recipe", "st_mem",
                     "--quiet"]) == 0
    store = ECGStore(tmp_path / "st")
    assert store.lead_names == list(STANDARD_LEADS)
    torch.testing.assert_close(store[0][0], store[1][0], rtol=0, atol=0)
