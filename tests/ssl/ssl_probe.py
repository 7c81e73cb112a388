"""Shared by the SSL methods' tests: labelled synthetic ECG, a short pretraining in a
plain loop, and a linear probe on frozen embeddings (as tests/ssl/test_linear_probe.py)."""

import torch
from torch import nn

from fastecg.data import SyntheticECGDataset
from fastecg.registry import SSL

N_TRAIN = 240


def synthetic_records(per_lead: bool):
    """320 labelled records (5 balanced classes, 2 per patient) of 3 leads, 8 s at 50 Hz,
    standardised per lead or per record; the first 240 for pretraining and the probe's
    training, the last 80 (40 unseen patients) for its test. Returns (x, y, patient)."""
    ds = SyntheticECGDataset(320, fs=50.0, seconds=8.0, n_leads=3, seed=0)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    y = torch.tensor([int(ds[i][1]) for i in range(len(ds))])
    dims = -1 if per_lead else (-1, -2)
    x = (x - x.mean(dims, keepdim=True)) / x.std(dims, keepdim=True)
    return x, y, torch.arange(len(ds)) // 2


def probe_accuracy(model, x, y) -> float:
    """L2 logistic regression (LBFGS) on the frozen, standardised embeddings."""
    model.eval()
    with torch.no_grad():
        f = model.embed(x)
    f = (f - f[:N_TRAIN].mean(0)) / (f[:N_TRAIN].std(0) + 1e-6)
    torch.manual_seed(0)
    clf = nn.Linear(f.shape[1], 5)
    opt = torch.optim.LBFGS(clf.parameters(), max_iter=300)

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(clf(f[:N_TRAIN]), y[:N_TRAIN]) \
            + 1e-3 * clf.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return (clf(f[N_TRAIN:]).argmax(1) == y[N_TRAIN:]).float().mean().item()


def pretrain(config, data, steps, lr, patient_ids=False, batch_size=32):
    """A plain loop (SSL methods are plain modules) over shuffled batches of the first
    N_TRAIN records; returns (pretrained model, random-init twin, losses)."""
    x, _, pid = data
    torch.manual_seed(0)
    random_init = SSL.build(config)
    torch.manual_seed(0)
    model = SSL.build(config)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    per_epoch = N_TRAIN // batch_size
    losses = []
    model.train()
    for step in range(steps):
        if step % per_epoch == 0:
            order = torch.randperm(N_TRAIN, generator=g)
        idx = order[(step % per_epoch) * batch_size:][:batch_size]
        kw = {"patient_ids": pid[idx]} if patient_ids else {}
        loss = model.pretrain_step(x[idx], **kw)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model, random_init, losses


def plain_loop_losses(model, x, steps: int = 80, lr: float = 3e-3) -> list:
    """``steps`` AdamW steps of ``model.pretrain_step(x)`` on one fixed batch, in a
    user's own loop (an SSL method is a plain nn.Module); the loss of each step."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = model.pretrain_step(x)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
