"""Each augmenter: its documented distribution (statistics over many samples), shapes from
1-D to 4-D, labels and masks moved with the signal, gradients, the caller's tensor left
alone, and bad arguments refused before any work.

Statistical bounds are ~5 standard errors of the sample sizes used."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastecg.augmenters import (AmplitudeScale, AugmenterManager, BaselineWander, CutMix,
                                EMGNoise, GaussianNoise, LabelSmooth, Mixup, PowerlineNoise,
                                RandomCrop, RandomFlip, RandomLeadsMask, RandomMasking,
                                RandomRenormalize, ReducedLeadSet, StretchCompress, TimeShift,
                                VCGRotation)
from fastecg.augmenters import fused
from fastecg.augmenters.physics import REDUCED_LEAD_SETS, emg_taps
from fastecg.bench.peers import import_torch_ecg
from fastecg.ops.augment import OpCode, fused_pass_available
from fastecg.registry import AUGMENTERS

FS = 500.0

# One valid configuration of every registered augmenter, applied to every sample.
CONFIGS = {
    "baseline_wander": {"fs": FS, "prob": 1.0},
    "random_flip": {"prob": (1.0, 0.5)},
    "random_masking": {"fs": FS, "prob": (1.0, 0.15)},
    "random_renormalize": {"prob": 1.0},
    "stretch_compress": {"prob": 1.0},
    "mixup": {"prob": 1.0},
    "cutmix": {"prob": 1.0},
    "label_smooth": {"prob": 1.0},
    "powerline_noise": {"fs": FS, "prob": 1.0, "harmonics": 2},
    "emg_noise": {"fs": FS, "prob": 1.0},
    "gaussian_noise": {"prob": 1.0},
    "amplitude_scale": {"prob": 1.0},
    "time_shift": {"fs": FS, "prob": 1.0},
    "random_crop": {"length": 300},
    "random_leads_mask": {"mask_prob": 0.5},
    "reduced_lead_set": {},
    "vcg_rotation": {"prob": 1.0},
}
# Those that need 12 leads.
TWELVE = {"reduced_lead_set", "vcg_rotation"}


def ecg(shape=(8, 12, 1000), seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=dtype).cumsum(-1) / 20)


def test_every_augmenter_is_registered():
    assert set(AUGMENTERS.list()) == set(CONFIGS)


# ---- shapes, copies, gradients -----------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("shape", [(400,), (12, 400), (6, 12, 400), (2, 3, 12, 400)])
def test_shapes_and_the_callers_tensor(name, shape):
    aug = AUGMENTERS.build(name, **CONFIGS[name])
    if name in TWELVE and len(shape) == 1:
        pytest.skip("needs 12 leads")
    x = ecg(shape)
    before = x.clone()
    lead_dims = shape[:-2]
    label = torch.rand(*lead_dims, 5)
    mask = torch.rand(*lead_dims, shape[-1], 2)
    sig, lab, m = aug(x, label, mask, seed=3)
    n_samples = 300 if name == "random_crop" else shape[-1]
    assert sig.shape == shape[:-1] + (n_samples,)
    assert lab.shape == label.shape and m.shape == lead_dims + (n_samples, 2)
    assert torch.equal(x, before)
    assert torch.isfinite(sig).all()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_inplace_writes_the_callers_tensor(name):
    if name == "random_crop":
        pytest.skip("changes the length")
    x = ecg((4, 12, 500))
    out = AUGMENTERS.build(name, **CONFIGS[name], inplace=True)(x, seed=1)[0]
    assert out is x


@pytest.mark.parametrize("name", ["random_flip", "baseline_wander", "random_renormalize",
                                  "stretch_compress", "mixup", "label_smooth"])
def test_inplace_keeps_autograd_right(name):
    # In place on a signal that requires grad: the gradient is the out-of-place call's
    # (the write is recorded by autograd, not hidden from it), and a leaf refuses the
    # write as torch's in-place ops do, rather than returning values its graph does not
    # match.
    base = ecg((4, 12, 300), dtype=torch.float64).requires_grad_()
    weight = torch.linspace(-1, 1, 300, dtype=torch.float64)
    label = torch.rand(4, 5, dtype=torch.float64)
    out = AUGMENTERS.build(name, **CONFIGS[name])(base * 2, label, seed=4)[0]
    (expected,) = torch.autograd.grad((out * weight).sum(), base)
    x = base * 2  # not a leaf: may be written in place
    inplace = AUGMENTERS.build(name, **CONFIGS[name], inplace=True)
    out = inplace(x, label.clone(), seed=4)[0]
    assert out is x
    if name == "random_renormalize":
        # its statistics' backward needs the input the write replaced: torch says so
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            torch.autograd.grad((out * weight).sum(), base)
    else:
        (grad,) = torch.autograd.grad((out * weight).sum(), base)
        torch.testing.assert_close(grad, expected, rtol=0, atol=1e-12)
    if name == "label_smooth":  # leaves the signal alone: nothing to write
        assert inplace(base, label.clone(), seed=4)[0] is base
    else:
        with pytest.raises(RuntimeError, match="leaf"):
            inplace(base, label.clone(), seed=4)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_strided_signal_gives_the_contiguous_result(name):
    # A signal stored time-major (a transposed view: not contiguous) gives what its
    # contiguous copy gives, on the augmenter itself (torch), through a manager (its
    # default backend: the fused pass where built) and in place.
    x = ecg((4, 12, 400))
    strided = x.transpose(-1, -2).contiguous().transpose(-1, -2)
    assert not strided.is_contiguous()
    aug = AUGMENTERS.build(name, **CONFIGS[name])
    config = {k: v for k, v in CONFIGS[name].items() if k != "fs"}
    am = AugmenterManager({"name": name, **config}, fs=FS)
    for run in (lambda t: aug(t, seed=3, epoch=1)[0], lambda t: am(t, seed=3, epoch=1)[0]):
        expected = run(x)
        torch.testing.assert_close(run(strided), expected, rtol=0,
                                   atol=1e-6 * float(expected.abs().max()))
    if name != "random_crop":  # (changes the length)
        inplace = AUGMENTERS.build(name, **CONFIGS[name], inplace=True)
        expected = aug(x, seed=3, epoch=1)[0]
        assert inplace(strided, seed=3, epoch=1)[0] is strided
        torch.testing.assert_close(strided, expected, rtol=0,
                                   atol=1e-6 * float(expected.abs().max()))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_gradients_flow_through_the_signal(name):
    x = ecg((4, 12, 400), dtype=torch.float64).requires_grad_()
    aug = AUGMENTERS.build(name, **CONFIGS[name])
    out = aug(x, seed=2)[0]
    (out * torch.linspace(-1, 1, out.shape[-1], dtype=torch.float64)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    if name not in ("label_smooth",):
        assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["stretch_compress", "vcg_rotation", "random_renormalize",
                                  "baseline_wander", "mixup", "time_shift"])
def test_gradcheck(name):
    shape = (1, 12, 10) if name == "vcg_rotation" else (2, 1, 20)
    x = ecg(shape, dtype=torch.float64).requires_grad_()
    config = dict(CONFIGS[name])
    if "fs" in config:
        config["fs"] = 50.0
    aug = AUGMENTERS.build(name, **config)
    if name == "baseline_wander":
        aug = BaselineWander(fs=50.0, bw_fs=(0.5, 1.0), ampl_ratio=((0.1, 0.2),), prob=1.0)
    _, _, params = aug(x.detach(), seed=4, return_params=True)
    assert torch.autograd.gradcheck(lambda t: aug.apply(t, params)[0], (x,))


def test_replay_applies_the_same_parameters():
    x, other = ecg((5, 12, 600)), ecg((5, 12, 600), seed=1)
    aug = StretchCompress(prob=1.0)
    out, _, params = aug(x, seed=9, return_params=True)
    assert torch.equal(aug.apply(x, params)[0], out)
    assert torch.equal(aug.apply(other, params)[0], aug(other, seed=9)[0])


# ---- distributions -----------------------------------------------------------------------

def test_flip_rate():
    x = torch.ones(10000, 1, 4)
    out = RandomFlip(per_channel=False, prob=0.3)(x, seed=0)[0]
    assert abs(float((out[:, 0, 0] < 0).float().mean()) - 0.3) < 0.025
    assert torch.equal(out, out[..., :1].expand_as(out))  # whole samples
    leads = RandomFlip(per_channel=True, prob=(0.4, 0.5))(torch.ones(5000, 12, 2), seed=1)[0]
    flipped = leads[..., 0] < 0
    assert abs(float(flipped.float().mean()) - 0.2) < 0.02
    assert abs(float(flipped.any(1).float().mean()) - 0.4 * (1 - 0.5 ** 12)) < 0.035


def test_renormalized_mean_and_std_in_range():
    x = ecg((400, 3, 500)) * 3 + 1
    aug = RandomRenormalize(mean=(-0.05, 0.1), std=(0.08, 0.32), prob=0.5)
    out, _, params = aug(x, seed=5, return_params=True)
    on = params["applied"]
    assert abs(float(on.float().mean()) - 0.5) < 0.13
    var, mean = torch.var_mean(out[on], dim=(-2, -1), correction=1)
    assert float(mean.min()) >= -0.05 - 1e-5 and float(mean.max()) <= 0.1 + 1e-5
    assert float(var.sqrt().min()) >= 0.08 - 1e-5 and float(var.sqrt().max()) <= 0.32 + 1e-5
    assert torch.equal(out[~on], x[~on])
    per_lead = RandomRenormalize(per_channel=True, prob=1.0)(x, seed=5)[0]
    lead_mean = per_lead.mean(-1)
    assert float(lead_mean.min()) >= -0.05 - 1e-5 and float(lead_mean.max()) <= 0.1 + 1e-5


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_renormalize_is_torch_ecgs_z_score(per_channel, backend):
    # A fixed target (mean and std ranges of one value): torch_ecg's z-score, NumPy's
    # (x - mean) / std(ddof=1) * std_new + mean_new, on a short record where ddof shows.
    x = ecg((3, 4, 50), dtype=torch.float64) * 3 + 1
    config = {"mean": (0.3, 0.3), "std": (2.0, 2.0), "per_channel": per_channel, "prob": 1.0}
    out = AugmenterManager({"name": "random_renormalize", **config})(x, seed=0,
                                                                      backend=backend)[0]
    a = x.numpy()
    axes = (-1,) if per_channel else (-2, -1)
    ref = (a - a.mean(axis=axes, keepdims=True)) / a.std(axis=axes, ddof=1, keepdims=True)
    torch.testing.assert_close(out, torch.from_numpy(ref * 2.0 + 0.3), rtol=0, atol=1e-12)
    torch.testing.assert_close(RandomRenormalize(**config)(x, seed=0)[0], out, rtol=0,
                               atol=1e-12)


# One range per lead (torch_ecg's (n_leads, 2) form): lead 1's ranges lie inside lead 0's,
# lead 2's apart from both, so targets shared across leads (a broadcast) fail.
LEAD_MEAN = [[-1.0, 1.0], [0.2, 0.4], [5.0, 6.0]]
LEAD_STD = [[0.5, 2.0], [0.9, 1.1], [3.0, 3.5]]


def _lead_stats(out):
    var, mean = torch.var_mean(out.double(), dim=-1, correction=1)  # ddof=1, as Normalize
    return mean, var.sqrt()


def _assert_drawn_from(values, lo, hi, n, what):
    """`values` (n,) inside [lo, hi] and distributed as torch_ecg's draw: normal around
    the middle with scale 0.3 of the half-range (5 standard errors)."""
    mid, scale = (lo + hi) / 2, 0.3 * (hi - lo) / 2
    assert float(values.min()) >= lo - 1e-9 and float(values.max()) <= hi + 1e-9, what
    assert abs(float(values.mean()) - mid) < 5 * scale / n ** 0.5, what
    assert abs(float(values.std()) / scale - 1) < 5 / (2 * n) ** 0.5, what


def test_renormalize_per_lead_ranges():
    n = 3000
    x = ecg((n, 3, 200), dtype=torch.float64) * 3 + 1
    before = x.clone()
    aug = RandomRenormalize(mean=LEAD_MEAN, std=LEAD_STD, per_channel=True, prob=0.6)
    out, _, params = aug(x, seed=7, return_params=True)
    assert torch.equal(x, before)
    on = params["applied"]
    assert abs(float(on.float().mean()) - 0.6) < 5 * (0.24 / n) ** 0.5
    assert torch.equal(out[~on], x[~on])
    mean, std = _lead_stats(out[on])
    for lead in range(3):
        _assert_drawn_from(mean[:, lead], *LEAD_MEAN[lead], int(on.sum()), f"mean {lead}")
        _assert_drawn_from(std[:, lead], *LEAD_STD[lead], int(on.sum()), f"std {lead}")
    # lead 0 is not confined to the narrower ranges of lead 1 inside it
    assert float(((mean[:, 0] < 0.2) | (mean[:, 0] > 0.4)).float().mean()) > 0.5
    assert float(((std[:, 0] < 0.9) | (std[:, 0] > 1.1)).float().mean()) > 0.5
    # one quantity per lead, the other one range for every lead
    out = RandomRenormalize(mean=(0.0, 0.0), std=LEAD_STD, per_channel=True, prob=1.0)(
        x, seed=8)[0]
    mean, std = _lead_stats(out)
    torch.testing.assert_close(mean, torch.zeros_like(mean), rtol=0, atol=1e-12)
    for lead in range(3):
        _assert_drawn_from(std[:, lead], *LEAD_STD[lead], n, f"std {lead}")


@pytest.mark.skipif(fused_pass_available(torch.zeros(1, 1, 1)) is not None,
                    reason="fastecg._C is not built")
@pytest.mark.parametrize("mean, std", [(LEAD_MEAN, LEAD_STD), (LEAD_MEAN, (0.1, 0.3)),
                                       ((-0.05, 0.1), LEAD_STD)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_renormalize_per_lead_fused_cpu_is_the_torch_backend(mean, std, dtype, monkeypatch):
    # The per-lead targets as the kernel's RENORM op (and through the statistics route,
    # a sample too large for it): the torch backend's result within 1e-6 of the peak.
    codes = []
    real = fused.augment_pass
    monkeypatch.setattr(fused, "augment_pass",
                        lambda x, c, *a, **k: codes.append(list(c)) or real(x, c, *a, **k))
    am = AugmenterManager({"name": "baseline_wander", "prob": 1.0},
                          {"name": "random_renormalize", "mean": mean, "std": std,
                           "per_channel": True, "prob": 0.7}, fs=FS)
    x = ecg((16, 3, 600), dtype=dtype) * 2 + 0.5
    ref = am(x, seed=2, backend="torch")[0]
    for max_bytes in (None, 100):
        if max_bytes is not None:
            monkeypatch.setattr(fused.FusedPlan, "RENORM_MAX_BYTES", max_bytes)
        codes.clear()
        out = am(x, seed=2, backend="cpu")[0]
        assert out.dtype == dtype
        assert any(OpCode.RENORM in c for c in codes) == (max_bytes is None)
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-6 * float(ref.abs().max()))


def test_renormalize_per_lead_config_round_trip():
    am = AugmenterManager({"name": "random_renormalize", "mean": np.array(LEAD_MEAN),
                           "std": tuple(map(tuple, LEAD_STD)), "per_channel": True,
                           "prob": 0.8})
    config = am.to_config()
    assert config["steps"][0]["mean"] == LEAD_MEAN and config["steps"][0]["std"] == LEAD_STD
    again = AugmenterManager.from_config(json.loads(json.dumps(config)))
    assert again.to_config() == config
    x = ecg((6, 3, 300))
    assert torch.equal(again(x, seed=1, backend="torch")[0], am(x, seed=1, backend="torch")[0])


def test_renormalize_per_lead_count_is_checked_before_any_work():
    x = ecg((2, 4, 300))
    before = x.clone()
    aug = RandomRenormalize(mean=LEAD_MEAN, per_channel=True, prob=1.0, inplace=True)
    am = AugmenterManager({"name": "random_flip", "prob": 1.0},
                          {"name": "random_renormalize", "std": LEAD_STD, "per_channel": True})
    for run in (lambda: aug(x, seed=0), lambda: am(x, seed=0)):
        with pytest.raises(ValueError, match="has 3 per-lead ranges but the signal has 4 leads"):
            run()
        assert torch.equal(x, before)


def test_renormalize_per_lead_is_torch_ecgs_per_lead_draw(monkeypatch):
    # torch_ecg's per-lead form means lead l's target from N(mid_l, 0.3 half_l); its own
    # (n_leads, 2) draw fails to broadcast (scale (lead, lead)), so each lead is run
    # through torch_ecg's (2,) form on that lead alone, which is that meaning. The
    # renormalised leads' mean and std (ddof=1) agree in mean and spread (5 standard
    # errors of the difference). torch_ecg's prob=1 still leaves out a random number of
    # samples (its count is a normal draw): only those it changed are compared.
    te = import_torch_ecg("torch_ecg.augmenters.random_renormalize", keep=False)
    if te is None:
        pytest.skip("torch_ecg is not importable")
    monkeypatch.setattr(te.DEFAULTS, "RNG", np.random.default_rng(0))
    n = 3000
    x = ecg((n, 3, 200)) * 3 + 1
    ours = _lead_stats(RandomRenormalize(mean=LEAD_MEAN, std=LEAD_STD, per_channel=True,
                                         prob=1.0)(x, seed=3)[0])
    for lead in range(3):
        one = x[:, lead:lead + 1]
        out = te.RandomRenormalize(mean=LEAD_MEAN[lead], std=LEAD_STD[lead], per_channel=True,
                                   prob=1.0, inplace=False)(one, None)[0]
        changed = (out != one).any(-1)[:, 0]
        m = int(changed.sum())
        assert m > n // 4
        for a, b in zip(ours, _lead_stats(out[changed])):
            a, b = a[:, lead], b[:, 0]
            spread = float(b.std())
            assert abs(float(a.mean() - b.mean())) < 5 * spread * (1 / n + 1 / m) ** 0.5
            assert abs(float(a.std()) / spread - 1) < 5 * (1 / (2 * n) + 1 / (2 * m)) ** 0.5


def test_stretch_compress_is_interpolate_and_cut_or_pad():
    x = ecg((64, 3, 500))
    mask = x[:, 0, :, None].clone()
    aug = StretchCompress(ratio=10, prob=0.8)
    out, _, out_mask, params = aug(x, None, mask, seed=11, return_params=True)
    n_samples = x.shape[-1]
    new_len = params["new_len"]
    assert bool((new_len > n_samples).any()) and bool((new_len < n_samples).any())
    for i in range(len(x)):
        size = int(new_len[i])
        resized = F.interpolate(x[i:i + 1], size=size, mode="linear", align_corners=True)[0]
        half = abs(size - n_samples) // 2
        if size >= n_samples:
            ref = resized[..., half:half + n_samples]
        else:
            ref = F.pad(resized, (half, n_samples - size - half))
        torch.testing.assert_close(out[i], ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out_mask[..., 0], out[:, 0])
    r = (new_len - n_samples).abs().float() / n_samples
    assert float(r.max()) <= 0.2 + 1 / n_samples


def test_masking_coverage():
    n_samples, fs = 5000, 500.0
    aug = RandomMasking(fs=fs, mask_value=7.0, mask_width=(0.08, 0.18), prob=(0.5, 0.15))
    out = aug(torch.zeros(2000, 2, n_samples), seed=3)[0]
    masked = out[:, 0] == 7.0
    assert torch.equal(masked, out[:, 1] == 7.0)  # all leads alike
    hit = masked.any(-1)
    assert abs(float(hit.float().mean()) - 0.5) < 0.06
    # torch_ecg's rate: prob[1] * (n - w1) / w1 masks of mean width (w0 + w1) / 2 (radius
    # rounded down), less overlaps.
    w0, w1 = 40, 90
    count = 0.15 * (n_samples - w1) / w1
    width = sum(2 * (w // 2) for w in range(w0, w1 + 1)) / (w1 - w0 + 1)
    expected = 1 - math.exp(-count * width / n_samples)  # Poisson overlap
    assert abs(float(masked[hit].float().mean()) - expected) < 0.01
    runs = torch.diff(masked[hit][:200].int(), dim=-1)
    assert int((runs == 1).sum()) > 0


def test_powerline_spectrum():
    n_samples = 2000
    aug = PowerlineNoise(fs=FS, freq=(50.0, 60.0), amplitude=(0.1, 0.2), harmonics=2, prob=1.0)
    noise = aug(torch.zeros(400, 3, n_samples), seed=1)[0]
    power = torch.fft.rfft(noise.double(), dim=-1).abs() ** 2
    freqs = torch.fft.rfftfreq(n_samples, 1 / FS)
    peaks = freqs[power.argmax(-1)]
    assert set(peaks.unique().tolist()) == {50.0, 60.0}
    share50 = float((peaks[:, 0] == 50.0).double().mean())
    assert abs(share50 - 0.5) < 0.13
    lines = torch.isin(freqs, torch.tensor([50.0, 60.0, 100.0, 120.0], dtype=freqs.dtype))
    assert float(power[..., ~lines].sum() / power.sum()) < 1e-12
    ampl = noise.abs().amax(-1)
    assert float(ampl.min()) > 0.1 and float(ampl.max()) < 0.2 * 1.5 + 1e-6


def test_emg_spectrum_and_rms():
    import numpy as np
    import scipy.signal as ss

    n_samples, band, rms = 5000, (20.0, 150.0), 0.05
    aug = EMGNoise(fs=FS, band=band, amplitude=rms, prob=1.0)
    noise = aug(torch.zeros(64, 12, n_samples, dtype=torch.float64), seed=2)[0]
    rows = noise.reshape(-1, n_samples)
    # The filter (SciPy's response of the taps, unit power gain on white noise): the
    # stopband is the band's outside, at least 59 dB below the passband [20 + w, 150 - w]
    # (w = 10 Hz), which ripples by delta.
    h = emg_taps(band, FS)
    f, resp = ss.freqz(h, worN=1 << 16, fs=FS)
    gain = np.abs(resp) ** 2
    outside = (f < band[0]) | (f > band[1])
    w = 10.0
    passband = (f >= band[0] + w) & (f <= band[1] - w)
    level = np.abs(resp[passband]).mean()
    assert gain[outside].max() < 10 ** (-59 / 10) * level ** 2
    out_fraction = gain[outside].sum() / gain.sum()  # ~4e-8
    delta = np.abs(np.abs(resp[passband]) / level - 1).max()  # ~1e-3
    # The noise's spectrum: a Kaiser(20)-windowed periodogram (side lobes ~-190 dB, main
    # lobe +-6.4 bins), so bins over 8 bins away from the band see none of its power.
    window = torch.from_numpy(ss.windows.kaiser(n_samples, 20.0))
    power = torch.fft.rfft(rows * window, dim=-1).abs().square()
    freqs = torch.fft.rfftfreq(n_samples, 1 / FS, dtype=torch.float64)
    guard = 8 * FS / n_samples
    far = (freqs < band[0] - guard) | (freqs > band[1] + guard)
    measured = float(power[:, far].sum() / power.sum())
    assert 0 < measured < out_fraction
    # RMS: the mean square against the drawn rms**2, within 5 standard errors of the rows'.
    ms = rows.square().mean(-1)
    assert abs(float(ms.mean()) - rms ** 2) < 5 * float(ms.std()) / len(ms) ** 0.5
    # In the passband, 5 Hz groups of bins: each group's mean power equals the filter's
    # (times rms**2 and the window's energy) within 5 standard errors over the rows, and
    # the groups spread by no more than the ripple allows plus those errors.
    expected = np.interp(freqs.numpy(), f, gain) * rms ** 2 * float(window.square().sum())
    expected = torch.from_numpy(expected)
    edges = torch.arange(band[0] + w, band[1] - w + 1e-9, 5.0)
    ratios, errors = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        group = (freqs >= a) & (freqs < b)
        per_row = power[:, group].mean(-1) / expected[group].mean()
        ratios.append(float(per_row.mean()))
        errors.append(float(per_row.std()) / len(per_row) ** 0.5)
    ratios, errors = np.array(ratios), np.array(errors)
    assert np.all(np.abs(ratios - 1) < 5 * errors)
    spread = ((1 + delta) / (1 - delta)) ** 2 * (1 + 5 * errors.max()) / (1 - 5 * errors.max())
    assert ratios.max() / ratios.min() < spread


def test_gaussian_noise_snr():
    x = ecg((200, 12, 2000))
    out, _, params = GaussianNoise(snr_db=20.0, prob=1.0)(x, seed=4, return_params=True)
    snr = 10 * torch.log10(x.square().mean(-1) / (out - x).square().mean(-1))
    assert abs(float(snr.mean()) - 20.0) < 0.05 and float((snr - 20).abs().max()) < 0.8
    ranged = GaussianNoise(snr_db=(10.0, 30.0), prob=0.5)(x, seed=5)[0]
    noise = (ranged - x).square().mean(-1)
    snr = 10 * torch.log10(x.square().mean(-1)[noise > 0] / noise[noise > 0])
    assert float(snr.min()) > 9.5 and float(snr.max()) < 30.5


def test_baseline_wander_is_slow_and_relative():
    x = ecg((200, 12, 5000))
    aug = BaselineWander(fs=FS, gaussian=((0.0, 0.0),), prob=0.5)
    out, _, params = aug(x, seed=6, return_params=True)
    wander = out - x
    applied = wander.abs().amax(-1) > 0  # per lead: 7 of the 14 rows (7 zero) have a wander
    assert abs(float(applied.float().mean()) - 0.5) < 0.03
    power = torch.fft.rfft(wander.double(), dim=-1).abs() ** 2
    freqs = torch.fft.rfftfreq(5000, 1 / FS)
    assert float(power[..., freqs > 1.0].sum() / power.sum()) < 0.02  # leakage only
    ptp = x.amax(-1) - x.amin(-1)
    assert float((wander.abs().amax(-1) / ptp).max()) <= 0.35 * 4


@pytest.mark.parametrize("prob", [0.5, 0.8])
def test_baseline_wander_prob_is_torch_ecgs(prob):
    """torch_ecg pads each table with int((1 - prob) m / prob) zero rows and lets every
    lead take a wander row and a noise row independently: the leads with neither are
    (pad_a / (m + pad_a)) (pad_g / (k + pad_g)) of all, and nearly no sample is left
    alone."""
    x = ecg((400, 12, 1000))
    for backend in ("torch", "auto"):
        am = AugmenterManager({"name": "baseline_wander", "prob": prob}, fs=FS)
        out = am(x, seed=9, backend=backend)[0]
        touched = (out - x).abs().amax(-1) > 0
        m, k = 7, 3  # the default tables' rows
        pad_a, pad_g = int((1 - prob) * m / prob), int((1 - prob) * k / prob)
        expected = 1 - pad_a / (m + pad_a) * pad_g / (k + pad_g)
        assert abs(float(touched.float().mean()) - expected) < 0.03, backend
        assert float((~touched.any(-1)).float().mean()) < 0.01
    assert torch.equal(BaselineWander(fs=FS, prob=0.0)(x, seed=9)[0], x)


def test_amplitude_scale_and_time_shift():
    x = ecg((500, 2, 300))
    out = AmplitudeScale(scale=(0.5, 2.0), prob=1.0)(x, seed=1)[0]
    gain = out[:, :, 5] / x[:, :, 5]
    assert float(gain.min()) >= 0.5 - 1e-5 and float(gain.max()) <= 2.0 + 1e-5
    torch.testing.assert_close(gain[:, 0], gain[:, 1])
    mask = x[:, 0, :].clone()
    out, _, m, params = TimeShift(fs=100.0, max_shift_s=0.5, prob=1.0)(
        x, None, mask, seed=2, return_params=True)
    shifts = params["shift"]
    assert int(shifts.abs().max()) == 50 and len(shifts.unique()) > 50
    for i in range(0, 500, 37):
        s = int(shifts[i])
        ref = torch.roll(x[i], s, -1)
        if s > 0:
            ref[..., :s] = 0
        elif s < 0:
            ref[..., s:] = 0
        assert torch.equal(out[i], ref)
    assert torch.equal(m, out[:, 0])


def test_random_crop():
    x = ecg((300, 2, 500))
    out, _, m, params = RandomCrop(length=100, prob=1.0)(x, None, x[:, 1].clone(), seed=3,
                                                         return_params=True)
    start = params["start"]
    assert int(start.min()) >= 0 and int(start.max()) <= 400 and len(start.unique()) > 100
    for i in range(0, 300, 41):
        assert torch.equal(out[i], x[i, :, int(start[i]):int(start[i]) + 100])
    assert torch.equal(m, out[:, 1])
    centre = RandomCrop(length=100, prob=0.0)(x)[0]
    assert torch.equal(centre, x[..., 200:300])


def test_leads_mask_rate_and_minimum():
    x = torch.ones(5000, 12, 3)
    out = RandomLeadsMask(mask_prob=0.3, keep_at_least=2)(x, seed=7)[0]
    masked = out[..., 0] == 0
    assert abs(float(masked.float().mean()) - 0.3) < 0.01
    strict = RandomLeadsMask(mask_prob=0.95, keep_at_least=3)(x, seed=8)[0]
    assert int((strict[..., 0] != 0).sum(-1).min()) == 3


def test_reduced_lead_sets():
    x = ecg((2000, 12, 10))
    out = ReducedLeadSet(leads=(12, 6, 3), prob=1.0)(x, seed=1)[0]
    kept = (out[..., 0] != 0).sum(-1)
    counts = {k: float((kept == k).float().mean()) for k in (12, 6, 3)}
    assert all(abs(v - 1 / 3) < 0.05 for v in counts.values())
    order = ["V6", "V5", "V4", "V3", "V2", "V1", "aVF", "aVL", "aVR", "III", "II", "I"]
    dropped = ReducedLeadSet(leads=4, mode="drop")(x.flip(1), lead_names=order)[0]
    standard = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    assert torch.equal(dropped, x[:, [standard.index(n) for n in REDUCED_LEAD_SETS[4]]])


def test_vcg_rotation_orthogonal_and_in_range():
    x = ecg((500, 12, 50))
    aug = VCGRotation(max_angle_deg=30.0, scale=(0.8, 1.2), prob=0.5)
    out, _, params = aug(x, seed=3, return_params=True)
    rot = params["rotation"]
    eye = torch.eye(3, dtype=rot.dtype).expand_as(rot)
    torch.testing.assert_close(rot @ rot.transpose(1, 2), eye)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(500, dtype=rot.dtype))
    assert float(params["angles"].abs().max()) <= math.radians(30) + 1e-12
    assert float(params["angles"].abs().max()) > math.radians(25)
    assert 0.8 <= float(params["scale"].min()) and float(params["scale"].max()) <= 1.2
    on = params["applied"]
    assert torch.equal(out[~on], x[~on])
    # The rotation acts in the VCG: going there and back with R = I is Dower's projection.
    to_vcg, back = VCGRotation.standard_matrices()
    mixing = back @ (params["scale"][:, None, None] * rot) @ to_vcg
    torch.testing.assert_close(out[on].double(), mixing[on] @ x[on].double(), rtol=1e-5, atol=1e-5)
    # Einthoven holds in the output: III = II - I.
    torch.testing.assert_close(out[on][:, 2], out[on][:, 1] - out[on][:, 0], rtol=1e-4, atol=1e-5)


def test_mixup_per_sample_lambda_and_labels():
    x, label = ecg((4000, 2, 20)), torch.eye(4)[torch.arange(4000) % 4]
    out, lab, params = Mixup(alpha=0.5, prob=1.0)(x, label, seed=1, return_params=True)
    lam, partner = params["lam"], params["partner"]
    assert abs(float(lam.mean()) - 0.5) < 0.02  # Beta(0.5, 0.5)
    assert abs(float(lam.var()) - 0.125) < 0.01
    assert bool((partner != torch.arange(4000)).all())
    assert sorted(partner.tolist()) == list(range(4000))  # a permutation
    mixed = lam[:, None, None].float() * x + (1 - lam[:, None, None].float()) * x[partner]
    torch.testing.assert_close(out, mixed)
    torch.testing.assert_close(lab, lam[:, None].float() * label + (1 - lam[:, None].float())
                               * label[partner])
    pair = Mixup(prob=1.0, label_pair=True)(x, label, seed=1)[1]
    assert torch.equal(pair[0], label) and torch.equal(pair[1], label[partner])
    none = Mixup(prob=0.5)(x, label, seed=2, return_params=True)[2]
    untouched = none["partner"] == torch.arange(4000)
    assert abs(float(untouched.float().mean()) - 0.5) < 0.05


def test_cutmix_cuts_signal_masks_and_labels_together():
    x = ecg((300, 2, 400))
    label = torch.rand(300, 3)
    seg = x[:, 0, :, None].clone()
    out, lab, m, params = CutMix(prob=1.0)(x, label, seg, seed=5, return_params=True)
    start, end, partner = params["start"][0], params["end"][0], params["partner"][0]
    for i in range(0, 300, 23):
        p, s, e = int(partner[i]), int(start[i]), int(end[i])
        assert torch.equal(out[i, :, s:e], x[p, :, s:e])
        assert torch.equal(out[i, :, :s], x[i, :, :s]) and torch.equal(out[i, :, e:], x[i, :, e:])
        kept = 1 - (e - s) / 400
        torch.testing.assert_close(lab[i], kept * label[i] + (1 - kept) * label[p])
    assert torch.equal(m[..., 0], out[:, 0])


def test_label_smooth():
    label = torch.eye(5)[torch.arange(1000) % 5]
    _, out = LabelSmooth(smoothing=0.2, prob=0.5)(torch.zeros(1000, 1, 3), label, seed=0)
    smoothed = (out != label).any(-1)
    assert abs(float(smoothed.float().mean()) - 0.5) < 0.08
    torch.testing.assert_close(out[smoothed].sum(-1), torch.ones(int(smoothed.sum())))
    assert float(out[smoothed].max()) == pytest.approx(0.8 + 0.04)


# ---- bad input ---------------------------------------------------------------------------

@pytest.mark.parametrize("build, match", [
    (lambda: RandomFlip(prob=1.5), "prob must be a number in"),
    (lambda: RandomMasking(fs=FS, prob=(0.5, -0.1)), "prob must be a number in"),
    (lambda: Mixup(prob=-0.1), "prob must be"),
    (lambda: RandomMasking(fs=FS, mask_width=(0.2, 0.1)), "mask_width must satisfy"),
    (lambda: RandomRenormalize(std=(-1.0, 0.2)), "std must satisfy"),
    (lambda: RandomRenormalize(mean=[[0, 1, 2]] * 3, per_channel=True), r"shape \(n_leads, 2\)"),
    (lambda: RandomRenormalize(mean=[[0, 1], [1, 0]], per_channel=True), r"mean\[1\] must satisfy"),
    (lambda: RandomRenormalize(std=[[0.1, 0.2], [-0.1, 0.2]], per_channel=True),
     r"std\[1\] must satisfy"),
    (lambda: RandomRenormalize(std=[[0.1, 0.2]] * 3), "needs per_channel=True"),
    (lambda: AmplitudeScale(scale=(2.0, 1.0)), "scale must satisfy"),
    (lambda: GaussianNoise(snr_db=(30.0, 10.0)), "snr_db must satisfy"),
    (lambda: EMGNoise(band=(150.0, 20.0)), "band must satisfy"),
    (lambda: PowerlineNoise(amplitude=-1.0), "amplitude must satisfy"),
    (lambda: StretchCompress(ratio=-3), "ratio must be"),
    (lambda: Mixup(alpha=0.0), "alpha must be a positive"),
    (lambda: ReducedLeadSet(leads=5), "leads must be among"),
    (lambda: ReducedLeadSet(leads=(6, 3), mode="drop"), "needs one lead set"),
    (lambda: ReducedLeadSet(leads=2, mode="drop", prob=0.5), "prob must be 1"),
    (lambda: RandomLeadsMask(keep_at_least=-1), "keep_at_least"),
    (lambda: VCGRotation(max_angle_deg=270), "max_angle_deg"),
    (lambda: TimeShift(max_shift_s=-1.0), "max_shift_s"),
])
def test_bad_arguments(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize("aug, match", [
    (PowerlineNoise(fs=100.0, freq=60.0), r"60 Hz .* below fs/2 = 50 Hz"),
    (EMGNoise(fs=200.0), r"inside \(0, fs/2\) = \(0, 100\) Hz"),
    # Two transitions of fs / 256 each (the filter's 931-tap cap) do not fit in 2 Hz.
    (EMGNoise(fs=FS, band=(50.0, 52.0)), r"narrower than 3.90625 Hz"),
    (BaselineWander(fs=0.5), "below fs/2"),
    (VCGRotation(), "needs the standard 12 leads or lead_names"),
    (ReducedLeadSet(), "needs the standard 12 leads or lead_names"),
    (RandomCrop(length=5000), "longer than the signal"),
    (RandomMasking(fs=FS, mask_width=(0.1, 2.0)), "not shorter than the signal"),
    (RandomRenormalize(std=[[0.1, 0.2]] * 3, per_channel=True, inplace=True),
     "std has 3 per-lead ranges but the signal has 8 leads"),
])
def test_bad_signal_for_the_step(aug, match):
    with pytest.raises(ValueError, match=match):
        aug(ecg((2, 8, 1000)), seed=0)


def test_bad_tensors():
    aug = StretchCompress(prob=1.0)
    x = ecg((4, 12, 100))
    with pytest.raises(ValueError, match="label of shape"):
        aug(x, torch.rand(3, 5))
    # torch_ecg's sequence label (batch, n_samples, n_classes) as the label: the message
    # says where it goes, and there it moves with the signal
    seq = x[:, :3, :].transpose(1, 2).clone()
    with pytest.raises(ValueError, match="goes after the label, as a mask"):
        aug(x, seq)
    out, _, moved = aug(x, None, seq, seed=2)
    torch.testing.assert_close(moved, out[:, :3, :].transpose(1, 2))
    with pytest.raises(ValueError, match="mask 0 of shape"):
        aug(x, torch.rand(4, 5), torch.rand(4, 99))
    with pytest.raises(ValueError, match="indices must be 4 integers"):
        aug(x, indices=[0, 1])
    with pytest.raises(ValueError, match="seed must be"):
        aug(x, seed=-1)
    with pytest.raises(ValueError, match="floating-point"):
        aug(torch.ones(2, 3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"needs the sampling rate.*aug\(sig, label, fs="):
        BaselineWander()(x)
    # the advice is the call that works (fs by keyword: the second argument is the label)
    torch.testing.assert_close(BaselineWander()(x, seed=1, fs=FS)[0],
                               BaselineWander(fs=FS)(x, seed=1)[0], rtol=0, atol=0)
    with pytest.raises(ValueError, match="label must be a tensor"):
        BaselineWander()(x, FS)
    classes = torch.tensor([0, 2, 1, 1])
    assert torch.equal(aug(x, classes, seed=0)[1], classes)  # class indices pass through
    for mixer in (Mixup(), CutMix(), LabelSmooth()):
        with pytest.raises(ValueError, match="one-hot or soft"):
            mixer(x, classes)


@pytest.mark.parametrize("build", [
    lambda n: RandomCrop(length=n(300)),
    lambda n: CutMix(num_mix=n(2), prob=1.0),
    lambda n: RandomLeadsMask(keep_at_least=n(2)),
    lambda n: PowerlineNoise(fs=FS, harmonics=n(2), prob=1.0),
    lambda n: ReducedLeadSet(leads=n(6)),
    lambda n: ReducedLeadSet(leads=[n(6), n(3)]),
])
def test_numpy_integers_are_integers(build):
    import numpy as np

    plain, numpy_int = build(int), build(np.int64)
    assert numpy_int.config() == plain.config()
    x, label = ecg((4, 12, 1000)), torch.rand(4, 3)
    for a, b in zip(plain(x, label, seed=1), numpy_int(x, label, seed=1)):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="must be"):
        build(lambda v: float(v))  # 2.0 is not an integer
    with pytest.raises(ValueError, match="must be"):
        build(lambda v: True)


def test_views_take_a_numpy_integer():
    import numpy as np

    am = AugmenterManager({"name": "gaussian_noise", "prob": 1.0})
    x = ecg((3, 12, 100))
    assert torch.equal(am.views(x, n=np.int64(2), seed=0), am.views(x, n=2, seed=0))
    with pytest.raises(ValueError, match="views: n must be"):
        am.views(x, n=2.0)


@pytest.mark.parametrize("spec, match", [
    ({"name": "reduced_lead_set"}, "needs the standard 12 leads or lead_names; the signal has 1"),
    ({"name": "vcg_rotation"}, "needs the standard 12 leads or lead_names; the signal has 1"),
    ({"name": "random_leads_mask", "keep_at_least": 2}, "more than the signal's 1 leads"),
])
def test_lead_steps_refuse_a_1d_signal_in_a_pipeline(spec, match):
    # A 1-D signal has one lead: as when the step is called on its own, a clear
    # ValueError before any work, not an internal error.
    with pytest.raises(ValueError, match=match):
        AugmenterManager(spec, fs=FS)(ecg((1000,)), seed=0)
    with pytest.raises(ValueError, match=match):
        AUGMENTERS.build(spec)(ecg((1000,)), seed=0)
