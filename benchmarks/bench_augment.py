"""Augmentation: torch_ecg's documented seven-step config end to end (parameter drawing
included) on fastecg against torch_ecg, ecg-augmentations 1.0.1, a careful batched-torch
version of the same steps, and ``clone()`` of the batch; then the full pipeline with the
ECG-physics augmenters added, against ``clone()``.

Workload: (32, 12, 5000) float32 at 500 Hz, labels (32, 26), 2 threads. Run with
``OMP_WAIT_POLICY=PASSIVE`` (see bench_preproc.py)::

    OMP_WAIT_POLICY=PASSIVE python -m pytest benchmarks/bench_augment.py

Peers (install in the benchmark environment only: ``pip install --no-deps torch-ecg
ecg-augmentations==1.0.1``; each is skipped with a message when absent):

* ``torch_ecg``: its AugmenterManager from the README's config (baseline wander, label
  smooth, mixup, random flip, random masking, random renormalize, stretch/compress, all
  defaults). It modifies its input, so each call gets a fresh copy (the copy is timed:
  a caller who keeps the batch must make it). Installed with --no-deps, its package
  imports modules the augmenters never call (boto3, sklearn, ...): those are stubbed.
* ``ecg_augmentations``: the same steps it has (BaselineWander, Invert, TimeMask,
  AmplitudeScale, TimeStretch with p = 0.5 each, then Mixup): six of the seven.
* ``careful_torch``: the seven steps in batched torch written with care: parameters drawn
  for the whole batch at once, sinusoids as one matmul, masks by broadcasting, one
  gather for the stretch, ``var_mean`` for the renormalisation, ``torch.randn`` noise.
* ``fastecg``: :class:`fastecg.augmenters.AugmenterManager` of the same config, keyed per
  sample (seed, epoch, index), on its default backend: the fused C++ pass (``cpu``) when
  ``fastecg._C`` is built; ``fastecg_torch`` is the same manager on its torch backend (the
  reference the fused pass is tested against).

Ratios come from paired rounds (conftest.py): every candidate once per round, the order
rotated, so load drifting over the run does not skew them.
"""

import os
import warnings

import pytest
import torch

from fastecg.augmenters import AugmenterManager
from fastecg.bench.peers import import_torch_ecg
from fastecg.bench.workloads import AUGMENT_CONFIG, careful_torch

torch.set_num_threads(2)
if os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
    warnings.warn("run the augmentation benchmark with OMP_WAIT_POLICY=PASSIVE (see the "
                  "module docstring)")

FS = 500.0
SHAPE = (32, 12, 5000)
X = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)).cumsum(-1) / 50
Y = (torch.rand(SHAPE[0], 26, generator=torch.Generator().manual_seed(1)) < 0.1).float()
TORCH_ECG_CONFIG = dict(AUGMENT_CONFIG, fs=FS)
PHYSICS = [{"name": "powerline_noise"}, {"name": "emg_noise"}, {"name": "gaussian_noise"},
           {"name": "amplitude_scale"}, {"name": "time_shift"}, {"name": "random_leads_mask",
                                                                  "prob": 0.5},
           {"name": "vcg_rotation"}]


TORCH_ECG = import_torch_ecg("torch_ecg.augmenters")
try:
    import ecg_augmentations as EA
except ImportError:
    EA = None


# ---- candidates --------------------------------------------------------------------------

FASTECG = AugmenterManager.from_config(TORCH_ECG_CONFIG)
FULL = AugmenterManager.from_config(TORCH_ECG_CONFIG)
for step in PHYSICS:
    FULL.add_(step)
_calls = {"n": 0}


def _fastecg(am, backend="auto"):
    def run():
        _calls["n"] += 1  # a new epoch per call: new draws, as in training
        return am(X, Y, seed=1234, epoch=_calls["n"], indices=torch.arange(SHAPE[0]),
                  backend=backend)
    return run


def _candidates():
    out = {}
    if TORCH_ECG is not None:
        te = TORCH_ECG.AugmenterManager.from_config(dict(TORCH_ECG_CONFIG, fs=int(FS)))
        out["torch_ecg"] = lambda: te(X.clone(), Y.clone())
    if EA is not None:
        steps = EA.Compose([EA.BaselineWander(FS, p=0.5), EA.Invert(p=0.5),
                            EA.TimeMask(FS, p=0.5), EA.AmplitudeScale(p=0.5),
                            EA.TimeStretch(p=0.5)])
        mix = EA.Mixup(alpha=0.5)
        gen = torch.Generator().manual_seed(0)
        out["ecg_augmentations"] = lambda: mix(steps(X, generator=gen), Y, generator=gen)
    gen_t = torch.Generator().manual_seed(0)
    out["careful_torch"] = lambda: careful_torch(X, Y, gen_t, FS)
    out["fastecg"] = _fastecg(FASTECG)
    out["fastecg_torch"] = _fastecg(FASTECG, "torch")
    out["clone"] = lambda: X.clone()
    return out


def test_peers_present():
    if TORCH_ECG is None:
        pytest.skip("torch_ecg not installed (pip install --no-deps torch-ecg)")
    if EA is None:
        pytest.skip("ecg-augmentations not installed (pip install --no-deps "
                    "ecg-augmentations==1.0.1)")


def test_seven_steps_paired(paired):
    candidates = _candidates()
    for fn in candidates.values():  # every candidate runs and keeps the shapes
        out = fn()
        sig = out[0] if isinstance(out, tuple) else out
        assert sig.shape == SHAPE
    paired("augment torch_ecg seven steps paired", "augment", candidates, rounds=15)


def test_seven_steps_paired_steady(paired):
    """The same rounds with an untimed call of each candidate before its timed one: the
    back-to-back time of each (fastecg's few milliseconds otherwise carry the cold cache
    and the idle second core that torch_ecg's single-threaded 200 ms leave)."""
    paired("augment torch_ecg seven steps paired steady", "augment", _candidates(),
           rounds=15, steady=True)


def test_full_pipeline_paired(paired):
    candidates = {"fastecg_full": _fastecg(FULL), "fastecg_seven": _fastecg(FASTECG),
                  "clone": lambda: X.clone()}
    paired("augment full pipeline (seven + physics) paired", "augment", candidates, rounds=15)


def test_fused_pass_matches_the_torch_backend():
    """The timed fused pass computes what the torch backend computes (1e-6 of the peak)."""
    for am in (FASTECG, FULL):
        ref = am(X, Y, seed=1234, epoch=0, indices=torch.arange(SHAPE[0]), backend="torch")
        out = am(X, Y, seed=1234, epoch=0, indices=torch.arange(SHAPE[0]))
        for a, b in zip(ref, out):
            torch.testing.assert_close(b, a, rtol=0, atol=1e-6 * float(a.abs().max()))


@pytest.mark.parametrize("label", ["fastecg", "careful_torch", "clone"])
def test_seven_steps(benchmark, label):
    benchmark.group = "augment torch_ecg seven steps"
    benchmark.extra_info.update({"op": "augment", "label": label, "shape": list(SHAPE),
                                 "dtype": "float32", "device": "cpu",
                                 "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")})
    benchmark(_candidates()[label])
