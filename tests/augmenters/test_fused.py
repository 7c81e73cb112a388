"""The fused pass (AugmenterManager's ``cpu`` backend) against the torch backend: every
augmenter and whole pipelines, 1-D to 4-D, float32 and float64, labels and masks; the
choice of backend; gradients (routed through the torch code); the kernel's own checks
and statistics.

Tolerance: 1e-6 of the output's peak. Measured differences: float32 up to ~3e-7 of the
peak (the kernel's sums of sinusoids and lead mixes round in another order than torch's
matmuls), float64 ~1e-14; float32 noise within one rounding of torch's (the kernel's
tables and polynomials against torch's float32 log and cos); masks, flips, gains, shifts
and crops are equal bit for bit."""

import pytest
import torch

from fastecg.augmenters import AugmenterManager, fused
from fastecg.ops.augment import OpCode, augment_pass, fused_pass_available

from test_augmenter_manager import PER_SAMPLE, TORCH_ECG_CONFIG
from test_augmenters import CONFIGS, TWELVE, ecg

pytestmark = pytest.mark.skipif(fused_pass_available(torch.zeros(1, 1, 1)) is not None,
                                reason="fastecg._C is not built")

FS = 500.0
TOL = 1e-6


def assert_close_to_peak(a, b):
    assert a.shape == b.shape and a.dtype == b.dtype
    if a.is_floating_point():
        peak = float(a.abs().max()) if a.numel() else 0.0
        torch.testing.assert_close(b, a, rtol=0, atol=TOL * max(peak, 1e-30))
    else:
        assert torch.equal(a, b)


def use_isa(isa, monkeypatch):
    """Run the CPU kernels on instruction set `isa` for this test; skip where the CPU has
    not got it."""
    monkeypatch.setenv("FASTECG_CPU_ISA", isa)
    try:
        torch.ops.fastecg._cpu_isa()
    except RuntimeError as err:
        assert "supports at most" in str(err)
        pytest.skip(f"this CPU has no {isa}")


def both(am, *args, backend="cpu", **kwargs):
    """The manager's outputs on the torch backend and on `backend`, checked equal within
    1e-6 of the peak; returns both."""
    ref = am(*args, backend="torch", **kwargs)
    out = am(*args, backend=backend, **kwargs)
    assert len(ref) == len(out)
    for a, b in zip(ref, out):
        if a is None:
            assert b is None
        else:
            assert_close_to_peak(a, b)
    return ref, out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(400,), (12, 400), (6, 12, 400), (2, 3, 12, 400)])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_augmenter_matches_the_torch_backend(name, shape, dtype):
    if name in TWELVE and len(shape) == 1:
        pytest.skip("needs 12 leads")
    config = {k: v for k, v in CONFIGS[name].items() if k != "fs"}
    am = AugmenterManager({"name": name, **config}, fs=FS)
    x = ecg(shape, dtype=dtype)
    lead_dims = shape[:-2]
    label = torch.rand(*lead_dims, 5, dtype=dtype)
    mask = torch.rand(*lead_dims, shape[-1], 2, dtype=dtype)
    seg = torch.rand(*lead_dims, shape[-1]) < 0.5
    ref, _ = both(am, x, label, mask, seg, seed=3, epoch=1)
    if len(shape) >= 3 and name != "label_smooth":  # (one sample, one lead: may be kept)
        assert not torch.equal(ref[0], x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_whole_pipelines_match_the_torch_backend(dtype):
    # Every augmenter, some twice, so that warps, lead mixes, the statistics that draws
    # and renormalisation read, Mixup's pairing and a torch step (CutMix) all chain.
    am = AugmenterManager(*PER_SAMPLE, {"name": "mixup"}, {"name": "cutmix"},
                          {"name": "stretch_compress", "prob": 0.9},
                          {"name": "random_renormalize", "per_channel": True},
                          {"name": "gaussian_noise", "prob": 1.0},
                          {"name": "random_crop", "length": 1500},
                          {"name": "baseline_wander", "prob": 1.0},
                          {"name": "reduced_lead_set", "leads": 6, "mode": "drop"},
                          {"name": "time_shift", "prob": 1.0}, fs=FS)
    x = ecg((16, 12, 2000), dtype=dtype)
    label, mask = torch.rand(16, 4, dtype=dtype), torch.rand(16, 2000, dtype=dtype)
    ref, _ = both(am, x, label, mask, seed=11, epoch=2)
    assert ref[0].shape == (16, 6, 1500) and ref[2].shape == (16, 1500)
    assert len(am._workspace()) <= 2  # intermediates: at most two batch-sized work buffers
    seven = AugmenterManager.from_config(TORCH_ECG_CONFIG)
    both(seven, ecg((8, 12, 5000), dtype=dtype), label[:8], seed=5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_steps_that_leave_a_sample_alone_hand_it_on(dtype):
    # A pairing with itself, a renormalisation or a warp that leaves a sample out reads the
    # stage before in place; behind a lead drop (more rows before it than after) through a
    # buffer. Either way the torch backend's numbers; with every step leaving every sample
    # alone, the input itself, bit for bit.
    steps = [{"name": "baseline_wander"}, {"name": "reduced_lead_set", "leads": 6,
                                           "mode": "drop"},
             {"name": "mixup"}, {"name": "random_renormalize"}, {"name": "stretch_compress"},
             {"name": "time_shift", "prob": 0.5}]
    x = ecg((16, 12, 1200), dtype=dtype)
    label = torch.rand(16, 3, dtype=dtype)
    (ref, *_), _ = both(AugmenterManager(*steps, fs=FS), x, label, seed=4, epoch=1)
    assert ref.shape == (16, 6, 1200)
    still = [{**s, "prob": (0.0, 0.0) if s["name"] in ("random_flip", "random_masking")
              else 0.0} for s in PER_SAMPLE + [{"name": "mixup"}, {"name": "stretch_compress"},
                                                {"name": "random_renormalize"}]]
    out, lab = AugmenterManager(*still, fs=FS)(x, label, seed=4, backend="cpu")
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr() and torch.equal(lab, label)


def test_reproducible_per_sample_with_mixup_first():
    # Mixup as the source of a pass: its pairing inside the batch is the documented
    # exception, the rest of the pipeline still matches the torch backend.
    am = AugmenterManager({"name": "mixup", "prob": 1.0}, {"name": "time_shift"},
                          {"name": "gaussian_noise"}, fs=FS)
    both(am, ecg((10, 3, 300)), torch.rand(10, 2), seed=1)


def test_auto_picks_the_fused_pass_and_gradients_take_torch(monkeypatch):
    calls = []
    real = fused.augment_pass

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(fused, "augment_pass", spy)
    am = AugmenterManager({"name": "amplitude_scale"}, {"name": "time_shift"}, fs=FS)
    x = ecg((4, 12, 300), dtype=torch.float64)
    out = am(x, seed=0)[0]
    assert calls
    calls.clear()
    torch.testing.assert_close(out, am(x, seed=0, backend="torch")[0], rtol=0, atol=0)
    assert not calls
    xg = x.clone().requires_grad_()
    out_grad = am(xg, seed=0, backend="cpu")[0]
    assert not calls and out_grad.grad_fn is not None
    torch.testing.assert_close(out_grad.detach(), out, rtol=0, atol=1e-12)
    with torch.no_grad():
        am(xg, seed=0, backend="cpu")
    assert calls
    assert am(x.half(), seed=0)[0].dtype == torch.float16  # auto: torch for half


def test_gradcheck_of_the_signal_path():
    am = AugmenterManager({"name": "stretch_compress", "prob": 1.0},
                          {"name": "vcg_rotation", "prob": 1.0}, {"name": "random_flip"},
                          {"name": "baseline_wander", "prob": 1.0}, fs=50.0)
    x = ecg((2, 12, 12), dtype=torch.float64).requires_grad_()
    *_, params = am(x.detach(), seed=4, return_params=True, backend="cpu")
    assert torch.autograd.gradcheck(lambda t: am.apply(t, params, backend="cpu")[0], (x,))
    # The replay without grad is the fused pass and gives the same values.
    torch.testing.assert_close(am.apply(x.detach(), params, backend="cpu")[0],
                               am.apply(x.detach(), params, backend="torch")[0], rtol=0,
                               atol=1e-12)


def test_replay_and_views_on_the_fused_pass():
    am = AugmenterManager.from_config(TORCH_ECG_CONFIG)
    am.add_({"name": "vcg_rotation"}).add_({"name": "emg_noise"})
    x, label = ecg((8, 12, 1000)), torch.rand(8, 4)
    *out, params = am(x, label, seed=3, return_params=True, backend="cpu")
    for a, b in zip(out, am.apply(x, params, label, backend="cpu")):
        assert torch.equal(a, b)
    for a, b in zip(out, am.apply(x, params, label, backend="torch")):
        assert_close_to_peak(b, a)
    views = AugmenterManager({"name": "gaussian_noise", "prob": 1.0}, {"name": "time_shift"},
                             fs=FS)
    assert_close_to_peak(views.views(x, n=3, seed=7, backend="torch"),
                         views.views(x, n=3, seed=7, backend="cpu"))


def test_kernel_statistics_and_checks():
    x = ecg((3, 4, 300), dtype=torch.float64)
    gain, shift = torch.rand(3, 4, dtype=torch.float64), torch.rand(3, 4, dtype=torch.float64)
    out, stats = augment_pass(x, [OpCode.LEAD_AFFINE], [], [], [gain, shift],
                              stats=True)
    ref = x * gain[..., None] + shift[..., None]
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-14)
    torch.testing.assert_close(stats, torch.stack([ref.amin(-1), ref.amax(-1), ref.sum(-1),
                                                   ref.square().sum(-1)], -1))
    with pytest.raises(RuntimeError, match="gain must have shape"):
        augment_pass(x, [OpCode.LEAD_AFFINE], [], [], [gain[:2], shift])
    with pytest.raises(RuntimeError, match="unknown op code"):
        augment_pass(x, [99], [], [], [])
    with pytest.raises(RuntimeError, match="partner out of range"):
        augment_pass(x, [OpCode.PAIR], [], [], [torch.tensor([0, 1, 5]),
                                                torch.ones(3, dtype=torch.float64)])
    # Mixup after other ops: each sample's partner runs its own chain up to the pairing.
    partner, lam = torch.tensor([2, 1, 0]), torch.tensor([0.3, 1.0, 0.8], dtype=torch.float64)
    out, _ = augment_pass(x, [OpCode.LEAD_AFFINE, OpCode.PAIR], [], [],
                          [gain, shift, partner, lam])
    torch.testing.assert_close(out, torch.lerp(ref[partner], ref, lam[:, None, None]), rtol=0,
                               atol=1e-14)
    # A warp reads the span its block needs: a 0.1x compression reads ten times as far.
    offset, limit = torch.zeros(3, dtype=torch.long), torch.full((3,), 300)
    ratio = torch.full((3,), 10.0, dtype=torch.float64)
    out, _ = augment_pass(x, [OpCode.WARP], [30], [], [offset, limit, ratio])
    torch.testing.assert_close(out, x[..., ::10], rtol=0, atol=0)


def test_work_buffers_never_reach_the_caller():
    # Intermediates live in two buffers the manager keeps between calls; outputs must not
    # be among them, even when the last step is a plain module that returns its input.
    class Same(torch.nn.Module):
        def forward(self, sig):
            return sig

    am = AugmenterManager({"name": "baseline_wander", "prob": 1.0},
                          {"name": "random_renormalize", "prob": 1.0}, Same(), fs=FS)
    x = ecg((4, 12, 500))
    first = am(x, seed=0, backend="cpu")[0]
    kept = first.clone()
    second = am(x, seed=1, backend="cpu")[0]
    assert torch.equal(first, kept) and not torch.equal(first, second)
    assert first.untyped_storage().data_ptr() != second.untyped_storage().data_ptr()
    for buf in am._workspace():
        for out in (first, second):
            assert buf.untyped_storage().data_ptr() != out.untyped_storage().data_ptr()
    assert_close_to_peak(am(x, seed=1, backend="torch")[0], second)


def test_kernel_writes_into_a_given_buffer():
    x = ecg((2, 3, 50), dtype=torch.float64)
    gain, shift = torch.full((2, 3), 2.0, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64)
    buf = torch.empty_like(x)
    out, _ = augment_pass(x, [OpCode.LEAD_AFFINE], [], [], [gain, shift], out=buf)
    assert out is buf and torch.equal(buf, 2 * x)
    with pytest.raises(RuntimeError, match="must not overlap x"):
        augment_pass(x, [OpCode.LEAD_AFFINE], [], [], [gain, shift], out=x)
    with pytest.raises(RuntimeError, match="out must be a contiguous"):
        augment_pass(x, [OpCode.LEAD_AFFINE], [], [], [gain, shift],
                     out=torch.empty(2, 3, 49, dtype=torch.float64))


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_instruction_set_gives_the_same_result(isa, dtype, monkeypatch):
    # The kernel's vector paths (AVX2 gathers for the noise, 32-byte vectors for sums and
    # statistics) against its baseline x86-64 code and the torch backend.
    use_isa(isa, monkeypatch)
    am = AugmenterManager(*PER_SAMPLE, {"name": "mixup"}, fs=FS)
    x, label = ecg((8, 12, 3001), dtype=dtype), torch.rand(8, 3, dtype=dtype)
    both(am, x, label, seed=21)


def test_threads_sharing_a_manager_keep_their_own_work_buffers():
    import copy
    import pickle
    import threading

    am = AugmenterManager({"name": "baseline_wander", "prob": 1.0},
                          {"name": "random_renormalize", "prob": 1.0},
                          {"name": "time_shift", "prob": 1.0}, fs=FS)
    x = ecg((6, 12, 3000))
    expected = {s: am(x, seed=s, backend="torch")[0] for s in range(4)}
    results, barrier = {}, threading.Barrier(4)

    def work(s):
        barrier.wait()
        results[s] = [am(x, seed=s, backend="cpu")[0] for _ in range(5)]

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s, outs in results.items():
        for out in outs:
            assert_close_to_peak(expected[s], out)
    assert len(am.__dict__["_workspaces"]) >= 1
    for clone in (pickle.loads(pickle.dumps(am)), copy.deepcopy(am)):
        assert "_workspaces" not in clone.__dict__
        assert_close_to_peak(expected[1], clone(x, seed=1, backend="cpu")[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_taps, n_samples", [(1, 300), (7, 5), (183, 2600), (601, 700)])
def test_fir_noise_op_against_conv1d(n_taps, n_samples, dtype):
    # FIR_NOISE against its torch form (hash noise K - 1 samples longer through conv1d):
    # taps that are not symmetric (the orientation shows), lengths inside one block, across
    # blocks and work items, and more taps than a block; a lead and a sample with std 0.
    from fastecg.augmenters.physics import fir_hash_noise

    g = torch.Generator().manual_seed(n_taps)
    x = ecg((3, 4, n_samples), dtype=dtype)
    keys = torch.randint(0, 2 ** 32, (3, 4, 2), generator=g)
    std = torch.rand(3, 4, generator=g, dtype=dtype)
    std[0, 2] = std[1] = 0
    taps = torch.randn(n_taps, generator=g, dtype=dtype) + 0.2
    taps /= taps.square().sum().sqrt()  # unit power gain, as EMGNoise's
    out, _ = augment_pass(x, [OpCode.FIR_NOISE], [], [], [keys, std, taps])
    ref = x + fir_hash_noise(keys, std, taps, n_samples)
    assert_close_to_peak(ref, out)
    assert torch.equal(out[1], x[1]) and torch.equal(out[0, 2], x[0, 2])
    with pytest.raises(RuntimeError, match="FIR taps must be"):
        augment_pass(x, [OpCode.FIR_NOISE], [], [], [keys, std, taps[None]])


def test_emg_noise_is_made_in_the_kernel(monkeypatch):
    # The fused pass hands EMG noise to the kernel as its FIR_NOISE op with per-row keys,
    # stds and the taps: no noise rows (ADD_ROWS) and no batch-sized tensor at all.
    calls = []
    real = fused.augment_pass

    def spy(x, codes, ints, floats, tensors, *args, **kwargs):
        calls.append((list(codes), [t.numel() for t in tensors], x.numel()))
        return real(x, codes, ints, floats, tensors, *args, **kwargs)

    monkeypatch.setattr(fused, "augment_pass", spy)
    am = AugmenterManager({"name": "emg_noise", "prob": 1.0}, {"name": "random_flip"}, fs=FS)
    x = ecg((8, 12, 2000))
    ref = am(x, seed=5, backend="torch")[0]
    assert_close_to_peak(ref, am(x, seed=5, backend="cpu")[0])
    assert len(calls) == 1
    codes, sizes, batch = calls[0]
    assert OpCode.FIR_NOISE in codes and OpCode.ADD_ROWS not in codes
    assert max(sizes) < batch // 10


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_renormalisation_inside_the_pass(per_channel, dtype, monkeypatch):
    # RandomRenormalize as the kernel's RENORM op: the seven torch_ecg steps are one
    # kernel call; after it a warp, a flip and a second renormalisation (a new pass), and a
    # Mixup after it (its pairing needs the pass run first); every result equals the
    # torch backend's, and the statistics route (a sample too large to hold) equals it too.
    calls = []
    real = fused.augment_pass

    def spy(x, codes, *args, **kwargs):
        calls.append(list(codes))
        return real(x, codes, *args, **kwargs)

    monkeypatch.setattr(fused, "augment_pass", spy)
    renorm = {"name": "random_renormalize", "per_channel": per_channel, "prob": 0.7}
    seven = AugmenterManager.from_config(dict(TORCH_ECG_CONFIG, random_renormalize={
        k: v for k, v in renorm.items() if k != "name"}))
    x, label = ecg((8, 12, 1200), dtype=dtype), torch.rand(8, 5, dtype=dtype)
    both(seven, x, label, seed=3)
    assert len(calls) == 1 and calls[0].count(OpCode.RENORM) == 1
    am = AugmenterManager({"name": "baseline_wander", "prob": 1.0}, renorm,
                          {"name": "stretch_compress", "prob": 1.0}, {"name": "random_flip"},
                          {"name": "mixup", "prob": 1.0}, dict(renorm, prob=1.0),
                          {"name": "time_shift", "prob": 1.0}, fs=FS)
    calls.clear()
    ref, _ = both(am, x, label, seed=4)
    assert [c.count(OpCode.RENORM) for c in calls] == [1, 1]
    assert OpCode.PAIR not in calls[0] and calls[1][0] == OpCode.PAIR
    monkeypatch.setattr(fused.FusedPlan, "RENORM_MAX_BYTES", 100)
    calls.clear()
    assert_close_to_peak(ref[0], am(x, label, seed=4, backend="cpu")[0])
    assert all(OpCode.RENORM not in c for c in calls)


def test_wander_first_takes_the_ptp_in_the_pass(monkeypatch):
    """As the pass's first op the wander's amounts are relative to each lead's
    peak-to-peak, which the kernel measures as it reads the sample (SINES_PTP): no read of
    the batch for statistics, and the torch backend's result, a constant lead included.
    Parameters returned for a replay stay absolute (they take the read)."""
    reads = []
    real = fused.lead_stats
    monkeypatch.setattr(fused, "lead_stats", lambda *a: reads.append(1) or real(*a))
    am = AugmenterManager({"name": "baseline_wander", "prob": 1.0}, {"name": "mixup"},
                          {"name": "random_flip"}, fs=FS)
    x = ecg((6, 12, 1000))
    x[1, 3] = 0.25  # ptp 0: no wander on that lead
    out = am(x, seed=2, backend="cpu")[0]
    assert not reads
    ref = am(x, seed=2, backend="torch")[0]
    assert_close_to_peak(out, ref)
    alone = AugmenterManager({"name": "baseline_wander", "prob": 1.0}, fs=FS)
    assert torch.equal(alone(x, seed=2, backend="cpu")[0][1, 3], x[1, 3])
    *_, params = am(x, seed=2, backend="cpu", return_params=True)
    assert reads
    assert_close_to_peak(am.apply(x, params, backend="cpu")[0], ref)
    # The kernel takes it only as the first op.
    gain = torch.ones(6, 12)
    coef, basis = torch.zeros(6, 12, 3), torch.zeros(3, 1000)
    keys, std = torch.zeros(6, 12, 2, dtype=torch.long), torch.zeros(6, 12)
    with pytest.raises(RuntimeError, match="must be the first op"):
        augment_pass(x, [OpCode.LEAD_AFFINE, OpCode.SINES_PTP], [], [],
                     [gain, gain, coef, basis, keys, std], backend="cpu")


@pytest.mark.parametrize("isa", ["generic", "avx2"])
def test_noise_over_every_16_bit_half(isa, monkeypatch):
    # The kernel's normal values against the torch backend's hash_normal over rows long
    # enough that nearly every 16-bit half of the hash comes up (~4 times each, as a
    # cosine and as a sine value): the tables (generic; the double-precision log, cos and
    # sin rounded to float32) are measured within one float32 rounding (4.8e-7) of torch's
    # float32 values, which reach 4.85, and the float32 AVX2 loop's polynomials (within
    # 1.2e-7 of the radius table, relative, and 6e-8 of the cosine table) within 7.2e-7.
    from fastecg.augmenters._random import hash_normal

    use_isa(isa, monkeypatch)
    keys = torch.randint(0, 2 ** 32, (2, 4, 2), generator=torch.Generator().manual_seed(5))
    x = torch.zeros(2, 4, 70001)
    out, _ = augment_pass(x, [OpCode.NOISE], [], [], [keys, torch.ones(2, 4)])
    ref = hash_normal(keys, 70001, torch.float32)
    assert float(ref.abs().max()) > 4.5  # the tails are in
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("isa", ["generic", "avx2"])
def test_noise_at_the_ends_of_a_row(isa, monkeypatch):
    # The AVX2 loop takes 16 samples from an even one: a row shorter than that, its last
    # samples, and a block that starts on an odd sample (a shift reads the noise from an
    # odd time on) are computed aside as a whole vector. Each against torch's values.
    from fastecg.augmenters._random import hash_normal

    use_isa(isa, monkeypatch)
    keys = torch.randint(0, 2 ** 32, (3, 2, 2), generator=torch.Generator().manual_seed(9))
    for n in (1, 2, 7, 15, 16, 17, 31, 33, 2049, 2063):
        out, _ = augment_pass(torch.zeros(3, 2, n), [OpCode.NOISE], [], [],
                              [keys, torch.ones(3, 2)])
        torch.testing.assert_close(out, hash_normal(keys, n, torch.float32), rtol=0, atol=1e-6)
    am = AugmenterManager({"name": "gaussian_noise", "prob": 1.0},
                          {"name": "time_shift", "prob": 1.0, "max_shift_s": 0.02}, fs=FS)
    for n in (9, 40, 301):
        both(am, ecg((16, 3, n)), seed=n)


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_warp_op_against_its_definition(isa, dtype, monkeypatch):
    # WARP against its definition written out in torch: output t is the linear
    # interpolation of x at (t + offset) * ratio, zero unless 0 <= t + offset < limit,
    # the right neighbour clamped to the last input. Ratios that keep a vector's
    # neighbours inside the vector paths' windows of inputs (near 1) and that spread them
    # wider (near 2, 10), stretches that read to the last input and past it.
    use_isa(isa, monkeypatch)
    ratios = [0.5, 0.93, 1.0, 1.06, 1.87, 1.99, 2.5, 10.0]
    n, n_in, n_out = len(ratios), 1203, 1500
    x = ecg((n, 3, n_in), dtype=dtype)
    offset = torch.tensor([0, -7, 3, 0, 11, 0, -40, 0])
    limit = torch.tensor([n_out, n_out, 1201, n_out, 600, n_out, 900, 130])
    ratio = torch.tensor(ratios, dtype=torch.float64)
    out, _ = augment_pass(x, [OpCode.WARP], [n_out], [], [offset, limit, ratio])
    m = torch.arange(n_out)[None] + offset[:, None]
    src = m.double() * ratio[:, None]
    f = src.floor().clamp(0, n_in - 1)
    i0 = f.long()
    i1 = (i0 + 1).clamp_max(n_in - 1)
    w = (src - f).to(dtype)[:, None]
    pick = lambda i: x.gather(2, i[:, None].expand(n, 3, n_out))  # noqa: E731
    ref = torch.lerp(pick(i0), pick(i1), w)
    ref = torch.where(((m >= 0) & (m < limit[:, None]))[:, None], ref, torch.zeros((), dtype=dtype))
    assert_close_to_peak(ref, out)


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_samples_not_mixed_are_left_as_they_are(backend):
    samples_not_mixed_are_left_as_they_are(backend)


def samples_not_mixed_are_left_as_they_are(backend, device="cpu"):
    # Mixup leaves a sample it does not mix (its own partner) as it is, an Inf included:
    # lerp(v, v, 1) would make it NaN. The mixed samples are lam x + (1 - lam) x[partner].
    am = AugmenterManager({"name": "random_flip", "prob": (0.5, 0.5)}, {"name": "mixup"}, fs=FS)
    x = ecg((16, 3, 400))
    x[:, 1, 17] = float("inf")
    out, _, params = am(x.to(device), seed=3, backend=backend, return_params=True)
    out = out.cpu()
    params = {"steps": [(i, {k: v.cpu() for k, v in p.items()}) for i, p in params["steps"]]}
    sign = params["steps"][0][1]["sign"].to(x.dtype)[..., None]
    mix = params["steps"][1][1]
    own = mix["partner"] == torch.arange(16)
    assert 0 < int(own.sum()) < 16
    flipped = x * sign
    assert torch.equal(out[own], flipped[own])
    others = ~own
    lam = mix["lam"].to(x.dtype)[:, None, None]
    expected = torch.lerp(flipped[mix["partner"]], flipped, lam)[others]
    finite = expected.isfinite()
    torch.testing.assert_close(out[others][finite], expected[finite], rtol=0, atol=1e-6 * 50)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_poisoned_sample_alike_on_every_backend(bad):
    a_poisoned_sample_alike_on_every_backend(bad, "cpu")


def a_poisoned_sample_alike_on_every_backend(bad, backend, device="cpu"):
    # One NaN or Inf sample in a lead: the backends agree on it. The wander's amounts,
    # relative to the lead's peak-to-peak (taken in the pass as the first op, else from
    # the statistics), leave a NaN out on the torch backend as the kernels' min and max
    # do, so the NaN stays where it is (the torch backend made its whole lead NaN).
    x = ecg((3, 12, 400))
    x[1, 3, 10] = bad
    for first in (True, False):
        steps = [{"name": "baseline_wander", "prob": 1.0}, {"name": "amplitude_scale"}]
        am = AugmenterManager(*(steps if first else steps[::-1]), fs=FS)
        ref = am(x, seed=3, backend="torch")[0]
        out = am(x.to(device), seed=3, backend=backend)[0].cpu()
        assert torch.equal(out.isnan(), ref.isnan()) and torch.equal(out.isinf(), ref.isinf())
        if bad != bad:  # (an Inf makes the lead's peak-to-peak, so its amounts, Inf)
            assert int(ref[1, 3].isfinite().sum()) == 399
        assert_close_to_peak(ref.nan_to_num(0.0, 0.0, 0.0), out.nan_to_num(0.0, 0.0, 0.0))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_lead_mixing_reads_only_weighted_leads(bad):
    lead_mixing_reads_only_weighted_leads(bad, "cpu")


def lead_mixing_reads_only_weighted_leads(bad, backend, device="cpu"):
    # A NaN or Inf in lead III, which the VCG rotation does not read (its column of the
    # mixing matrix is 0), nor does a sample the step leaves alone (an identity): it stays
    # where it is on every backend, other leads untouched (a plain matmul spread it to
    # every lead of every sample: 0 * NaN). One in lead II, which is read, reaches every
    # output lead of a rotated sample at that time. Dropping leads mixes by a selection.
    x = ecg((6, 12, 80), seed=5)
    x[:, 2, 10] = bad
    x[:, 1, 20] = bad
    am = AugmenterManager({"name": "vcg_rotation", "prob": 0.5}, fs=FS)
    ref, params = am(x, seed=4, backend="torch", return_params=True)[::2]
    out = am(x.to(device), seed=4, backend=backend)[0].cpu()
    applied = params["steps"][0][1]["applied"]
    assert 0 < int(applied.sum()) < 6
    for y in (ref, out):
        assert bool(y[applied][:, :, 10].isfinite().all())  # lead III not read
        torch.testing.assert_close(y[~applied], x[~applied], rtol=0, atol=0,
                                   equal_nan=True)  # left alone, NaN and all
        assert not bool(y[applied][:, :, 20].isfinite().any())  # lead II read by all
        assert bool(y[:, :, [9, 11, 19, 21]].isfinite().all())
    assert torch.equal(out.isnan(), ref.isnan()) and torch.equal(out.isinf(), ref.isinf())
    assert_close_to_peak(ref.nan_to_num(0.0, 0.0, 0.0), out.nan_to_num(0.0, 0.0, 0.0))
    drop = AugmenterManager({"name": "reduced_lead_set", "leads": [6], "mode": "drop",
                             "prob": 1.0}, fs=FS)
    kept = drop(x.to(device), seed=4, backend=backend)[0].cpu()
    torch.testing.assert_close(kept, drop(x, seed=4, backend="torch")[0], rtol=0, atol=0,
                               equal_nan=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fuse_kernel_gives_the_torch_form(dtype, monkeypatch):
    # The op tensors the C++ kernel makes of the baseline wander's and the stretch's drawn
    # parameters (_augment_fuse_kernel) against the torch forms: the sines' coefficients
    # within a rounding of the cast (glibc's cos and sin against torch.polar's), the warp's
    # offsets, limits and ratios bit for bit.
    from fastecg.augmenters import classic
    from fastecg.augmenters._random import Keys
    from fastecg.transforms.config import SignalInfo

    x = ecg((40, 12, 3000), dtype=dtype)
    info = SignalInfo(FS, 12, 3000, None)
    keys = Keys(5, 1, torch.arange(40))
    wander = classic.BaselineWander(fs=FS, prob=0.7)
    stretch = classic.StretchCompress(prob=0.8)
    pw, ps = wander.draw(keys.for_slot(1), x, info), stretch.draw(keys.for_slot(2), x, info)

    def op_tensors():
        plan = fused.FusedPlan(x, None, "cpu")
        wander.fuse(plan, pw, None, [], info)
        stretch.fuse(plan, ps, None, [], info)
        return plan.tensors

    native = op_tensors()
    monkeypatch.setattr(classic, "fuse_kernel", lambda *args: None)
    reference = op_tensors()
    assert len(native) == len(reference) == 7
    tol = 1e-7 if dtype == torch.float32 else 1e-15
    torch.testing.assert_close(native[0], reference[0], rtol=tol, atol=tol)  # coefficients
    for a, b in zip(native[1:], reference[1:]):
        assert a.dtype == b.dtype and torch.equal(a, b)
    assert bool((ps["new_len"] != 3000).any())  # some samples are stretched


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e30])
@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_a_poisoned_sample_leaves_the_others_alone(bad, backend):
    # Every per-sample step (the wander's peak-to-peak, the renormalisation's statistics,
    # the noise's per-lead power, the lead mixing) beside a sample holding NaN, Inf or
    # 1e30: the clean samples come out bit for bit as without it. Mixup, which pairs
    # samples, is the documented exception and is left out.
    config = {k: v for k, v in TORCH_ECG_CONFIG.items() if k != "mixup"}
    am = AugmenterManager.from_config(config)
    for step in ({"name": "powerline_noise"}, {"name": "emg_noise"},
                 {"name": "gaussian_noise", "prob": 1.0}, {"name": "amplitude_scale"},
                 {"name": "time_shift"}, {"name": "random_leads_mask", "prob": 0.5},
                 {"name": "vcg_rotation"}):
        am.add_(step)
    x, label = ecg((8, 12, 3001)), torch.rand(8, 5)
    poisoned = x.clone()
    poisoned[3, 2, 100:200] = bad
    poisoned[5] = bad
    clean = am(x, label, seed=3, epoch=1, backend=backend)
    out = am(poisoned, label, seed=3, epoch=1, backend=backend)
    keep = [i for i in range(8) if i not in (3, 5)]
    assert torch.equal(out[0][keep], clean[0][keep]) and torch.equal(out[1], clean[1])
    if bad != 1e30:  # the poisoned sample shows it
        assert not torch.isfinite(out[0][5]).all()


def test_forward_mode_tangents_take_the_torch_code():
    # The fused pass has no derivative: a signal carrying a forward-mode tangent (jvp,
    # forward_ad) got a zero or missing tangent from it, with no error.
    import torch.autograd.forward_ad as fwAD

    am = AugmenterManager({"name": "amplitude_scale", "prob": 1.0},
                          {"name": "baseline_wander", "prob": 1.0}, fs=50.0)
    x = ecg((2, 3, 40), dtype=torch.float64)
    v = torch.randn_like(x)
    *_, params = am(x, seed=4, return_params=True, backend="cpu")
    want = torch.func.jvp(lambda t: am.apply(t, params, backend="torch")[0], (x,), (v,))[1]
    assert want.abs().sum() > 0
    got = torch.func.jvp(lambda t: am.apply(t, params, backend="cpu")[0], (x,), (v,))[1]
    torch.testing.assert_close(got, want)
    with fwAD.dual_level():
        out = am.apply(fwAD.make_dual(x, v), params)[0]
        torch.testing.assert_close(fwAD.unpack_dual(out).tangent, want)
