"""The fused pass's Triton kernels (AugmenterManager's ``triton`` backend) against the
torch backend and the C++ kernel: every augmenter, the torch_ecg seven-step config and the
ECG-physics pipeline, per-sample reproducibility whatever the batch split, the kernel's
statistics and checks.

On a GPU the kernels run there; on a CPU machine under TRITON_INTERPRET=1 (set by
tests/conftest.py) on CPU tensors, so the shapes are small. Tolerance: 1e-6 of the
output's peak, as for the C++ kernel (tests/augmenters/test_fused.py)."""

import pytest
import torch

import fastecg
from fastecg.augmenters import AugmenterManager, fused
from fastecg.ops.augment import OpCode, augment_pass, fused_backend, lead_stats

from test_augmenter_manager import PER_SAMPLE, TORCH_ECG_CONFIG, same_whatever_the_split
from test_augmenters import CONFIGS, TWELVE, ecg
from test_fused import (FS, a_poisoned_sample_alike_on_every_backend, assert_close_to_peak, both,
                        lead_mixing_reads_only_weighted_leads,
                        samples_not_mixed_are_left_as_they_are)

pytestmark = [pytest.mark.triton,
              pytest.mark.skipif(not fastecg.backends()["triton"].available,
                                 reason=fastecg.backends()["triton"].reason)]

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
CPU_BUILT = fastecg.backends()["cpu"].available


def on_triton(am, *args, **kwargs):
    """The manager's outputs on the torch and triton backends, checked equal within 1e-6
    of the peak; returns both."""
    args = [a.to(DEVICE) if isinstance(a, torch.Tensor) else a for a in args]
    return both(am, *args, backend="triton", **kwargs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_augmenter_matches_the_torch_backend(name, dtype):
    config = {k: v for k, v in CONFIGS[name].items() if k != "fs"}
    am = AugmenterManager({"name": name, **config}, fs=FS)
    shape = (4, 12, 320) if dtype == torch.float32 else (2, 3, 12, 320)
    x = ecg(shape, dtype=dtype)
    lead_dims = shape[:-2]
    label = torch.rand(*lead_dims, 5, dtype=dtype)
    mask = torch.rand(*lead_dims, shape[-1], 2, dtype=dtype)
    ref, _ = on_triton(am, x, label, mask, seed=3, epoch=1)
    if name != "label_smooth":
        assert not torch.equal(ref[0].cpu(), x)


def test_one_lead_signals():
    names = sorted(n for n in CONFIGS if n not in TWELVE)
    am = AugmenterManager(*({"name": n, **{k: v for k, v in CONFIGS[n].items() if k != "fs"}}
                            for n in names if n not in ("random_crop", "cutmix")), fs=FS)
    on_triton(am, ecg((3, 1, 200)), torch.rand(3, 4), seed=8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_ecg_seven_steps_and_the_physics_pipeline(dtype):
    seven = AugmenterManager.from_config(TORCH_ECG_CONFIG)
    x, label = ecg((6, 12, 300), dtype=dtype), torch.rand(6, 26, dtype=dtype)
    on_triton(seven, x, label, seed=5)
    # Every per-sample augmenter (physics ones included), Mixup, a torch step (CutMix)
    # and a second warp, renormalisation and noise after them: stages, statistics and a
    # materialised step all chain.
    am = AugmenterManager(*PER_SAMPLE, {"name": "mixup"}, {"name": "cutmix"},
                          {"name": "stretch_compress", "prob": 0.9},
                          {"name": "random_renormalize", "per_channel": True},
                          {"name": "gaussian_noise", "prob": 1.0},
                          {"name": "random_crop", "length": 200},
                          {"name": "reduced_lead_set", "leads": 6, "mode": "drop"}, fs=FS)
    mask = torch.rand(6, 300, dtype=dtype)
    ref, _ = on_triton(am, x, label, mask, seed=11, epoch=2)
    assert ref[0].shape == (6, 6, 200) and ref[2].shape == (6, 200)


def test_same_sample_same_result_whatever_the_batch():
    # 64 samples as one batch, as 4 batches of 16 and as 2 index-sharded ranks of 32.
    am = AugmenterManager(*PER_SAMPLE, fs=FS)
    x, label = ecg((64, 12, 128)).to(DEVICE), torch.rand(64, 5, device=DEVICE)
    index = torch.arange(1000, 1064, device=DEVICE)
    whole = same_whatever_the_split(am, (x, label), index, "triton")
    assert_close_to_peak(am(x, label, seed=42, epoch=3, indices=index, backend="torch")[0],
                         whole[0])


def test_backend_choice(monkeypatch):
    calls = []
    real = fused.augment_pass

    def spy(*args, **kwargs):
        calls.append(args[-1])
        return real(*args, **kwargs)

    monkeypatch.setattr(fused, "augment_pass", spy)
    am = AugmenterManager({"name": "amplitude_scale"}, {"name": "time_shift"}, fs=FS)
    x = ecg((4, 12, 100), dtype=torch.float64).to(DEVICE)
    am(x, seed=0, backend="triton")
    assert calls == ["triton"]
    calls.clear()
    am(x, seed=0)
    # "auto" never takes the interpreter for CPU tensors; on a GPU cuda, else triton.
    expected = fused_backend(x)[0]
    assert expected == ("cpu" if DEVICE == "cpu" else
                        "cuda" if fastecg.backends()["cuda"].available else "triton")
    assert calls == ([expected] if CPU_BUILT or DEVICE == "cuda" else [])
    with pytest.raises(ValueError, match="backend 'cuda' cannot run here"):
        am(ecg((2, 12, 50)), seed=0, backend="cuda")


def _all_ops(dtype, n=3, leads=12, t=300):
    """Every op code once or twice, with the tensors each takes (on DEVICE)."""
    g = torch.Generator().manual_seed(1)

    def r(*shape, dt=dtype):
        return torch.rand(*shape, generator=g, dtype=dt)

    j = 3
    codes = [OpCode.LEAD_MIX, OpCode.LEAD_AFFINE, OpCode.SINES, OpCode.NOISE, OpCode.TIME_MASK,
             OpCode.ADD_ROWS, OpCode.WARP, OpCode.NOISE, OpCode.PAIR, OpCode.LEAD_AFFINE,
             OpCode.SINES, OpCode.FIR_NOISE]
    keys = torch.randint(0, 2 ** 32, (n, 3, 2), generator=g)
    start = torch.randint(0, t, (n, 2), generator=g)
    fir_std = r(n, 3)
    fir_std[0, 1] = fir_std[1] = 0  # a lead, and a whole sample, left alone
    tensors = [r(n, 3, leads, dt=torch.float64) - 0.5, r(n, 3), r(n, 3),
               r(n, 3, j), r(j, t), keys, r(n, 3), keys.flip(-1), r(n, 3),
               start, start + 20, r(n, 3, t),
               torch.tensor([-5, 3, 0]), torch.tensor([280, 300, 250]),
               torch.tensor([0.9, 1.1, 1.0], dtype=torch.float64), keys, r(n, 3),
               torch.tensor([2, 1, 0]), torch.tensor([0.3, 1.0, 0.8], dtype=torch.float64),
               r(n, 3), r(n, 3), r(n, 3, j), r(j, 280), torch.empty(0, dtype=torch.long),
               torch.empty(0, dtype=dtype), keys.flip(0), fir_std, r(7) - 0.5]
    return codes, [280], [0.5], [v.to(DEVICE) for v in tensors]


@pytest.mark.skipif(not CPU_BUILT, reason="fastecg._C is not built")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernel_matches_the_cpu_kernel_op_by_op(dtype):
    x = ecg((3, 12, 300), dtype=dtype)
    codes, ints, floats, tensors = _all_ops(dtype)
    ref, ref_stats = augment_pass(x, codes, ints, floats, [t.cpu() for t in tensors],
                                  stats=True, backend="cpu")
    out, stats = augment_pass(x.to(DEVICE), codes, ints, floats, tensors, stats=True,
                              backend="triton")
    assert out.shape == (3, 3, 280) and stats.shape == (3, 3, 4)
    assert_close_to_peak(ref, out.cpu())
    peak = float(ref.abs().max())
    torch.testing.assert_close(stats[..., :2].cpu(), ref_stats[..., :2], rtol=0,
                               atol=1e-6 * peak)
    torch.testing.assert_close(stats[..., 2:].cpu(), ref_stats[..., 2:], rtol=1e-5, atol=0)
    # Prefixes: each stage boundary (warp, pairing) and the source-only pass.
    for end in (1, 6, 8, 9):
        k = sum(_n_tensors(c) for c in codes[:end])
        a, _ = augment_pass(x, codes[:end], ints[:int(end > 6)], floats[:int(end > 4)],
                            [t.cpu() for t in tensors[:k]], backend="cpu")
        b, _ = augment_pass(x.to(DEVICE), codes[:end], ints[:int(end > 6)],
                            floats[:int(end > 4)], tensors[:k], backend="triton")
        assert_close_to_peak(a, b.cpu())


def _n_tensors(code):
    return {OpCode.LEAD_MIX: 1, OpCode.LEAD_AFFINE: 2, OpCode.SINES: 4, OpCode.NOISE: 2,
            OpCode.TIME_MASK: 2, OpCode.ADD_ROWS: 1, OpCode.WARP: 3, OpCode.PAIR: 2,
            OpCode.FIR_NOISE: 3}[code]


def test_kernel_statistics_checks_and_output_buffer():
    x = ecg((3, 4, 300), dtype=torch.float64).to(DEVICE)
    gain = torch.rand(3, 4, dtype=torch.float64, device=DEVICE)
    shift = torch.rand(3, 4, dtype=torch.float64, device=DEVICE)
    out, stats = augment_pass(x, [OpCode.LEAD_AFFINE], [], [], [gain, shift], stats=True,
                              backend="triton")
    ref = x * gain[..., None] + shift[..., None]
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-14)
    expected = torch.stack([ref.amin(-1), ref.amax(-1), ref.sum(-1), ref.square().sum(-1)], -1)
    torch.testing.assert_close(stats, expected)
    torch.testing.assert_close(lead_stats(ref, "triton"), expected)
    # A 0.1x compression reads ten times as far.
    offset = torch.zeros(3, dtype=torch.long, device=DEVICE)
    limit = torch.full((3,), 300, device=DEVICE)
    ratio = torch.full((3,), 10.0, dtype=torch.float64, device=DEVICE)
    out, _ = augment_pass(x, [OpCode.WARP], [30], [], [offset, limit, ratio], backend="triton")
    torch.testing.assert_close(out, x[..., ::10], rtol=0, atol=0)
    buf = torch.empty_like(x)
    out, _ = augment_pass(x, [OpCode.LEAD_AFFINE], [], [], [gain, shift], out=buf,
                          backend="triton")
    assert out is buf and torch.equal(buf, ref)
    with pytest.raises(RuntimeError, match="must not overlap x"):
        augment_pass(x, [OpCode.LEAD_AFFINE], [], [], [gain, shift], out=x, backend="triton")
    with pytest.raises(RuntimeError, match="gain must have shape"):
        augment_pass(x, [OpCode.LEAD_AFFINE], [], [], [gain[:2], shift], backend="triton")
    with pytest.raises(RuntimeError, match="unknown op code"):
        augment_pass(x, [99], [], [], [], backend="triton")
    with pytest.raises(RuntimeError, match="more tensors"):
        augment_pass(x, [], [], [], [gain], backend="triton")
    if DEVICE == "cpu":  # on a GPU the check is a device-side assertion
        with pytest.raises(RuntimeError, match="partner out of range"):
            augment_pass(x, [OpCode.PAIR], [], [], [torch.tensor([0, 1, 5]),
                                                    torch.ones(3, dtype=torch.float64)],
                         backend="triton")


_COMPILE_FOR_SM90 = r'''
import sys
import torch, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.runtime.jit import MockTensor, mangle_type
from fastecg.triton_kernels import augment as ta
sys.path.insert(0, sys.argv[1])
from test_fused_triton import _all_ops

def sig(v):
    if isinstance(v, tuple):
        return tuple(sig(e) for e in v)
    return mangle_type(MockTensor(v.dtype)) if isinstance(v, torch.Tensor) else "i64"

for dtype in (torch.float32, torch.float64):
    x = torch.zeros(3, 12, 300, dtype=dtype)
    codes, ints, floats, tensors = _all_ops(dtype)
    stages, params = ta._parse(x, [int(c) for c in codes], ints, floats, tensors)
    stages.append(ta._Stage((-1, 0), 12, 300, 300))  # lead_stats' form
    for k, st in enumerate(stages):
        args = dict(x_ptr=x, out_ptr=x, partial_ptr=x.double(), P=tuple(params),
                    floats_ptr=x.double(), radius_ptr=x, cosine_ptr=x, t_len=1, t_in=1, tiles=1)
        consts = dict(L0=st.lin, LP=max(2, triton.next_power_of_2(st.lmax)), HEAD=st.head,
                      OPS=tuple(st.ops), LOUT=st.lout, WRITE=k < len(stages) - 1, STATS=True,
                      BLOCK=256)
        signature = {name: sig(v) for name, v in args.items()}
        signature.update({name: "constexpr" for name in consts})
        compiled = triton.compile(ASTSource(ta._stage_kernel, signature, constexprs=consts),
                                  target=GPUTarget("cuda", 90, 32))
        assert compiled.asm["cubin"]
print("compiled", len(stages) * 2)
'''


@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU runs the kernels themselves")
def test_kernels_compile_for_a_gpu_without_one():
    # The interpreter runs the kernels' Python, not Triton's compiler: compile every stage
    # form (a source with all point-wise ops, a warp, a pairing, the statistics alone) for
    # sm_90 in a process where the kernels are not interpreted.
    import os
    import pathlib
    import subprocess
    import sys

    pytest.importorskip("triton.backends.nvidia")
    here = str(pathlib.Path(__file__).parent)
    run = subprocess.run([sys.executable, "-c", _COMPILE_FOR_SM90, here], capture_output=True,
                         text=True, env={**os.environ, "TRITON_INTERPRET": "0",
                                         "TRITON_DEFAULT_FP_FUSION": "1"}, cwd=here)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "compiled 8" in run.stdout


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fir_noise_across_tiles(dtype):
    # FIR_NOISE against its torch form over more than one tile (the interpreter's tiles
    # are 4096 samples, a GPU's 256), taps not symmetric, a row with std 0.
    from fastecg.augmenters.physics import fir_hash_noise

    g = torch.Generator().manual_seed(8)
    x = ecg((2, 2, 4200), dtype=dtype)
    keys = torch.randint(0, 2 ** 32, (2, 2, 2), generator=g)
    std = torch.rand(2, 2, generator=g, dtype=dtype)
    std[1, 0] = 0
    taps = torch.randn(7, generator=g, dtype=dtype) + 0.2
    taps /= taps.square().sum().sqrt()
    out, _ = augment_pass(x.to(DEVICE), [OpCode.FIR_NOISE], [], [],
                          [t.to(DEVICE) for t in (keys, std, taps)], backend="triton")
    assert_close_to_peak(x + fir_hash_noise(keys, std, taps, 4200), out.cpu())
    assert torch.equal(out[1, 0].cpu(), x[1, 0])


def test_samples_not_mixed_are_left_as_they_are():
    samples_not_mixed_are_left_as_they_are("triton", DEVICE)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_poisoned_sample_alike_on_every_backend(bad):
    a_poisoned_sample_alike_on_every_backend(bad, "triton", DEVICE)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_lead_mixing_reads_only_weighted_leads(bad):
    lead_mixing_reads_only_weighted_leads(bad, "triton", DEVICE)
