"""The ``fastecg`` command as a new user meets it: an --out that is a file, a failed run's
leftovers, the Trainer options ``finetune`` shares with ``pretrain``, a resume with nothing
left to do, and an error of the work itself (exit 1, one line)."""

from __future__ import annotations

import csv
import errno
import json
import shutil

import pytest

from fastecg import cli
from helpers import assert_usage_error

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--method", "mae_1d", "--preset", "tiny", "--records", "8", "--batch-size", "4",
        "--quiet", "--model-args", '{"n_leads": 12, "seq_len": 5000, "patch_size": 250}']


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("pt")
    assert cli.main(["pretrain", *TINY, "--steps", "1", "--out", str(out)]) == 0
    return out / "pretrained"


@pytest.fixture
def stubs(monkeypatch):
    """The commands' work replaced by a recorder: only the argument checks run."""
    import importlib

    from fastecg.ssl import cli as ssl_cli

    compare = importlib.import_module("fastecg.ssl.compare")  # (fastecg.ssl.compare: a function)
    ran = []
    for module, name in ((ssl_cli, "run_pretrain"), (ssl_cli, "run_finetune"),
                         (compare, "run_ssl_compare")):
        monkeypatch.setattr(module, name, lambda args, name=name: ran.append(name) or 0)
    return ran


def _losses(folder):
    with open(folder / "train" / "metrics.csv", newline="") as f:
        return [(int(row["step"]), float(row["loss"])) for row in csv.DictReader(f)]


@pytest.mark.parametrize("command", ["pretrain", "finetune", "ssl-compare"])
def test_out_that_is_a_file_is_a_usage_error(capsys, stubs, tmp_path, command):
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    for out in (a_file, a_file / "sub"):
        err = assert_usage_error(capsys, [command, "--out", str(out)])
        assert "--out" in err and str(a_file) in err
    assert stubs == [] and a_file.read_text() == "x"


def test_failed_preprocess_removes_the_folder_it_created(cinc_records, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for ext in (".hea", ".mat"):
        shutil.copy(cinc_records[0] + ext, src)
    # 10 samples at 500 Hz are 5 at st_mem's 250 Hz, fewer than its 2250: the pipeline fails
    dst = tmp_path / "new store"
    err = assert_usage_error(capsys, ["preprocess", str(src), str(dst), "--recipe", "st_mem",
                                      "--siglen", "10", "--quiet"])
    assert "CropOrPad" in err and not dst.exists()
    # a folder that was there before the run stays, with what the user had put in it
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert_usage_error(capsys, ["preprocess", str(src), str(mine), "--recipe", "st_mem",
                                "--siglen", "10", "--quiet"])
    assert (mine / "notes.txt").read_text() == "keep"


def test_failed_pretrain_removes_the_empty_folders_it_created(tmp_path, capsys):
    out = tmp_path / "run"
    err = assert_usage_error(capsys, ["pretrain", *TINY, "--records", "2", "--steps", "1",
                                      "--out", str(out)])
    assert "smaller than one global batch" in err and not out.exists()


def test_layer_decay_without_full_mode_is_a_usage_error(capsys, stubs, tmp_path):
    err = assert_usage_error(capsys, ["finetune", "--layer-decay", "0.5", "--out",
                                      str(tmp_path / "o")])
    assert "--layer-decay" in err and "--mode full" in err and stubs == []
    assert cli.main(["finetune", "--layer-decay", "0.5", "--mode", "full", "--out",
                     str(tmp_path / "o")]) == 0
    assert stubs == ["run_finetune"]


def test_finetune_takes_the_trainer_options_of_pretrain():
    """docs/ssl.rst: both commands are Trainer runs with checkpoints, --resume, --amp."""
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    options = {name: {s for a in sub[name]._actions for s in a.option_strings}
               for name in ("pretrain", "finetune")}
    model_only = {"--method", "--preset", "--model-args"}
    assert options["pretrain"] - model_only <= options["finetune"]


def test_finetune_resume_goes_on_exactly(pretrained, tmp_path, capsys):
    run = ["finetune", "--checkpoint", str(pretrained), "--records", "8", "--batch-size", "4",
           "--quiet"]
    assert cli.main([*run, "--steps", "3", "--out", str(tmp_path / "whole")]) == 0
    assert cli.main([*run, "--steps", "2", "--ckpt-every", "1", "--out",
                     str(tmp_path / "cut")]) == 0
    assert cli.main([*run, "--steps", "3", "--resume", "--out", str(tmp_path / "cut")]) == 0
    whole, cut = _losses(tmp_path / "whole"), _losses(tmp_path / "cut")
    assert [s for s, _ in cut] == [s for s, _ in whole] == [1, 2, 3]
    assert [v for _, v in cut] == pytest.approx([v for _, v in whole], rel=1e-5)


def test_resume_of_a_finished_run_says_it_trained_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["pretrain", *TINY, "--steps", "1", "--out", str(out)]) == 0
    before = _losses(out)
    capsys.readouterr()
    assert cli.main(["pretrain", *TINY, "--steps", "1", "--out", str(out), "--resume"]) == 0
    printed = capsys.readouterr().out
    assert "step 1 of 1" in printed and "no step trained" in printed
    assert _losses(out) == before


def test_checkpoint_without_weights_is_a_usage_error(pretrained, tmp_path, capsys):
    half = tmp_path / "half"
    half.mkdir()
    shutil.copy(pretrained / "config.json", half)
    json.loads((half / "config.json").read_text())  # a real config, only the weights gone
    err = assert_usage_error(capsys, ["finetune", "--checkpoint", str(half), "--out",
                                      str(tmp_path / "o"), "--quiet"])
    assert "--checkpoint" in err and "model.safetensors" in err
    assert not (tmp_path / "o").exists()


def test_an_os_error_of_the_work_exits_1_in_one_line(monkeypatch, tmp_path, capsys):
    from fastecg.ssl import cli as ssl_cli

    def full_disk(args):
        raise OSError(errno.ENOSPC, "No space left on device", args.out)

    monkeypatch.setattr(ssl_cli, "run_pretrain", full_disk)
    assert cli.main(["pretrain", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("fastecg pretrain: error:") and "No space left" in err


def _checkpoints(folder):
    ckpt = folder / "train" / "checkpoints"
    return sorted(p.name for p in ckpt.glob("step_*.pt")), (ckpt / "latest").read_text()


def test_a_fresh_pretrain_into_an_earlier_runs_folder_is_refused(tmp_path, capsys):
    """Without --resume, a new run would write its checkpoints beside the earlier run's
    (a later --resume or listing would meet two runs): refused before any work, with
    what to do; --overwrite starts afresh with only the new run's files."""
    out = tmp_path / "run"
    assert cli.main(["pretrain", *TINY, "--steps", "3", "--out", str(out)]) == 0
    before = _checkpoints(out), _losses(out), (out / "pretrained" / "config.json").stat()
    err = assert_usage_error(capsys, ["pretrain", *TINY, "--steps", "1", "--out", str(out)])
    assert "--out" in err and "--resume" in err and "--overwrite" in err
    assert "step_00000003.pt" in err
    assert (_checkpoints(out), _losses(out),
            (out / "pretrained" / "config.json").stat()) == before  # untouched
    err = assert_usage_error(capsys, ["pretrain", *TINY, "--steps", "1", "--out", str(out),
                                      "--resume", "--overwrite"])
    assert "--overwrite" in err and "not allowed with" in err
    assert cli.main(["pretrain", *TINY, "--steps", "1", "--out", str(out),
                     "--overwrite"]) == 0
    assert _checkpoints(out) == (["step_00000001.pt"], "step_00000001.pt")
    assert [s for s, _ in _losses(out)] == [1]
    assert (out / "pretrained" / "config.json").is_file()
    # a folder the user made, or one with other files but no checkpoints, is fine
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert cli.main(["pretrain", *TINY, "--steps", "1", "--out", str(tmp_path / "mine")]) == 0
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_a_fresh_finetune_into_an_earlier_runs_folder_is_refused(pretrained, tmp_path,
                                                                  capsys):
    run = ["finetune", "--checkpoint", str(pretrained), "--records", "8", "--batch-size", "4",
           "--quiet", "--out", str(tmp_path / "ft")]
    assert cli.main([*run, "--steps", "2"]) == 0
    before = _checkpoints(tmp_path / "ft")
    err = assert_usage_error(capsys, [*run, "--steps", "1"])
    assert "--resume" in err and "--overwrite" in err and "step_00000002.pt" in err
    assert _checkpoints(tmp_path / "ft") == before
    assert cli.main([*run, "--steps", "1", "--overwrite"]) == 0
    assert _checkpoints(tmp_path / "ft") == (["step_00000001.pt"], "step_00000001.pt")
    assert (tmp_path / "ft" / "finetuned" / "config.json").is_file()
