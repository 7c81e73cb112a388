"""Contrastive losses under autocast: logits in float32 (not bfloat16), so the loss of
bfloat16 projections matches a float64 NumPy reference on the same values, and the
gradient still reaches the bfloat16 producer."""

import numpy as np
import pytest
import torch
from torch import nn

from fastecg.registry import SSL
from fastecg.ssl import clocs_loss, nt_xent, queue_info_nce

pytestmark = pytest.mark.usefixtures("one_thread")

# Float32 logits of a 32-wide cosine over 0.07 agree with float64 to about 1e-6; bfloat16
# logits (8-bit mantissa) are off by up to 0.05 at that temperature.
ATOL = 2e-5


def _logsumexp(a, axis=-1):
    m = a.max(axis, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis, keepdims=True))).squeeze(axis)


def _unit(a):
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def _nt_xent_ref(z1, z2, tau):
    z = _unit(np.concatenate([z1, z2]))
    n2 = len(z)
    s = z @ z.T / tau
    np.fill_diagonal(s, -np.inf)
    pos = (np.arange(n2) + n2 // 2) % n2
    return np.mean(_logsumexp(s) - s[np.arange(n2), pos])


def _info_nce_ref(q, k, queue, tau):
    logits = np.concatenate([(q * k).sum(1, keepdims=True), q @ queue.T], 1) / tau
    return np.mean(_logsumexp(logits) - logits[:, 0])


def _clocs_ref(z, tau):
    """2 x the mean over ordered pairs of distinct views of -mean_i log softmax_k."""
    z = _unit(z)
    m, n = z.shape[:2]
    out = [np.mean(_logsumexp(z[a] @ z[b].T / tau) - np.diag(z[a] @ z[b].T / tau))
           for a in range(m) for b in range(m) if a != b]
    return 2 * np.mean(out)


def _bf16_projections(rows, width=32, seed=0):
    """Outputs of a Linear under CPU autocast (bfloat16), with a leaf to check grads."""
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(16, width)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(width, 16, generator=g))
    x = torch.randn(rows, 16, generator=g)
    z = lin(x)
    assert z.dtype == torch.bfloat16
    return lin, z


def _np(t):
    return t.detach().double().numpy()


def _check_grad(lin, loss):
    loss.backward()
    grad = lin.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("tau", [0.1, 0.07])
def test_nt_xent_under_autocast_matches_float64(tau):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lin, z = _bf16_projections(16)
        z1, z2 = z[:8], z[8:]
        loss = nt_xent(z1, z2, tau)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(_nt_xent_ref(_np(z1), _np(z2), tau), abs=ATOL)
    _check_grad(lin, loss)


@pytest.mark.parametrize("tau", [0.2, 0.07])
def test_queue_info_nce_under_autocast_matches_float64(tau):
    g = torch.Generator().manual_seed(1)
    queue = nn.functional.normalize(torch.randn(64, 32, generator=g), dim=1)  # float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lin, z = _bf16_projections(16)
        q = nn.functional.normalize(z[:8], dim=1)
        k = nn.functional.normalize(z[8:], dim=1).detach()
        loss = queue_info_nce(q, k, queue, tau)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(_info_nce_ref(_np(q), _np(k), _np(queue), tau),
                                        abs=ATOL)
    _check_grad(lin, loss)


def test_moco_v3_batch_info_nce_under_autocast_matches_float64():
    model = SSL.build({"name": "moco", "version": 3, "temperature": 0.07, "n_leads": 3,
                       "seq_len": 400, "fs": 50.0,
                       "encoder": {"name": "resnet18", "stem_channels": 8,
                                   "widths": [8, 8, 8, 8]}})
    tau = model.temperature
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lin, z = _bf16_projections(16)
        q, k = z[:8], nn.functional.normalize(z[8:], dim=1).detach()
        loss = model._batch_info_nce(q, k)
    qn, kn = _unit(_np(q)), _np(k)
    logits = qn @ kn.T / tau
    ref = np.mean(_logsumexp(logits) - np.diag(logits)) * 2 * tau
    assert loss.item() == pytest.approx(ref, abs=ATOL)
    _check_grad(lin, loss)


def test_clocs_loss_under_autocast_matches_float64():
    # clocs_loss widened its input, but autocast still ran the similarity einsum in
    # bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lin, z = _bf16_projections(24)
        loss = clocs_loss(z.view(3, 8, 32), 0.1)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(_clocs_ref(_np(z).reshape(3, 8, 32), 0.1), abs=ATOL)
    _check_grad(lin, loss)


def test_losses_keep_float64_and_leave_autocast_state():
    z = torch.randn(2, 4, 8, dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert nt_xent(z[0], z[1], 0.1).dtype == torch.float64
        assert clocs_loss(z, 0.1).dtype == torch.float64
        assert torch.is_autocast_enabled("cpu")
    assert nt_xent(z[0], z[1], 0.1).item() == pytest.approx(
        _nt_xent_ref(z[0].numpy(), z[1].numpy(), 0.1), rel=1e-12)
