"""AugmenterManager: reproducibility per sample whatever the batch split, the torch_ecg
call and config, round trips, views, replay, the loader, and errors before any work."""

import json

import pytest
import torch
from torch import nn

from fastecg.augmenters import (AmplitudeScale, AugmenterManager, CutMix, DeviceAugmentLoader,
                                IndexedDataset, Mixup, RandomFlip, StretchCompress, TimeShift,
                                VCGRotation)
from fastecg.preprocessors import BandPass, CropOrPad, PreprocManager, Resample

FS = 500.0

# torch_ecg's documented config (all seven of its README example).
TORCH_ECG_CONFIG = dict(random=False, fs=FS, baseline_wander={}, label_smooth={}, mixup={},
                        random_flip={}, random_masking={}, random_renormalize={},
                        stretch_compress={})

# Every per-sample augmenter (no Mixup/CutMix, which pair samples inside a batch).
PER_SAMPLE = [
    {"name": "baseline_wander", "prob": 0.7},
    {"name": "random_flip"},
    {"name": "random_masking", "prob": [0.5, 0.15]},
    {"name": "random_renormalize"},
    {"name": "stretch_compress"},
    {"name": "label_smooth"},
    {"name": "powerline_noise", "amplitude": [0.0, 0.1]},
    {"name": "emg_noise"},
    {"name": "gaussian_noise", "snr_db": [15.0, 25.0]},
    {"name": "amplitude_scale"},
    {"name": "time_shift", "max_shift_s": 0.2},
    {"name": "random_leads_mask", "mask_prob": 0.2, "prob": 0.3},
    {"name": "reduced_lead_set", "prob": 0.3},
    {"name": "vcg_rotation"},
]


def ecg(shape=(64, 12, 500), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).cumsum(-1) / 20


def same_whatever_the_split(am, tensors, index, backend):
    """`am` on 64 samples (`tensors`: signal, label, ... with the batch first) as one
    batch, as 4 batches of 16 and as 2 index-sharded ranks of 32: every output equal
    within 1e-6, and every sample changed. Returns the one-batch outputs."""
    def run(sel):
        return am(*[t[sel] for t in tensors], seed=42, epoch=3, indices=index[sel],
                  backend=backend)

    whole = run(slice(None))
    quarters = [run(slice(i, i + 16)) for i in range(0, 64, 16)]
    ranks = [run(slice(r, None, 2)) for r in range(2)]
    for k in range(len(tensors)):
        torch.testing.assert_close(torch.cat([q[k] for q in quarters]), whole[k], rtol=0,
                                   atol=1e-6)
        merged = torch.empty_like(whole[k])
        merged[0::2], merged[1::2] = ranks[0][k], ranks[1][k]
        torch.testing.assert_close(merged, whole[k], rtol=0, atol=1e-6)
    assert (whole[0] - tensors[0]).abs().amax((-2, -1)).gt(0).all()  # every sample changed
    return whole


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_same_sample_same_result_whatever_the_batch(backend):
    am = AugmenterManager(*PER_SAMPLE, fs=FS)
    x, label = ecg(), torch.rand(64, 5)
    mask = x[:, 0, :, None].clone()
    index = torch.arange(1000, 1064)
    whole = same_whatever_the_split(am, (x, label, mask), index, backend)
    other_epoch = am(x, label, mask, seed=42, epoch=4, indices=index, backend=backend)[0]
    other_seed = am(x, label, mask, seed=43, epoch=3, indices=index, backend=backend)[0]
    assert not torch.allclose(other_epoch, whole[0]) and not torch.allclose(other_seed, whole[0])


@pytest.mark.parametrize("backend", ["torch", "cpu"])
@pytest.mark.parametrize("poison", [float("nan"), float("inf"), 1e30])
def test_a_poisoned_record_changes_no_other(backend, poison):
    # One record with a NaN, an Inf or a 1e30 sample beside clean ones: every per-sample
    # step (statistics, renormalisation, warps and noises included, per lead and per
    # sample) leaves the other records exactly as they are without it.
    am = AugmenterManager(*PER_SAMPLE, {"name": "random_renormalize", "per_channel": True,
                                        "prob": 1.0}, fs=FS)
    x, index = ecg((8, 12, 500)), torch.arange(100, 108)
    bad = x.clone()
    bad[3, 5, 250] = poison
    out = am(bad, seed=7, indices=index, backend=backend)[0]
    clean = [i for i in range(8) if i != 3]
    alone = am(x[clean], seed=7, indices=index[clean], backend=backend)[0]
    torch.testing.assert_close(out[clean], alone, rtol=0, atol=0)
    unpoisoned = am(x, seed=7, indices=index, backend=backend)[0]
    assert not torch.allclose(out[3], unpoisoned[3])  # the poison did reach its record


def test_mixup_lambda_is_per_sample_even_though_partners_are_not():
    x = ecg((32, 2, 50))
    full = Mixup(prob=1.0)(x, seed=1, return_params=True)[-1]
    half = Mixup(prob=1.0)(x[:16], seed=1, return_params=True)[-1]
    torch.testing.assert_close(half["lam"], full["lam"][:16])


def test_torch_ecg_call_and_config():
    am = AugmenterManager.from_config(TORCH_ECG_CONFIG)
    assert [type(s).__name__ for s in am] == ["BaselineWander", "LabelSmooth", "Mixup",
                                              "RandomFlip", "RandomMasking",
                                              "RandomRenormalize", "StretchCompress"]
    sig, label, mask = torch.randn(2, 12, 5000), torch.rand(2, 26), torch.rand(2, 5000, 1)
    out = am(sig, label, mask, seed=0)
    assert [t.shape for t in out] == [sig.shape, label.shape, mask.shape]
    sig_only, no_label = am(sig, seed=0)[:2]
    assert no_label is None and sig_only.shape == sig.shape
    fewer = AugmenterManager.from_config({**TORCH_ECG_CONFIG, "mixup": None,
                                          "label_smooth": False})
    assert len(fewer) == 5


def test_config_round_trips():
    am = AugmenterManager(*PER_SAMPLE, {"name": "cutmix", "prob": 0.3}, fs=FS)
    config = am.to_config()
    assert json.loads(json.dumps(config)) == config
    again = AugmenterManager.from_config(json.loads(json.dumps(config)))
    assert again.to_config() == config
    x, label = ecg((8, 12, 500)), torch.rand(8, 3)
    for a, b in zip(am(x, label, seed=5), again(x, label, seed=5)):
        assert torch.equal(a, b)


def test_replay():
    am = AugmenterManager.from_config(TORCH_ECG_CONFIG)
    am.add_({"name": "vcg_rotation"}).add_({"name": "emg_noise"})
    x, label = ecg((8, 12, 1000)), torch.rand(8, 4)
    *out, params = am(x, label, seed=3, return_params=True)
    again = am.apply(x, params, label)
    for a, b in zip(out, again):
        assert torch.equal(a, b)
    # Without return_params the fused pass scales the wander by each lead's range as
    # it reads it (the returned amplitudes are absolute): the same to float rounding.
    for a, b in zip(am(x, label, seed=3), out):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6 * float(b.abs().max()))
    other = ecg((8, 12, 1000), seed=1)
    assert am.apply(other, params, label)[0].shape == other.shape


def test_views():
    am = AugmenterManager({"name": "gaussian_noise", "prob": 1.0}, {"name": "random_flip"},
                          {"name": "time_shift", "prob": 1.0}, fs=FS)
    x = ecg((6, 12, 400))
    views = am.views(x, n=3, seed=7)
    assert views.shape == (3, 6, 12, 400)
    assert not torch.allclose(views[0], views[1]) and not torch.allclose(views[1], views[2])
    torch.testing.assert_close(am.views(x[:3], n=3, seed=7), views[:, :3], rtol=0, atol=1e-6)
    torch.testing.assert_close(views[0], am(x, seed=7)[0], rtol=0, atol=1e-6)  # view 0
    assert am.views(x[0, 0], n=2, seed=1).shape == (2, 400)


def test_random_order_is_drawn_per_batch_and_reproducible():
    am = AugmenterManager({"name": "amplitude_scale", "prob": 1.0}, {"name": "time_shift",
                          "prob": 1.0}, {"name": "random_flip"}, fs=FS, random=True)
    x = ecg((4, 12, 200))
    assert torch.equal(am(x, seed=1)[0], am(x, seed=1)[0])
    orders = {tuple(i for i, _ in am(x, seed=s, return_params=True)[-1]["steps"])
              for s in range(20)}
    assert len(orders) > 2


def test_device_augment_loader_keys_by_dataset_index():
    x, label = ecg((40, 12, 300)), torch.rand(40, 3)
    data = IndexedDataset(torch.utils.data.TensorDataset(x, label))
    am = AugmenterManager({"name": "gaussian_noise", "prob": 1.0}, {"name": "random_flip"})
    ref = am(x, label, seed=9, epoch=2, indices=torch.arange(40))
    order = torch.randperm(40, generator=torch.Generator().manual_seed(0))
    for batch_size in (8, 40):
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size, sampler=order.tolist())
        aug = DeviceAugmentLoader(loader, am, "cpu", seed=9, indexed=True)
        aug.set_epoch(2)
        out = list(aug)
        assert len(out) == len(aug) == 40 // batch_size
        torch.testing.assert_close(torch.cat([s for s, _ in out]), ref[0][order], rtol=0,
                                   atol=1e-6)
        torch.testing.assert_close(torch.cat([lab for _, lab in out]), ref[1][order])
    plain = DeviceAugmentLoader(torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, label), batch_size=10), am, seed=9, epoch=2)
    torch.testing.assert_close(torch.cat([s for s, _ in plain]), ref[0], rtol=0, atol=1e-6)


def test_errors_before_any_work():
    calls = []

    class Spy(nn.Module):
        def forward(self, sig):
            calls.append(1)
            return sig

    am = AugmenterManager(Spy(), StretchCompress(), VCGRotation())
    x = ecg((4, 12, 100))
    with pytest.raises(ValueError, match="label of shape"):
        am(x, torch.rand(5, 3))
    with pytest.raises(ValueError, match="mask 0 of shape"):
        am(x, torch.rand(4, 3), torch.rand(4, 90, 1))
    with pytest.raises(ValueError, match=r"step 2 \(vcg_rotation\).*12 leads or lead_names"):
        am(ecg((4, 8, 100)))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="backend 'cuda' cannot run here"):
            am(x, backend="cuda")
    with pytest.raises(ValueError, match="backend 'cpu' cannot run here.*float32 or float64"):
        am(x.half(), backend="cpu")
    with pytest.raises(ValueError, match="unknown backend 'tourch'"):
        am(x, backend="tourch")
    assert not calls
    with pytest.raises(ValueError, match="unknown augmenter 'mixpu'; did you mean 'mixup'"):
        AugmenterManager.from_config({"mixpu": {}})
    with pytest.raises(ValueError, match=r"highcut|below fs/2"):
        AugmenterManager({"name": "powerline_noise", "freq": 60.0}, fs=100.0)
    am(x, seed=0)
    assert calls


def test_outputs_feed_training_call_after_call():
    """The fused pass's draws run in inference mode: nothing they make may reach the
    outputs. A step that reads the signal mid-pass (the wander after a flip) runs the
    kernel into a work buffer inside its draw; the signal and labels then feed a model's
    backward, call after call, and equal the draws made outside inference mode."""
    am = AugmenterManager.from_config({"fs": 500.0, "random": False,
                                       "random_flip": {"prob": [1.0, 0.5]},
                                       "baseline_wander": {"prob": 1.0}, "mixup": {}})
    conv = nn.Conv1d(12, 4, 5)
    x, y = torch.randn(8, 12, 500), torch.rand(8, 3)
    for epoch in range(3):
        sig, lab = am(x, y, seed=0, epoch=epoch, indices=torch.arange(8))
        assert not sig.is_inference() and not lab.is_inference()
        (conv(sig).mean() * lab.mean()).backward()
    assert conv.weight.grad is not None and bool(torch.isfinite(conv.weight.grad).all())
    # the same draws as without inference mode
    ref = am(x, y, seed=0, epoch=2, indices=torch.arange(8), return_params=True)
    torch.testing.assert_close(sig, ref[0], rtol=0, atol=0)
    torch.testing.assert_close(lab, ref[1], rtol=0, atol=0)


def test_torch_ecg_passes_fs_to_every_step():
    """torch_ecg's from_config copies the manager's fs into every step's dict, and its
    managers take an `inplace` flag: both are accepted, with the same result as without."""
    steps = ("baseline_wander", "random_flip", "random_masking", "random_renormalize",
             "stretch_compress", "mixup", "label_smooth")
    with_fs = AugmenterManager.from_config(
        {"fs": 500.0, "random": False, "inplace": True, **{s: {"fs": 500.0} for s in steps}})
    plain = AugmenterManager.from_config({"fs": 500.0, "random": False, **{s: {} for s in steps}})
    x, label = ecg((4, 12, 1000)), torch.rand(4, 3)
    for a, b in zip(with_fs(x, label, seed=2), plain(x, label, seed=2)):
        assert torch.equal(a, b)


def test_manager_prob_and_the_augmenters_own_prob_both_round_trip():
    # add_(..., manager_prob=p) is the manager's per-batch draw; the augmenter keeps its
    # own per-sample prob: the config keeps the two apart, and rebuilds the same pipeline.
    am = AugmenterManager(fs=FS)
    am.add_(AmplitudeScale(scale=(0.5, 2.0), prob=1.0), manager_prob=0.5)
    am.add_("gaussian_noise", manager_prob=0.3)
    config = am.to_config()
    assert [(s["prob"], s["manager_prob"]) for s in config["steps"]] == [(1.0, 0.5), (0.5, 0.3)]
    again = AugmenterManager.from_config(json.loads(json.dumps(config)))
    assert again.probs == (0.5, 0.3) and [s.prob for s in again] == [1.0, 0.5]
    x = ecg((16, 12, 200))
    applied = 0
    for seed in range(20):
        out, ref = again(x, seed=seed)[0], am(x, seed=seed)[0]
        assert torch.equal(out, ref)
        applied += not torch.equal(out, x)
    assert 0 < applied < 20  # the manager's draw both keeps and leaves out the steps
    # torch_ecg's form: "prob" in an augmenter's dict is the augmenter's own
    own = AugmenterManager.from_config({"fs": FS, "amplitude_scale": {"prob": 0.3}})
    assert own.probs == (1.0,) and own[0].prob == 0.3
    with pytest.raises(ValueError, match="prob given twice"):
        AugmenterManager().add_({"name": "random_flip", "manager_prob": 0.5}, manager_prob=0.5)


def test_add_takes_torch_ecgs_arguments_for_the_augmenter():
    # torch_ecg's add_(aug, pos, **kwargs) builds the augmenter with them: prob was the
    # manager's per-batch draw here (30% of batches instead of 30% of the samples), and
    # any other argument was a TypeError
    am = AugmenterManager(fs=FS).add_("mixup", prob=0.3, alpha=0.2)
    am.add_({"name": "random_flip"}, pos=0, per_channel=False)
    assert am.probs == (1.0, 1.0)
    assert (am[1].prob, am[1].alpha, am[0].per_channel) == (0.3, 0.2, False)
    x, y = ecg((2000, 1, 8)), torch.eye(4).repeat(500, 1)
    _, label, params = am(x, y, seed=0, return_params=True)
    mixed = (dict(params["steps"])[1]["lam"] < 1).double().mean()
    assert abs(float(mixed) - 0.3) < 4 * (0.3 * 0.7 / 2000) ** 0.5  # per sample
    with pytest.raises(ValueError, match="'alpha' given twice"):
        AugmenterManager().add_({"name": "mixup", "alpha": 0.1}, alpha=0.2)
    with pytest.raises(ValueError, match="RandomFlip is built already .*prob given.*"
                                         "manager_prob="):
        AugmenterManager().add_(RandomFlip(), prob=0.5)
    with pytest.raises(ValueError, match="built already"):
        AugmenterManager().add_(RandomFlip(), per_channel=False)


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_preprocessing_steps_run_as_in_their_own_pipeline(backend):
    # A fastecg preprocessor inside an AugmenterManager takes the manager's rate (and the
    # one after a resampling), as in a PreprocManager.
    x = ecg((16, 12, 1000))
    noise = {"name": "gaussian_noise", "prob": 1.0}
    am = AugmenterManager(noise, BandPass(), Resample(dst_fs=250.0),
                          {"name": "time_shift", "prob": 1.0}, fs=FS)
    out = am(x, seed=3, backend=backend)[0]
    noisy = AugmenterManager(noise, fs=FS)(x, seed=3, backend=backend)[0]
    pre = PreprocManager(BandPass(), Resample(dst_fs=250.0), fs=FS)(noisy)
    shift = am(x, seed=3, backend="torch", return_params=True)[-1]["steps"][3][1]
    assert 0 < shift["shift"].abs().max() <= 125  # at most 0.5 s at 250 Hz, not at 500
    ref = TimeShift(prob=1.0).apply(pre, shift, fs=250.0)[0]
    assert out.shape == (16, 12, 500)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5 * float(ref.abs().max()))
    # The same length: masks pass through; a new length: refused before any work.
    mask = torch.rand(16, 1000)
    filtered = AugmenterManager(BandPass(), fs=FS)(x, None, mask, backend=backend)
    assert torch.equal(filtered[2], mask)
    torch.testing.assert_close(filtered[0], PreprocManager(BandPass(), fs=FS)(x))
    with pytest.raises(ValueError, match=r"step 2 \(Resample\).*masks cannot follow"):
        am(x, None, mask, seed=3, backend=backend)


def test_a_random_preprocessing_step_is_keyed_and_replayed():
    am = AugmenterManager(CropOrPad(length=300, mode="random"), fs=FS)
    x = ecg((8, 12, 1000))
    *out, params = am(x, seed=4, return_params=True)
    assert torch.equal(out[0], am(x, seed=4)[0])
    assert not torch.equal(out[0], am(x, seed=5)[0])
    assert torch.equal(am.apply(x, params)[0], out[0])


def test_label_pair_comes_back_in_the_callers_shapes():
    x4, y4 = ecg((2, 3, 12, 200)), torch.eye(6).view(2, 3, 6)
    am = AugmenterManager({"name": "mixup", "prob": 1.0, "label_pair": True})
    y_a, y_b, lam = am(x4, y4, seed=0)[1]
    assert y_a.shape == y_b.shape == (2, 3, 6) and lam.shape == (2, 3)
    mixed = AugmenterManager({"name": "mixup", "prob": 1.0})(x4, y4, seed=0)[1]
    torch.testing.assert_close(lam[..., None] * y_a + (1 - lam[..., None]) * y_b, mixed)
    x, y = ecg((4, 12, 200)), torch.tensor([0.0, 1.0, 1.0, 0.0])  # one value per sample
    pair = CutMix(prob=1.0, label_pair=True)(x, y, seed=0)[1]
    assert [t.shape for t in pair] == [(4,)] * 3 and torch.equal(pair[0], y)


def test_label_steps_after_a_label_pair():
    x, y = ecg((4, 12, 200)), torch.eye(4)
    am = AugmenterManager({"name": "mixup", "prob": 1.0, "label_pair": True},
                          {"name": "label_smooth", "prob": 1.0, "smoothing": 0.5})
    y_a, y_b, lam = am(x, y, seed=0)[1]
    plain = AugmenterManager({"name": "mixup", "prob": 1.0, "label_pair": True})(x, y, seed=0)[1]
    torch.testing.assert_close(y_a, 0.5 * plain[0] + 0.125)  # both smoothed
    torch.testing.assert_close(y_b, 0.5 * plain[1] + 0.125)
    assert torch.equal(lam, plain[2])
    # a mixer after (or, in a random order, beside) a label_pair step cannot mix the pair
    with pytest.raises(ValueError, match=r"step 1 \(cutmix\) would mix the label pair"):
        AugmenterManager({"name": "mixup", "label_pair": True}, "cutmix")
    with pytest.raises(ValueError, match="in a random order"):
        AugmenterManager("cutmix", {"name": "mixup", "label_pair": True}, random=True)
    assert len(AugmenterManager("cutmix", {"name": "mixup", "label_pair": True})) == 2
    am = AugmenterManager({"name": "cutmix", "label_pair": True})
    with pytest.raises(ValueError, match="would mix the label pair"):
        am.add_("mixup")
    assert len(am) == 1  # the refused step is not kept


def test_a_refused_step_or_order_leaves_the_manager_as_it_was():
    am = AugmenterManager("random_flip", {"name": "baseline_wander", "prob": 1.0}, fs=100.0)
    with pytest.raises(ValueError, match="powerline_noise"):
        am.add_("powerline_noise", prob=0.5, pos=1)  # 60 Hz above fs/2
    assert [type(s).__name__ for s in am] == ["RandomFlip", "BaselineWander"]
    assert am.probs == (1.0, 1.0)
    am = AugmenterManager("cutmix", {"name": "mixup", "label_pair": True}, fs=FS)
    with pytest.raises(ValueError, match="would mix the label pair"):
        am.rearrange([1, 0])
    assert [type(s).__name__ for s in am] == ["CutMix", "Mixup"]
    assert am(ecg((4, 12, 200)), torch.eye(4), seed=0)[0].shape == (4, 12, 200)


def test_indices_beyond_the_keys_range_are_refused():
    # Keys hold 48 bits of the index: i and i + 2**48 would be augmented alike.
    am = AugmenterManager({"name": "gaussian_noise", "prob": 1.0}, fs=FS)
    x = ecg((2, 12, 100))
    with pytest.raises(ValueError, match=r"indices must be integers in \[0, 2\*\*48\)"):
        am(x, seed=1, indices=torch.tensor([7, 7 + 2 ** 48]))
    with pytest.raises(ValueError, match=r"indices must be integers in \[0, 2\*\*48\)"):
        am(x, seed=1, indices=[-1, 0])
    top = am(x, seed=1, indices=[2 ** 48 - 1, 0])[0]
    assert not torch.equal(top[0], am(x, seed=1, indices=[2 ** 48 - 2, 0])[0][0])


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_empty_batch(backend):
    steps = [{"name": "random_renormalize", "prob": 1.0},
             {"name": "random_renormalize", "prob": 1.0, "per_channel": True}]
    out = AugmenterManager(*steps, fs=FS)(torch.randn(0, 12, 300), seed=0, backend=backend)[0]
    assert out.shape == (0, 12, 300)



def test_label_pair_check_holds_when_random_is_set_afterwards():
    """A mixer after a label_pair step is refused at a call too: `random` set after the
    manager was built reached CutMix with the (y_a, y_b, lam) pair (a TypeError)."""
    am = AugmenterManager({"name": "cutmix", "prob": 1.0},
                          {"name": "mixup", "prob": 1.0, "label_pair": True}, fs=500.0)
    am.random = True
    x, y = torch.randn(4, 2, 100), torch.eye(4)
    for seed in range(6):
        with pytest.raises(ValueError, match="would mix the label pair"):
            am(x, y, seed=seed)


def test_torch_ecgs_names_of_the_class_and_the_steps():
    from fastecg.augmenters import BaselineWander, BaselineWanderAugmenter

    assert BaselineWanderAugmenter is BaselineWander
    am = AugmenterManager("random_flip", "mixup")
    assert am.augmenters is am.steps and [type(a).__name__ for a in am.augmenters] == \
        ["RandomFlip", "Mixup"]
    pm = PreprocManager()
    assert pm.empty and pm.preprocessors is pm.steps
    pm.add_("bandpass")
    assert not pm.empty and type(pm.preprocessors[0]) is BandPass
