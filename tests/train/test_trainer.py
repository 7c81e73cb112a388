"""Trainer: exact resume after a kill, DDP under torchrun equal to one process on the
global batch, checkpoints, metrics, AMP, accumulation."""

import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch
from torch import nn

from fastecg.registry import SSL
from fastecg.train import Trainer
from fastecg.train.trainer import EpochBatchSampler

ROOT = pathlib.Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_thread")

TINY_MAE = dict(n_leads=2, seq_len=40, patch_size=10, embed_dim=16, depth=1, num_heads=2,
                decoder_dim=8, decoder_depth=1, decoder_heads=2)

# The run a test repeats: a tiny MAE (its masking draws from the global RNG, so the RNG
# state must come back too), a scheduler, 3 batches an epoch (resume crosses epochs).
RUN = textwrap.dedent("""
    import sys, torch
    from fastecg.registry import SSL
    from fastecg.train import Trainer

    def make(out_dir, max_steps, callbacks=()):
        torch.manual_seed(0)
        model = SSL.build("mae_1d", **TINY_MAE)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.5)
        data = torch.randn(26, 2, 40, generator=torch.Generator().manual_seed(1))
        trainer = Trainer(model, opt, sched, batch_size=8, max_steps=max_steps, out_dir=out_dir,
                          ckpt_every=5, seed=3, progress=False, callbacks=callbacks)
        return trainer, data
""")


def _make(out_dir, max_steps, callbacks=()):
    scope = {"TINY_MAE": TINY_MAE}
    exec(RUN, scope)
    return scope["make"](out_dir, max_steps, callbacks)


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "python"), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_resume_after_kill_is_bit_identical(tmp_path):
    threads = torch.get_num_threads()
    straight, data = _make(tmp_path / "straight", 20)
    straight.fit(data)

    script = tmp_path / "killed.py"
    script.write_text(f"TINY_MAE = {TINY_MAE!r}\n" + RUN + textwrap.dedent(f"""
        import os, signal
        torch.set_num_threads({threads})
        def kill_at_12(trainer, metrics):
            if trainer.step == 12:
                os.kill(os.getpid(), signal.SIGKILL)
        trainer, data = make(sys.argv[1], 20, [kill_at_12])
        trainer.fit(data)
    """))
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "killed")], env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    resumed, data = _make(tmp_path / "killed", 20)
    assert resumed.latest_checkpoint().name == "step_00000010.pt"
    resumed.fit(data, resume=True)
    assert resumed.step == 20
    for (name, a), b in zip(straight.model.state_dict().items(),
                            resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    # rows 11-12 of the killed run were redone, not duplicated
    steps = [int(line.split(",")[0]) for line in
             (tmp_path / "killed" / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, 21))


def test_resume_refuses_another_data_order(tmp_path):
    trainer, data = _make(tmp_path, 5)
    trainer.fit(data)
    other, data = _make(tmp_path, 10)
    other.seed = 4
    with pytest.raises(ValueError, match="data order"):
        other.fit(data, resume=True)


def test_sampler_partitions_global_batches():
    one = list(EpochBatchSampler(20, 4, seed=1, world=1))
    ranks = [list(EpochBatchSampler(10 * 2, 2, seed=1, rank=r, world=2)) for r in range(2)]
    for i, batch in enumerate(one):
        assert sorted(ranks[0][i] + ranks[1][i]) == sorted(batch)


class Regression(nn.Module):
    """A deterministic model (no RNG in the step) for comparing DDP with one process."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(2 * 8, 4), nn.Tanh(), nn.Linear(4, 1))

    def forward(self, batch):
        return {"loss": (self.net(batch) - batch.mean((1, 2)).unsqueeze(1)).square().mean()}


DDP_SCRIPT = textwrap.dedent("""
    import gc, sys, torch
    from torch import nn
    from fastecg.train import Trainer
    {model}
    torch.manual_seed(0)
    model = Regression()
    data = torch.randn(32, 2, 8, generator=torch.Generator().manual_seed(1))
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), batch_size=4,
                      max_steps=5, progress=False, seed=2, out_dir=sys.argv[2], ckpt_every=5)
    assert trainer.world == 2
    trainer.fit(data)
    if trainer.rank == 0:
        torch.save(model.state_dict(), sys.argv[1])
    trainer.close()
""")


def test_ddp_two_gloo_processes_match_one(tmp_path):
    import inspect

    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(model=inspect.getsource(Regression)))
    out = tmp_path / "ddp.pt"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", str(script), str(out), str(tmp_path / "run")],
                          env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    torch.manual_seed(0)
    model = Regression()
    data = torch.randn(32, 2, 8, generator=torch.Generator().manual_seed(1))
    Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), batch_size=8, max_steps=5,
            progress=False, seed=2).fit(data)
    ddp = torch.load(out, weights_only=True)
    # rank 0 wrote the only checkpoint, holding both ranks' RNG states
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "step_00000005.pt", weights_only=True)
    assert len(ckpt["rng"]) == 2 and ckpt["meta"]["world"] == 2
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "latest", "step_00000005.pt"]
    for k, v in model.state_dict().items():
        torch.testing.assert_close(ddp[k], v, rtol=1e-5, atol=1e-6)


def test_grad_accum_equals_big_batch():
    data = torch.randn(32, 2, 8, generator=torch.Generator().manual_seed(1))
    weights = []
    for bs, accum in ((8, 1), (4, 2)):
        torch.manual_seed(0)
        model = Regression()
        Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), batch_size=bs,
                grad_accum=accum, max_steps=3, progress=False, shuffle=False).fit(data)
        weights.append(model.state_dict())
    for k in weights[0]:
        torch.testing.assert_close(weights[0][k], weights[1][k])


def test_bf16_amp_and_clipping_run(tmp_path):
    torch.manual_seed(0)
    model = SSL.build("mae_1d", **TINY_MAE)
    hist = Trainer(model, batch_size=4, max_steps=2, amp="bf16", clip_grad_norm=1.0,
                   progress=False, out_dir=tmp_path).fit(torch.randn(8, 2, 40))
    assert len(hist) == 2 and all(torch.isfinite(torch.tensor(h["loss"])) for h in hist)
    assert (tmp_path / "checkpoints" / "latest").is_file()


def test_bad_arguments():
    with pytest.raises(ValueError, match="amp"):
        Trainer(Regression(), amp="fp8")
    with pytest.raises(ValueError, match="fp16"):
        Trainer(Regression(), amp="fp16", device="cpu")
    with pytest.raises(ValueError, match="smaller than one global batch"):
        Trainer(Regression(), batch_size=64, progress=False).fit(torch.randn(8, 2, 8))


def test_keep_last_checkpoints(tmp_path):
    torch.manual_seed(0)
    model = Regression()
    Trainer(model, batch_size=4, max_steps=5, ckpt_every=1, keep_last=2, out_dir=tmp_path,
            progress=False).fit(torch.randn(8, 2, 8))
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["latest", "step_00000004.pt", "step_00000005.pt"]
    assert (tmp_path / "checkpoints" / "latest").read_text() == "step_00000005.pt"


class _DictRecords(torch.utils.data.Dataset):
    def __init__(self, x, patient):
        self.x, self.patient = x, patient

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"signal": self.x[i], "patient_id": self.patient[i]}


def test_dict_batches_reach_the_model_whole():
    """A dict batch (CLOCS's patient ids beside the signal): the transform applies to
    "signal" only, the other entries reach pretrain_step, records are counted."""
    seen = []

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(()))

        def forward(self, batch):
            seen.append((batch["signal"].clone(), batch["patient_id"].clone()))
            return {"loss": (self.w * batch["signal"]).square().mean()}

    x = torch.randn(8, 2, 8, generator=torch.Generator().manual_seed(0))
    patient = torch.arange(8) // 2
    hist = Trainer(Probe(), batch_size=4, max_steps=2, progress=False, seed=0,
                   transform=lambda s: 2 * s).fit(_DictRecords(x, patient))
    assert len(hist) == 2 and len(seen) == 2
    for sig, pid in seen:
        rows = [int((x == s / 2).all(dim=(1, 2)).nonzero()) for s in sig]
        assert torch.equal(pid, patient[rows])
    with pytest.raises(ValueError, match="'signal'"):
        Trainer(Probe(), batch_size=4, max_steps=1, progress=False).fit(
            [{"x": x[i]} for i in range(8)])


# ---- callbacks, non-finite losses, resume paths -------------------------------------------

def _drawing_run(out_dir, max_steps, fail_at=None):
    """A tiny MAE whose callback draws from every global RNG each step (torch through a
    validation pretrain_step's masks, NumPy, Python), as a validation callback does."""
    import random

    import numpy as np

    val = torch.randn(4, 2, 40, generator=torch.Generator().manual_seed(2))

    def validate(trainer, metrics):
        with torch.no_grad():
            metrics["val"] = trainer.model.pretrain_step(val)["loss"].item()
        metrics["jitter"] = float(np.random.rand()) + random.random()
        if trainer.step == fail_at:
            raise RuntimeError("validation failed")

    torch.manual_seed(0)
    model = SSL.build("mae_1d", **TINY_MAE)
    data = torch.randn(20, 2, 40, generator=torch.Generator().manual_seed(1))
    trainer = Trainer(model, batch_size=4, max_steps=max_steps, out_dir=out_dir,
                      ckpt_every=2, seed=1, progress=False, callbacks=[validate])
    return trainer, data


def test_resume_is_bit_identical_when_a_callback_draws(tmp_path):
    straight, data = _drawing_run(tmp_path / "straight", 6)
    straight.fit(data)
    first, data = _drawing_run(tmp_path / "split", 4)
    first.fit(data)
    resumed, data = _drawing_run(tmp_path / "split", 6)
    assert resumed.fit(data, resume=True)[0]["step"] == 5
    for (name, a), b in zip(straight.model.state_dict().items(),
                            resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert [h["val"] for h in straight.history[4:]] == [h["val"] for h in resumed.history]


def test_a_callback_that_raises_leaves_the_previous_checkpoint(tmp_path):
    """The step-4 checkpoint would hold the RNG state in the middle of the failed
    callback; the step-2 one is consistent, and resuming from it is exact."""
    straight, data = _drawing_run(tmp_path / "straight", 6)
    straight.fit(data)
    crashed, data = _drawing_run(tmp_path / "crash", 6, fail_at=4)
    with pytest.raises(RuntimeError, match="validation failed"):
        crashed.fit(data)
    assert crashed.latest_checkpoint().name == "step_00000002.pt"
    resumed, data = _drawing_run(tmp_path / "crash", 6)
    resumed.fit(data, resume=True)
    for (name, a), b in zip(straight.model.state_dict().items(),
                            resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_nan_loss_raises_before_the_weights_are_stepped():
    """A NaN record in the second micro-batch of step 2: FloatingPointError, and the
    weights, optimizer state, scheduler and step count are those after step 1."""
    import copy

    x = torch.randn(16, 2, 8, generator=torch.Generator().manual_seed(0))
    y = torch.randn(16, 1, generator=torch.Generator().manual_seed(1))
    x[13] = float("nan")  # no shuffling: step 2 takes records 8-11, then 12-15
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    after_step = {}

    def snapshot(trainer, metrics):
        after_step[trainer.step] = (copy.deepcopy(model.state_dict()),
                                    copy.deepcopy(opt.state_dict()), sched.state_dict())

    trainer = Trainer(model, opt, sched, loss_fn=nn.functional.mse_loss, batch_size=4,
                      grad_accum=2, max_steps=3, shuffle=False, progress=False,
                      callbacks=[snapshot])
    with pytest.raises(FloatingPointError, match="nan .*micro-batch 2 of 2.* step 2"):
        trainer.fit(torch.utils.data.TensorDataset(x, y))
    weights, opt_state, sched_state = after_step[1]
    assert trainer.step == 1 and list(after_step) == [1]
    for k, v in weights.items():
        assert torch.equal(model.state_dict()[k], v), k
    now = opt.state_dict()
    for i, state in opt_state["state"].items():
        for k, v in state.items():
            assert torch.equal(now["state"][i][k], v), (i, k)
    assert sched.state_dict() == sched_state and opt.param_groups[0]["lr"] == 0.05
    assert all(p.grad is None for p in model.parameters())


def test_resume_from_a_missing_file_is_an_error(tmp_path):
    missing = tmp_path / "checkpoints" / "step_00000009.pt"
    torch.manual_seed(0)
    trainer = Trainer(Regression(), batch_size=4, max_steps=2, out_dir=tmp_path,
                      progress=False)
    with pytest.raises(FileNotFoundError, match="step_00000009.pt"):
        trainer.fit(torch.randn(8, 2, 8), resume=missing)
    assert trainer.step == 0 and trainer.history == []
    # resume=True with nothing saved yet starts afresh
    assert trainer.fit(torch.randn(8, 2, 8), resume=True)[0]["step"] == 1


def test_resume_past_the_runs_steps_is_an_error(tmp_path):
    """A checkpoint further than the run asks for is a ValueError (it returned at once
    with the checkpoint's weights); one at exactly the run's end has nothing left to do."""
    x = torch.randn(8, 2, 8)
    torch.manual_seed(0)
    Trainer(Regression(), batch_size=4, max_steps=4, out_dir=tmp_path, progress=False).fit(x)
    with pytest.raises(ValueError, match="checkpoint is at step 4, past this run's 2 steps"):
        Trainer(Regression(), batch_size=4, max_steps=2, out_dir=tmp_path,
                progress=False).fit(x, resume=True)
    done = Trainer(Regression(), batch_size=4, max_steps=4, out_dir=tmp_path, progress=False)
    assert done.fit(x, resume=True) == [] and done.step == 4


def test_an_augmenter_manager_as_transform_gets_and_mixes_the_labels():
    """Trainer(transform=AugmenterManager(...)), as its docstring names it: on (x, y)
    batches the model sees augmented signals and the loss the mixed labels (the
    manager's tuple took the signal's place: a TypeError); on tensor and dict batches
    (SSL) the signal is augmented."""
    from fastecg.augmenters import AugmenterManager

    am = AugmenterManager({"name": "mixup", "prob": 1.0}, {"name": "random_flip", "prob": 1.0},
                          fs=100.0)
    x = torch.randn(8, 2, 50)
    y = nn.functional.one_hot(torch.arange(8) % 2, 2).float()
    seen = []

    def loss_fn(out, target):
        seen.append(target.detach().clone())
        return nn.functional.mse_loss(out, target)

    model = nn.Sequential(nn.Flatten(), nn.Linear(100, 2))
    Trainer(model, loss_fn=loss_fn, batch_size=4, max_steps=2, transform=am,
            progress=False).fit(torch.utils.data.TensorDataset(x, y))
    labels = torch.cat(seen)
    assert labels.shape == (8, 2) and torch.allclose(labels.sum(-1), torch.ones(8))
    assert ((labels > 0) & (labels < 1)).any()  # mixed, not one-hot

    trainer = Trainer(nn.Linear(1, 1), loss_fn=lambda out: out.sum(), transform=am,
                      progress=False)
    for batch in (x[:4], {"signal": x[:4]}):
        sig = trainer._prepare(batch)
        sig = sig["signal"] if isinstance(sig, dict) else sig
        assert isinstance(sig, torch.Tensor) and sig.shape == (4, 2, 50)


def _lin_data():
    x = torch.randn(20, 2, 4, generator=torch.Generator().manual_seed(0))
    y = torch.randn(20, 1, generator=torch.Generator().manual_seed(1))
    return x, y


def _lin():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(8, 1))


def test_metrics_lr_is_the_rate_the_step_used():
    x, y = _lin_data()
    model = _lin()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
    h = Trainer(model, opt, sched, loss_fn=nn.functional.mse_loss, batch_size=4,
                max_steps=3, progress=False).fit(torch.utils.data.TensorDataset(x, y))
    assert [r["lr"] for r in h] == pytest.approx([0.1, 0.05, 0.1 / 3])


def test_reduce_lr_on_plateau_is_stepped_with_the_loss():
    x, y = _lin_data()
    model = _lin()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    flat = lambda out, target: (out * 0).mean() + 1.0  # noqa: E731  a loss that never improves
    Trainer(model, opt, sched, loss_fn=flat, batch_size=4, max_steps=4,
            progress=False).fit(torch.utils.data.TensorDataset(x, y))
    assert sched.last_epoch == 4 and sched.best == 1.0
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 / 8)  # cut at steps 2, 3, 4


def test_loss_fn_takes_dict_batches_and_refuses_bare_tensors():
    x, y = _lin_data()

    class Records(torch.utils.data.Dataset):
        def __len__(self):
            return 20

        def __getitem__(self, i):
            return {"signal": x[i], "label": y[i]}

    weights = []
    for data in (Records(), torch.utils.data.TensorDataset(x, y)):
        model = _lin()
        Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1),
                loss_fn=nn.functional.mse_loss, batch_size=4, max_steps=3,
                progress=False).fit(data)
        weights.append(model[1].weight.detach().clone())
    assert torch.equal(weights[0], weights[1])
    with pytest.raises(TypeError, match="loss_fn needs"):
        Trainer(_lin(), loss_fn=nn.functional.mse_loss, batch_size=4, max_steps=1,
                progress=False).fit(x)


def test_namedtuple_batches_train_as_tuples_do():
    """default_collate keeps a dataset's namedtuple items as a namedtuple batch; moving it
    to the device (and putting the transformed signal back) rebuilt it from one iterable,
    a TypeError. Reference: the same run on a TensorDataset."""
    import collections

    x, y = _lin_data()
    Pair = collections.namedtuple("Pair", ["signal", "label"])

    class Records(torch.utils.data.Dataset):
        def __len__(self):
            return 20

        def __getitem__(self, i):
            return Pair(x[i], y[i])

    for transform in (None, lambda sig: 2 * sig):
        weights = []
        for data in (Records(), torch.utils.data.TensorDataset(x, y)):
            model = _lin()
            Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1),
                    loss_fn=nn.functional.mse_loss, batch_size=4, max_steps=3,
                    transform=transform, progress=False).fit(data)
            weights.append(model[1].weight.detach().clone())
        assert torch.equal(weights[0], weights[1])
    batch = Trainer(_lin(), loss_fn=nn.functional.mse_loss, transform=lambda sig: 2 * sig,
                    progress=False)._prepare(Pair(x[:2], y[:2]))
    assert isinstance(batch, Pair) and torch.equal(batch.signal, 2 * x[:2])
    assert torch.equal(batch.label, y[:2])


def test_a_fresh_run_in_a_used_folder_starts_metrics_anew(tmp_path):
    x, y = _lin_data()
    data = torch.utils.data.TensorDataset(x, y)
    Trainer(_lin(), loss_fn=nn.functional.mse_loss, batch_size=4, max_steps=3,
            out_dir=tmp_path, progress=False).fit(data)
    with pytest.warns(UserWarning, match="earlier run's checkpoints"):
        Trainer(_lin(), loss_fn=nn.functional.mse_loss, batch_size=4, max_steps=2,
                out_dir=tmp_path, progress=False).fit(data)
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["step", "1", "2"]


def test_a_fresh_run_over_an_earlier_runs_checkpoints_warns(tmp_path):
    x, y = _lin_data()
    data = torch.utils.data.TensorDataset(x, y)
    Trainer(_lin(), loss_fn=nn.functional.mse_loss, batch_size=4, max_steps=3,
            out_dir=tmp_path, progress=False).fit(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # resuming it is silent
        Trainer(_lin(), loss_fn=nn.functional.mse_loss, batch_size=4, max_steps=4,
                out_dir=tmp_path, progress=False).fit(data, resume=True)
    with pytest.warns(UserWarning, match=r"earlier run's checkpoints \(newest "
                      r"step_00000004\.pt\).*resume=True"):
        Trainer(_lin(), loss_fn=nn.functional.mse_loss, batch_size=4, max_steps=2,
                out_dir=tmp_path, progress=False).fit(data)


def test_keep_last_never_deletes_the_checkpoint_just_written(tmp_path):
    x, y = _lin_data()
    data = torch.utils.data.TensorDataset(x, y)
    Trainer(_lin(), loss_fn=nn.functional.mse_loss, batch_size=4, max_steps=4,
            ckpt_every=2, out_dir=tmp_path, progress=False).fit(data)
    t = Trainer(_lin(), loss_fn=nn.functional.mse_loss, batch_size=4, max_steps=2,
                ckpt_every=2, out_dir=tmp_path, progress=False, keep_last=1)
    with pytest.warns(UserWarning, match="earlier run's checkpoints"):
        t.fit(data)
    assert t.latest_checkpoint().is_file()
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*.pt")) == \
        ["step_00000002.pt"]


def test_a_nan_loss_leaves_the_data_position_of_the_last_good_step():
    x, y = _lin_data()
    x[5] = float("nan")  # step 2, micro-batch 1 (batches of 2, no shuffling)
    t = Trainer(_lin(), loss_fn=nn.functional.mse_loss, batch_size=2, grad_accum=2,
                max_steps=5, shuffle=False, progress=False)
    with pytest.raises(FloatingPointError):
        t.fit(torch.utils.data.TensorDataset(x, y))
    assert (t.step, t.batch_in_epoch) == (1, 2)


class _Recorder(nn.Module):
    """Records, per training call, the records of its batch (their first value is the
    record's index) and whether it was in training mode."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.seen, self.modes = [], []

    def forward(self, batch):
        self.seen.append(batch[:, 0, 0].long().tolist())
        self.modes.append(self.training)
        return {"loss": (self.w * batch.mean()).square()}


def _indexed(n):
    return torch.arange(n, dtype=torch.float32)[:, None, None].expand(n, 1, 4).clone()


def test_grad_accum_skips_an_epochs_incomplete_last_step_with_a_warning():
    """5 batches an epoch, grad_accum=2: two steps take batches 0-3, batch 4 (records
    16-19) is too few for a step and is skipped every epoch, with a warning naming it."""
    model = _Recorder()
    with pytest.warns(UserWarning, match=r"last 1 of each epoch's 5 batches \(4 records\)"):
        hist = Trainer(model, batch_size=4, grad_accum=2, epochs=2, shuffle=False,
                       progress=False).fit(_indexed(20))
    assert [h["epoch"] for h in hist] == [0, 0, 1, 1]
    epoch = [[4 * b + i for i in range(4)] for b in range(4)]
    assert model.seen == epoch + epoch


def test_a_dangling_latest_pointer_is_an_error_not_a_fresh_run(tmp_path):
    x = _indexed(8)
    Trainer(_Recorder(), batch_size=4, max_steps=3, ckpt_every=1, out_dir=tmp_path,
            progress=False).fit(x)
    folder = tmp_path / "checkpoints"
    (folder / "step_00000003.pt").unlink()
    trainer = Trainer(_Recorder(), batch_size=4, max_steps=4, out_dir=tmp_path,
                      progress=False)
    with pytest.raises(FileNotFoundError,
                       match=r"step_00000003.pt, which is missing.*step_00000002.pt"):
        trainer.fit(x, resume=True)
    (folder / "latest").unlink()
    with pytest.raises(FileNotFoundError, match=r"no 'latest' pointer.*step_00000002.pt"):
        trainer.fit(x, resume=True)
    assert trainer.step == 0 and trainer.history == []
    # the checkpoint the message names resumes
    assert trainer.fit(x, resume=folder / "step_00000002.pt")[0]["step"] == 3
    with pytest.raises(ValueError, match="no out_dir"):
        Trainer(_Recorder(), batch_size=4, max_steps=1, progress=False).fit(x, resume=True)


def _sched_run(out_dir, scheduler):
    torch.manual_seed(0)
    model = _lin()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5) if scheduler \
        else None
    return model, Trainer(model, opt, sched, loss_fn=nn.functional.mse_loss, batch_size=4,
                          max_steps=4, out_dir=out_dir, progress=False)


def test_resume_refuses_a_scheduler_the_checkpoint_lacks_or_the_reverse(tmp_path):
    """Resuming a scheduled run without its scheduler trained on at the last scheduled
    rate, and a scheduler with a checkpoint of none restarted its schedule: both are
    ValueErrors, before anything is loaded."""
    x, y = _lin_data()
    data = torch.utils.data.TensorDataset(x, y)
    for saved_with, message in ((True, "no scheduler: pass"), (False, "restart")):
        folder = tmp_path / str(saved_with)
        _, first = _sched_run(folder, saved_with)
        first.max_steps = 2
        first.fit(data)
        model, other = _sched_run(folder, not saved_with)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        with pytest.raises(ValueError, match=message):
            other.fit(data, resume=True)
        assert other.step == 0
        for k, v in model.state_dict().items():
            assert torch.equal(v, before[k]), k


def test_resume_refuses_another_dataset_length_or_optimizer_groups(tmp_path):
    x, y = _lin_data()
    _, first = _sched_run(tmp_path, True)
    first.fit(torch.utils.data.TensorDataset(x[:16], y[:16]))
    _, other = _sched_run(tmp_path, True)
    with pytest.raises(ValueError, match="data order"):
        other.fit(torch.utils.data.TensorDataset(x, y), resume=True)

    Trainer(_lin(), loss_fn=nn.functional.mse_loss, batch_size=4, max_steps=1,
            out_dir=tmp_path / "default", progress=False).fit(
        torch.utils.data.TensorDataset(x, y))
    model = _lin()
    one_group = Trainer(model, torch.optim.AdamW(model.parameters()),
                        loss_fn=nn.functional.mse_loss, batch_size=4, max_steps=2,
                        out_dir=tmp_path / "default", progress=False)
    with pytest.raises(ValueError, match=r"parameter groups of \[1, 1\] parameters, this "
                                         r"trainer's \[2\]"):
        one_group.fit(torch.utils.data.TensorDataset(x, y), resume=True)


class _Tokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.cls_token = nn.Parameter(torch.randn(1, 1, 3))
        self.pos_embed = nn.Parameter(torch.randn(5, 3))
        self.patch_embed = nn.Linear(4, 3)
        self.norm = nn.LayerNorm(3)
        self.head = nn.Linear(3, 2)
        self.frozen = nn.Parameter(torch.randn(3, 3), requires_grad=False)

    def forward(self, batch):
        # zero gradients everywhere: one AdamW step then only applies the weight decay
        return {"loss": sum((p * 0).sum() for p in self.parameters() if p.requires_grad)}


def test_default_optimizer_decays_weights_only():
    """The default AdamW leaves biases, norms, tokens and embeddings undecayed: with
    zero gradients, one step multiplies the decayed weights by 1 - lr * weight_decay
    and leaves the rest as they were (and skips frozen parameters)."""
    torch.manual_seed(0)
    model = _Tokens()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    Trainer(model, lr=0.1, weight_decay=0.5, batch_size=2, max_steps=1,
            progress=False).fit(torch.randn(2, 1, 4))
    decayed = {"patch_embed.weight", "head.weight"}
    for name, value in model.state_dict().items():
        factor = 1 - 0.1 * 0.5 if name in decayed else 1.0
        torch.testing.assert_close(value, before[name] * factor, rtol=1e-6, atol=0,
                                   msg=name)

    mae = SSL.build("mae_1d", **TINY_MAE)
    groups = Trainer(mae, progress=False).optimizer.param_groups
    names = {id(p): n for n, p in mae.named_parameters()}
    no_decay = {names[id(p)] for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    expected = {n for n, p in mae.named_parameters() if p.ndim <= 1} | {
        "cls_token", "mask_token", "pos_embed", "decoder_pos_embed"}
    assert no_decay == expected
    assert [g["weight_decay"] for g in groups] == [0.01, 0.0]


def test_no_weight_decay_names_of_the_model_are_honoured():
    from fastecg.train.optim import param_groups

    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    model.no_weight_decay = lambda: {"1.weight"}
    groups = param_groups(model, 0.1)
    assert [[id(p) for p in g["params"]] for g in groups] == [
        [id(model[0].weight)], [id(model[0].bias), id(model[1].weight), id(model[1].bias)]]


def test_a_callbacks_eval_does_not_leave_the_model_in_eval_mode():
    model = _Recorder()

    def validate(trainer, metrics):
        trainer.model.eval()

    Trainer(model, batch_size=4, max_steps=3, progress=False, callbacks=[validate]).fit(
        _indexed(12))
    assert model.modes == [True, True, True]


def _amp_run(out_dir, amp, max_steps=4):
    torch.manual_seed(0)
    model = _lin()
    return model, Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1),
                          loss_fn=nn.functional.mse_loss, batch_size=4, max_steps=max_steps,
                          out_dir=out_dir, progress=False, amp=amp)


def test_resume_refuses_another_amp_naming_both(tmp_path):
    """A checkpoint written with amp="bf16" resumed with amp=None (or the reverse) went
    on at another precision, and fp16's loss scale was dropped silently (or, the other
    way, torch failed on an empty scaler state): a ValueError naming both, before
    anything is loaded. The same amp resumes."""
    x, y = _lin_data()
    data = torch.utils.data.TensorDataset(x, y)
    for saved, other_amp in (("bf16", None), (None, "bf16")):
        folder = tmp_path / str(saved)
        _amp_run(folder, saved, max_steps=2)[1].fit(data)
        model, other = _amp_run(folder, other_amp)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        with pytest.raises(ValueError, match=f"written with amp={saved!r}, this run has "
                                             f"amp={other_amp!r}: resume with amp={saved!r}"):
            other.fit(data, resume=True)
        assert other.step == 0
        for k, v in model.state_dict().items():
            assert torch.equal(v, before[k]), k
        same = _amp_run(folder, saved)[1]
        assert same.resume() and same.step == 2

    # fp16 needs CUDA to run; its checkpoint is a state with the scaler's entries
    _, trainer = _amp_run(None, None)
    state = trainer.state_dict()
    fp16 = {**state, "meta": {**state["meta"], "amp": "fp16"},
            "scaler": {"scale": 2.0 ** 16, "growth_factor": 2.0, "backoff_factor": 0.5,
                       "growth_interval": 2000, "_growth_tracker": 3}}
    with pytest.raises(ValueError, match=r"amp='fp16', this run has amp=None"):
        _amp_run(None, None)[1].load_state_dict(fp16)


def test_resume_of_a_checkpoint_that_does_not_record_amp(tmp_path):
    """Older checkpoints have no amp in their meta: accepted, unless their scaler state
    (non-empty only with fp16) disagrees with this run's amp."""
    _, trainer = _amp_run(None, None)
    state = trainer.state_dict()
    old = {**state, "meta": {k: v for k, v in state["meta"].items() if k != "amp"}}
    for amp in (None, "bf16"):
        other = _amp_run(None, amp)[1]
        other.load_state_dict(old)
        assert other.step == state["step"]
    old_fp16 = {**old, "scaler": {"scale": 2.0 ** 16, "growth_factor": 2.0,
                                  "backoff_factor": 0.5, "growth_interval": 2000,
                                  "_growth_tracker": 3}}
    for amp in (None, "bf16"):
        with pytest.raises(ValueError, match=f"holds an fp16 loss-scaler state, this run has "
                                             f"amp={amp!r}: resume with amp='fp16'"):
            _amp_run(None, amp)[1].load_state_dict(old_fp16)


@pytest.mark.cuda
def test_resume_refuses_fp16_without_amp_on_cuda(tmp_path):
    x, y = _lin_data()
    data = torch.utils.data.TensorDataset(x, y)
    first = _amp_run(tmp_path, "fp16", max_steps=2)[1]
    first.fit(data)
    assert first.state_dict()["scaler"]
    with pytest.raises(ValueError, match="amp='fp16', this run has amp=None"):
        _amp_run(tmp_path, None)[1].fit(data, resume=True)
    assert _amp_run(tmp_path, "fp16")[1].resume()


def _resume_on(device, tmp_path):
    x, y = _lin_data()
    data = torch.utils.data.TensorDataset(x, y)
    model, first = _sched_run(tmp_path, True)
    first.max_steps = 2
    first.fit(data)
    torch.manual_seed(0)
    other = _lin()
    opt = torch.optim.SGD(other.parameters(), lr=0.1)
    trainer = Trainer(other, opt, torch.optim.lr_scheduler.StepLR(opt, 1, 0.5),
                      loss_fn=nn.functional.mse_loss, batch_size=4, max_steps=4,
                      out_dir=tmp_path, progress=False, device=device)
    assert trainer.resume() and trainer.step == 2
    return model, other


@pytest.mark.filterwarnings("ignore:.*meta parameter")
def test_resume_onto_another_device_than_the_cpu():
    """The RNG states of a checkpoint must come back as CPU tensors whatever the
    trainer's device (torch.set_rng_state refused the device copies); the "meta" device
    stands for a GPU here."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        _, other = _resume_on("meta", pathlib.Path(folder))
    assert all(p.device.type == "meta" for p in other.parameters())


@pytest.mark.cuda
def test_resume_on_cuda(tmp_path):
    model, other = _resume_on("cuda", tmp_path)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(other.state_dict()[k].cpu(), v, rtol=0, atol=0)


def test_bad_step_counts_are_value_errors():
    for kwargs, name in (({"ckpt_every": 0}, "ckpt_every"), ({"max_steps": -1}, "max_steps"),
                         ({"epochs": 0}, "epochs"), ({"grad_accum": 1.5}, "grad_accum"),
                         ({"batch_size": 0}, "batch_size")):
        with pytest.raises(ValueError, match=name):
            Trainer(Regression(), progress=False, **kwargs)


def test_a_datasets_set_epoch_is_reached_inside_a_subset():
    # ECGStore(random_crop=True) draws its windows by the epoch: wrapped in a Subset (a
    # train split), it was never told the epoch and cropped epoch 0's windows every epoch
    x, y = _lin_data()

    class Cropped(torch.utils.data.TensorDataset):
        epochs: list = []

        def set_epoch(self, epoch):
            self.epochs.append(epoch)

    data = Cropped(x, y)
    model = _lin()
    Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), loss_fn=nn.functional.mse_loss,
            batch_size=4, epochs=3, shuffle=False, progress=False).fit(
        torch.utils.data.Subset(data, range(12)))
    assert data.epochs == [0, 1, 2]


def test_resume_with_other_optimizer_settings_warns_and_keeps_the_checkpoints(tmp_path):
    """PyTorch's optimizer loading takes the checkpoint's lr and weight decay whatever the
    resuming Trainer was given: a warning names each setting that differs (the starting
    rate under a scheduler, whose current rate moves by design); the same settings give
    none."""
    import warnings as w
    x, y = _lin_data()
    data = torch.utils.data.TensorDataset(x, y)

    def run(folder, lr, wd, sched, max_steps):
        torch.manual_seed(0)
        model = _lin()
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
        s = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5) if sched else None
        return Trainer(model, opt, s, loss_fn=nn.functional.mse_loss, batch_size=4,
                       max_steps=max_steps, out_dir=tmp_path / folder, progress=False)

    for sched in (False, True):
        folder = f"s{sched}"
        run(folder, 1e-3, 0.01, sched, 2).fit(data)
        same = run(folder, 1e-3, 0.01, sched, 3)
        with w.catch_warnings():
            w.simplefilter("error")
            same.fit(data, resume=True)
        other = run(folder, 1e-2, 0.05, sched, 4)
        with pytest.warns(UserWarning) as record:
            other.fit(data, resume=True)
        message = " ".join(str(r.message) for r in record)
        key = "initial_lr" if sched else "lr"
        assert f"{key} 0.001 (this trainer's: 0.01)" in message
        assert "weight_decay 0.01 (this trainer's: 0.05)" in message
        group = other.optimizer.param_groups[0]
        assert group["weight_decay"] == 0.01
        # the checkpoint's rate: 1e-3 (halved per step under the scheduler)
        assert group["lr"] == pytest.approx(1e-3 * (0.5 ** 4 if sched else 1))


def test_a_refused_fit_creates_no_output_folder(tmp_path):
    # the folder was made before the data was found too small for one step
    x, y = _lin_data()
    trainer = Trainer(_lin(), loss_fn=nn.functional.mse_loss, batch_size=4, max_steps=1,
                      grad_accum=8, out_dir=tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="fewer than grad_accum"):
        trainer.fit(torch.utils.data.TensorDataset(x, y))
    assert not (tmp_path / "run").exists()
