"""Under DistributedDataParallel (2 gloo processes under torchrun) the contrastive losses
use every rank's negatives: the loss and the gradients equal one process's on the
global batch."""

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest
import torch

from fastecg.registry import SSL

ROOT = pathlib.Path(__file__).resolve().parents[2]
# No batch norm in the encoder (its statistics would be each rank's) and no dropout.
ENC = {"name": "transformer", "embed_dim": 16, "depth": 1, "num_heads": 2, "patch_size": 20,
       "dropout": 0.0}
COMMON = {"encoder": ENC, "n_leads": 3, "seq_len": 400, "fs": 50.0}
# CLOCS's segment starts are keyed by each record's position in the global batch (and a
# seed drawn alike on every rank): random starts match one process's too.
CASES = {
    "simclr": ({"name": "simclr"}, False),
    "moco_v2": ({"name": "moco", "queue_size": 16}, False),
    "moco_v3": ({"name": "moco", "version": 3}, False),
    "clocs_cmsc": ({"name": "clocs", "segment_len": 200}, True),
    "clocs_cmsmlc": ({"name": "clocs", "variant": "cmsmlc", "segment_len": 200}, True),
    "clocs_random_starts": ({"name": "clocs", "segment_len": 150}, True),
}
GLOBAL_BATCH = 8

SCRIPT = textwrap.dedent("""
    import sys, torch
    import torch.distributed as dist
    from fastecg.registry import SSL

    cases, global_batch, out = {cases!r}, {global_batch}, sys.argv[1]
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    n = global_batch // world
    results = {{}}
    for name, (config, with_ids) in cases.items():
        x = torch.randn(global_batch, 3, 400, generator=torch.Generator().manual_seed(1))
        ids = torch.tensor([0, 0, 1, 2, 2, 3, 4, 4])
        torch.manual_seed(0)
        model = torch.nn.parallel.DistributedDataParallel(SSL.build(config))
        torch.manual_seed(1)  # the augmentation seed: the same draw on every rank
        part = x[rank * n:(rank + 1) * n]
        batch = {{"signal": part, "patient_id": ids[rank * n:(rank + 1) * n]}} \
            if with_ids else part
        loss = model(batch)["loss"]  # DDP's forward: SSLMethod.forward is pretrain_step
        loss.backward()
        grads = {{k: p.grad.clone() for k, p in model.module.named_parameters()
                  if p.grad is not None}}
        buffers = {{k: b.clone() for k, b in model.module.named_buffers()}}
        results[name] = {{"loss": loss.detach(), "grads": grads, "buffers": buffers}}
    torch.save(results, f"{{out}}.{{rank}}")
    dist.destroy_process_group()
""")


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "python"), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


def _one_process(config, with_ids):
    x = torch.randn(GLOBAL_BATCH, 3, 400, generator=torch.Generator().manual_seed(1))
    ids = torch.tensor([0, 0, 1, 2, 2, 3, 4, 4])
    torch.manual_seed(0)
    model = SSL.build(config)
    torch.manual_seed(1)
    loss = model.pretrain_step(x, **({"patient_ids": ids} if with_ids else {}))["loss"]
    loss.backward()
    return model, loss.detach()


@pytest.mark.slow
def test_two_gloo_ranks_equal_one_process_on_the_global_batch(tmp_path):
    cases = {k: ({**COMMON, **cfg}, ids) for k, (cfg, ids) in CASES.items()}
    script = tmp_path / "ddp.py"
    script.write_text(SCRIPT.format(cases=cases, global_batch=GLOBAL_BATCH))
    out = tmp_path / "ddp.pt"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", str(script), str(out)], env=_env(),
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(f"{out}.{r}", weights_only=True) for r in range(2)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, (config, with_ids) in cases.items():
            model, loss = _one_process(config, with_ids)
            grads = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
            for r in ranks:
                got = r[name]
                torch.testing.assert_close(got["loss"], loss, rtol=1e-5, atol=1e-6,
                                           msg=lambda m: f"{name} loss: {m}")
                assert set(got["grads"]) == set(grads), name
                for k, g in grads.items():
                    torch.testing.assert_close(got["grads"][k], g, rtol=1e-4, atol=1e-6,
                                               msg=lambda m: f"{name} grad {k}: {m}")
                for k, b in model.named_buffers():  # MoCo's queue holds both ranks' keys
                    torch.testing.assert_close(got["buffers"][k], b, rtol=1e-5, atol=1e-6)
            # Negatives from the other rank matter: the mean of the two halves' own losses
            # is another number (by ten times the tolerance the equality above allows).
            x = torch.randn(GLOBAL_BATCH, 3, 400, generator=torch.Generator().manual_seed(1))
            halves = []
            for part in (x[:4], x[4:]):
                torch.manual_seed(0)
                half = SSL.build(config)
                torch.manual_seed(1)
                with torch.no_grad():
                    halves.append(half.pretrain_step(part)["loss"])
            assert abs(float(sum(halves) / 2 - loss)) > 10 * (1e-5 * abs(float(loss)) + 1e-6), \
                name
    finally:
        torch.set_num_threads(threads)
