"""The counter-based generator: Philox against Random123's known answers, the dense-noise
hash against a plain-Python transcription, and the distributions they give."""

import math

import pytest
import torch

from fastecg.augmenters import _random
from fastecg.augmenters._random import Keys, hash_normal, philox4x32
from fastecg.ops.augment import fused_pass_available


@pytest.mark.parametrize("counter, key, expected", [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
])
def test_philox_known_answers(counter, key, expected):
    out = philox4x32(*[torch.tensor([c]) for c in counter], *key)
    assert tuple(int(o) for o in out) == expected


def _hash_normal_reference(k1, k2, j):
    m = 0xFFFFFFFF
    x = ((j // 2) * (k1 | 1) + k2) & m
    x ^= x >> 16
    x = (x * 0x7FEB352D) & m
    x ^= x >> 15
    x = (x * 0x846CA68B) & m
    x ^= x >> 16
    u1 = ((x >> 16) + 0.5) / 65536
    trig = math.sin if j % 2 else math.cos
    return math.sqrt(-2 * math.log(u1)) * trig(2 * math.pi * (x & 0xFFFF) / 65536)


def test_hash_normal_matches_its_definition():
    keys = torch.tensor([[0xDEADBEEF, 0x12345678], [3, 0xFFFFFFFF], [0x80000000, 0]])
    z = hash_normal(keys, 11, torch.float64)
    ref = torch.tensor([[_hash_normal_reference(int(k1), int(k2), j) for j in range(11)]
                        for k1, k2 in keys.tolist()], dtype=torch.float64)
    torch.testing.assert_close(z, ref, rtol=0, atol=1e-12)


def test_distributions():
    keys = Keys(7, 3, torch.arange(20000))
    u = keys.uniform(0, 4)
    assert 0 < float(u.min()) and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.005 and abs(float(u.var()) - 1 / 12) < 0.002
    z = keys.normal(1, 2)
    assert abs(float(z.mean())) < 0.02 and abs(float(z.std()) - 1) < 0.02
    noise = hash_normal(keys.bits(2, 2).view(-1, 2)[:200], 1000, torch.float32)
    assert abs(float(noise.mean())) < 0.01 and abs(float(noise.std()) - 1) < 0.01
    # Rows are not shifted copies of each other, and neighbours are uncorrelated.
    corr = torch.corrcoef(noise[:50])
    assert float((corr - torch.eye(50)).abs().max()) < 0.2
    assert abs(float((noise[:, 1:] * noise[:, :-1]).mean())) < 0.01


def test_streams_are_independent_of_the_batch():
    full = Keys(1, 0, torch.arange(10)).uniform(5, 3)
    part = Keys(1, 0, torch.tensor([7, 2])).uniform(5, 3)
    assert torch.equal(part, full[[7, 2]])
    assert not torch.equal(Keys(1, 1, torch.arange(10)).uniform(5, 3), full)  # epoch
    assert not torch.equal(Keys(1, 0, torch.arange(10), slot=1).uniform(5, 3), full)
    assert not torch.equal(Keys(1, 0, torch.arange(10)).uniform(6, 3), full)


@pytest.mark.skipif(fused_pass_available(torch.zeros(1, 1, 1)) is not None,
                    reason="fastecg._C is not built")
def test_philox_kernel_gives_the_torch_words(monkeypatch):
    # Keys draw the same numbers with the C++ kernel as with the torch form (counters of
    # indices beyond 32 bits and several views included).
    native = Keys(5, 2, torch.arange(100, 300)).uniform(9, 70)
    wide = Keys(5, 2, torch.arange(2 ** 40, 2 ** 40 + 50), view=torch.arange(50) % 3).bits(70, 200)
    normal = Keys(5, 2, torch.arange(100, 300), slot=3).normal(9, 33)
    monkeypatch.setattr(_random, "philox_stream", lambda *args: None)
    monkeypatch.setattr(_random, "philox_uniform", lambda *args: None)
    assert torch.equal(Keys(5, 2, torch.arange(100, 300)).uniform(9, 70), native)
    assert torch.equal(Keys(5, 2, torch.arange(2 ** 40, 2 ** 40 + 50),
                            view=torch.arange(50) % 3).bits(70, 200), wide)
    # Normals: the kernel's log and cos (the C library's) against torch's: a few ulp.
    reference = Keys(5, 2, torch.arange(100, 300), slot=3).normal(9, 33)
    torch.testing.assert_close(normal, reference, rtol=1e-14, atol=1e-15)
    assert normal.shape == (200, 33) and abs(float(normal.mean())) < 0.05
    assert abs(float(normal.std()) - 1) < 0.05


@pytest.mark.skipif(fused_pass_available(torch.zeros(1, 1, 1)) is not None,
                    reason="fastecg._C is not built")
@pytest.mark.parametrize("alpha,b", [(0.5, 0.5), (0.2, 3.0), (2.0, 5.0)])
def test_beta_kernel_gives_the_torch_draw(monkeypatch, alpha, b):
    # Mixup's and CutMix's Beta draw: the C++ kernel against the torch form on the same
    # variates (shapes below 1 take the U ** (1 / a) boost), and the Beta's mean.
    from fastecg.augmenters import classic

    keys = Keys(3, 0, torch.arange(20000))
    u, z = keys.uniform(1, 18), keys.normal(2, 16)
    native = classic.beta(u, z, alpha, b)
    monkeypatch.setattr(classic, "beta_from_variates", lambda *args: None)
    reference = classic.beta(u, z, alpha, b)
    torch.testing.assert_close(native, reference, rtol=1e-13, atol=1e-15)
    assert float(native.min()) >= 0 and float(native.max()) <= 1
    mean, var = alpha / (alpha + b), alpha * b / ((alpha + b) ** 2 * (alpha + b + 1))
    assert abs(float(native.mean()) - mean) < 5 * (var / 20000) ** 0.5


@pytest.mark.skipif(fused_pass_available(torch.zeros(1, 1, 1)) is not None,
                    reason="fastecg._C is not built")
@pytest.mark.parametrize("config", [
    {"name": "baseline_wander", "prob": 0.6}, {"name": "random_flip"},
    {"name": "random_flip", "per_channel": False, "prob": 0.7},
    {"name": "random_masking", "prob": (0.8, 0.5)}, {"name": "random_renormalize"},
    {"name": "random_renormalize", "per_channel": True, "mean": (0.0, 2.0)},
    {"name": "random_renormalize", "per_channel": True,
     "mean": [[0.1 * i - 0.5, 0.2 * i] for i in range(12)],
     "std": [[0.5, 1.0 + i] for i in range(12)]},
    {"name": "stretch_compress", "prob": 0.8}, {"name": "stretch_compress", "ratio": 0.3},
    {"name": "mixup", "prob": 0.7}, {"name": "mixup", "alpha": 2.0, "beta": 0.3},
    {"name": "label_smooth"}])
@pytest.mark.parametrize("slot", [1, 3])
def test_draw_kernel_gives_the_torch_draw(monkeypatch, config, slot):
    # Each classic augmenter's whole draw by the C++ kernel (_augment_draw_kernel) against
    # its torch form, on keys with indices beyond 32 bits, several views and a slot: the
    # same parameters (integers, masks and uniform-based values bit for bit; values from
    # normals, Beta and cos within a few ulp).
    from fastecg import ops
    from fastecg.augmenters.fused import FusedPlan
    from fastecg.registry import AUGMENTERS
    from fastecg.transforms.config import SignalInfo

    aug = AUGMENTERS.build(dict(config))
    x = torch.randn(96, 12, 2000, generator=torch.Generator().manual_seed(1)).cumsum(-1)
    info = SignalInfo(500.0, 12, 2000, None)
    aug.infer(info)
    index = torch.cat([torch.arange(48), torch.arange(2 ** 40, 2 ** 40 + 48)])
    keys = Keys(11, 4, index, view=torch.arange(96) % 3, slot=slot)
    # The wander's amplitudes from a read of the signal, and relative to the kernel's
    # peak-to-peak (the fused cpu pass's first op).
    views = [x, FusedPlan(x, None, "cpu", internal=True).view()]
    drawn = [aug.draw(keys, v, info) for v in views]
    monkeypatch.setattr(ops.augment, "_draw_kernels_run", lambda t: False)
    for v, native in zip(views, drawn):
        reference = aug.draw(Keys(11, 4, index, view=torch.arange(96) % 3, slot=slot), v, info)
        assert native.keys() == reference.keys()
        for name, value in reference.items():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                assert native[name].dtype == value.dtype and native[name].shape == value.shape
                torch.testing.assert_close(native[name], value, rtol=1e-13, atol=1e-14)
            elif isinstance(value, torch.Tensor):
                assert native[name].dtype == value.dtype and torch.equal(native[name], value)
            else:
                assert native[name] == value
