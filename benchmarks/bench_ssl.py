"""ST-MEM pretraining throughput: fastecg's fused data path against an unfused one.

One pretraining step on a raw batch of (32, 12, 5000) float32 records at 500 Hz (10 s),
forward and backward, 2 threads, ST-MEM at the ``small`` preset of ``fastecg pretrain``
(width 192, depth 4; decoder 128, depth 2), its input contract the ``st_mem`` recipe
(resample to 250 Hz, crop 2250 samples, Butterworth high- and low-pass, standardise):

* ``fused``: the contract's :class:`~fastecg.preprocessors.PreprocManager` on the batch
  (C++ kernels), then ``pretrain_step`` with the fused masking ops (masked patch embedding
  of the kept patches only, loss read from the signal);
* ``unfused``: the same recipe on the NumPy/SciPy path (how the authors' code prepares
  records), then a step whose masking is the reference path of MAE-style code: every
  patch embedded, an argsort of noise, a gather of the kept tokens, and the loss on a
  patchified, normalised copy of the target over all patches, masked by multiplication.

Both run the same model on the same records; the rest of the step (ViT encoder on the
kept tokens, decoder) is identical, so the ratio shows what the data path is worth in a
whole step. Paired rounds (conftest.py). Run with ``OMP_WAIT_POLICY=PASSIVE``::

    OMP_WAIT_POLICY=PASSIVE python -m pytest benchmarks/bench_ssl.py
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastecg.ssl.st_mem as st_mem_module
from fastecg import numpy_path
from fastecg.data import synthetic_ecg
from fastecg.ops import patch_mask
from fastecg.ops.patch_mask import patchify
from fastecg.ssl import STMEM
from fastecg.ssl.cli import PRESETS

torch.set_num_threads(2)
FS = 500.0
RAW = synthetic_ecg(32, seed=0)  # (32, 12, 5000) float32, 500 Hz
RAW_T = torch.from_numpy(RAW)


def _model() -> STMEM:
    torch.manual_seed(0)
    return STMEM(**PRESETS["small"])


MODEL = _model()
NUMPY_PIPELINE = numpy_path.PreprocManager.from_config(MODEL.contract.preprocess, fs=FS)


def _reference_masked_patch_embed(x, weight, bias, pos_embed, patch_size, mask_ratio, mode,
                                  generator=None, lead_embed=None, backend="auto"):
    """Every patch embedded, argsort of noise, gather of the kept tokens."""
    b, c, n = x.shape
    t = n // patch_size
    ids = patch_mask(x, patch_size, mask_ratio, mode, generator, backend="torch")
    tokens = F.linear(patchify(x, patch_size, mode), weight, bias)  # (B, C*T, D)
    tokens = tokens + pos_embed.repeat(c, 1) + lead_embed.repeat_interleave(t, 0)
    kept = tokens.gather(1, ids.ids_keep[..., None].expand(-1, -1, tokens.shape[-1]))
    return kept, ids.mask, ids.ids_restore


def _reference_loss(pred, x, mask, patch_size, norm_pix=True, mode="temporal", eps=1e-6,
                    backend="auto"):
    """A patchified target over all patches, normalised, masked by multiplication."""
    target = patchify(x, patch_size, mode)
    if norm_pix:
        target = (target - target.mean(-1, keepdim=True)) / (
            target.var(-1, keepdim=True) + eps).sqrt()
    return ((pred - target).square().mean(-1) * mask).sum() / mask.sum()


def fused_step():
    MODEL.zero_grad(set_to_none=True)
    x = MODEL.preprocess(RAW_T, FS)
    loss = MODEL.pretrain_step(x, generator=torch.Generator().manual_seed(1))["loss"]
    loss.backward()
    return loss.detach()


def unfused_step():
    MODEL.zero_grad(set_to_none=True)
    x = torch.from_numpy(np.ascontiguousarray(NUMPY_PIPELINE(RAW), dtype=np.float32))
    fused = (st_mem_module.masked_patch_embed, st_mem_module.masked_reconstruction_loss)
    st_mem_module.masked_patch_embed = _reference_masked_patch_embed
    st_mem_module.masked_reconstruction_loss = _reference_loss
    try:
        loss = MODEL.pretrain_step(x, generator=torch.Generator().manual_seed(1))["loss"]
    finally:
        st_mem_module.masked_patch_embed, st_mem_module.masked_reconstruction_loss = fused
    loss.backward()
    return loss.detach()


def test_paths_agree():
    """The two paths compute the same step: same input (to float32 rounding of the
    preprocessing), same masks, the same loss."""
    a, b = fused_step(), unfused_step()
    torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("label", ["fused", "unfused"])
def test_step(benchmark, label):
    fn = {"fused": fused_step, "unfused": unfused_step}[label]
    benchmark.group = "st_mem pretraining step"
    benchmark.extra_info.update({"op": "ssl", "label": label, "shape": list(RAW.shape),
                                 "samples_per_step": RAW.shape[0], "preset": "small",
                                 "threads": torch.get_num_threads()})
    benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=1)


def test_paired_step(paired):
    paired("st_mem pretraining step paired", "ssl",
           {"fused": fused_step, "unfused": unfused_step}, rounds=10)
