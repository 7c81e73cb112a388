"""patch_mask, masked_patch_embed, masked_reconstruction_loss against plain-torch references
(patchify everything, gather, unfused loss); exact counts, uniformity, gradcheck, opcheck,
compile, bad input."""

import itertools
import math

import pytest
import torch

from fastecg.ops import masked_patch_embed, masked_reconstruction_loss, patch_mask
from fastecg.ops.patch_mask import MASK_MODES, patchify, unpatchify

MODES = list(MASK_MODES)


def _reference_kept(x, ids_keep, patch_size, mode):
    full = x.unfold(-1, patch_size, patch_size)  # (B, C, T, P): every patch, copied
    if mode == "temporal":
        tokens = full.permute(0, 2, 1, 3).flatten(2)
    else:
        tokens = full.flatten(1, 2)
    return tokens.gather(1, ids_keep[..., None].expand(-1, -1, tokens.shape[-1]))


def _reference_loss(pred, x, mask, patch_size, mode, norm_pix, eps=1e-6):
    target = patchify(x, patch_size, mode)
    if norm_pix:
        target = (target - target.mean(-1, keepdim=True)) / (
            target.var(-1, keepdim=True) + eps).sqrt()
    per_patch = (pred - target).square().mean(-1)
    return (per_patch * mask).sum() / mask.sum()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape,patch,ratio", [((3, 4, 60), 6, 0.75), ((1, 1, 10), 5, 0.5),
                                               ((2, 12, 100), 10, 0.0)])
def test_kept_counts_and_restore(mode, shape, patch, ratio):
    x = torch.randn(shape)
    b, c, n = shape
    t = n // patch
    kept, mask, ids_keep, ids_restore = patch_mask(x, patch, ratio, mode)
    torch.testing.assert_close(kept, _reference_kept(x, ids_keep, patch, mode), rtol=0, atol=0)
    if mode == "temporal":
        assert (mask.sum(1) == round(t * ratio)).all()
    elif mode == "lead_temporal":
        assert (mask.view(b, c, t).sum(-1) == round(t * ratio)).all()
    else:
        per_lead = mask.view(b, c, t)
        assert ((per_lead == per_lead[..., :1]).all())  # whole leads
        assert (per_lead[..., 0].sum(-1) == round(c * ratio)).all()
    # kept tokens are the unmasked ones, and ids_restore undoes the shuffle
    assert (mask.gather(1, ids_keep) == 0).all()
    # ids_restore puts kept tokens back in place, mask tokens (-1) everywhere else
    n_tok = mask.shape[1]
    seq = torch.cat([ids_keep, ids_keep.new_full((b, n_tok - ids_keep.shape[1]), -1)], 1)
    restored = seq.gather(1, ids_restore)
    tokens = torch.arange(n_tok).expand(b, n_tok)
    assert torch.equal(restored, torch.where(mask > 0, -1, tokens))
    assert torch.equal(ids_restore.sort(1).values, tokens)


@pytest.mark.parametrize("mode", ["temporal", "lead_temporal"])
def test_uniform_choice(mode):
    # Chi-square over many draws: each patch is masked with probability n_mask / T.
    torch.manual_seed(0)
    x = torch.zeros(4000, 2, 40)
    t, ratio = 8, 0.25
    _, mask, _, _ = patch_mask(x, 5, ratio, mode)
    counts = mask.view(-1, t).sum(0)
    draws = mask.view(-1, t).shape[0]
    expected = draws * round(t * ratio) / t
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 24.3  # 99.9 % quantile, 7 degrees of freedom
    # pairs too: each of the C(8, 2) masked sets is equally likely
    sets = mask.view(-1, t).nonzero()[:, 1].view(-1, 2)
    key = sets[:, 0] * t + sets[:, 1]
    hist = torch.bincount(key, minlength=t * t)[[i * t + j for i, j in
                                                  itertools.combinations(range(t), 2)]]
    exp = draws / math.comb(t, 2)
    assert ((hist - exp) ** 2 / exp).sum().item() < 61.1  # 99.9 %, 27 dof


def test_generator_reproducible():
    x = torch.randn(2, 3, 50)
    a = patch_mask(x, 5, 0.6, "lead_temporal", generator=torch.Generator().manual_seed(3))
    b = patch_mask(x, 5, 0.6, "lead_temporal", generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(u, v) for u, v in zip(a, b))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("norm_pix", [True, False])
def test_loss_matches_reference(mode, norm_pix):
    x = torch.randn(2, 3, 40, dtype=torch.float64)
    mask = patch_mask(x, 5, 0.5, mode).mask
    pred = torch.randn(patchify(x, 5, mode).shape, dtype=torch.float64)
    torch.testing.assert_close(masked_reconstruction_loss(pred, x, mask, 5, norm_pix, mode),
                               _reference_loss(pred, x, mask, 5, mode, norm_pix))


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck(mode):
    x = torch.randn(2, 2, 12, dtype=torch.float64, requires_grad=True)
    out = patch_mask(x, 3, 0.5, mode)
    pred = torch.randn(patchify(x, 3, mode).shape, dtype=torch.float64, requires_grad=True)
    code = MASK_MODES[mode]
    torch.autograd.gradcheck(
        lambda v: torch.ops.fastecg.patch_gather(v, out.ids_keep, 3, code, "auto"), (x,))
    torch.autograd.gradgradcheck(
        lambda v: torch.ops.fastecg.patch_gather(v, out.ids_keep, 3, code, "auto"), (x,))
    for norm_pix in (True, False):
        torch.autograd.gradcheck(
            lambda p, v: masked_reconstruction_loss(p, v, out.mask, 3, norm_pix, mode), (pred, x))


@pytest.mark.parametrize("mode", ["temporal", "lead_temporal"])
def test_embed_matches_reference_and_gradcheck(mode):
    x = torch.randn(2, 3, 12, dtype=torch.float64, requires_grad=True)
    d = 3 * 4 if mode == "temporal" else 4
    w = torch.randn(5, d, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(5, dtype=torch.float64, requires_grad=True)
    pos = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    lead = torch.randn(3, 5, dtype=torch.float64, requires_grad=True) \
        if mode != "temporal" else None
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    tokens, mask, ids_restore = masked_patch_embed(x, w, bias, pos, 4, 0.5, mode, gen(),
                                                   lead_embed=lead)
    ids_keep = patch_mask(x, 4, 0.5, mode, gen()).ids_keep
    # reference: embed every patch with a strided conv's equivalent, then gather
    full = patchify(x, 4, mode) @ w.T + bias
    if mode == "temporal":
        full = full + pos
    else:
        full = full + pos.repeat(3, 1) + lead.repeat_interleave(3, 0)
    ref = full.gather(1, ids_keep[..., None].expand(-1, -1, 5))
    torch.testing.assert_close(tokens, ref)
    inputs = (x, w, bias, pos) + ((lead,) if lead is not None else ())
    torch.autograd.gradcheck(
        lambda *a: masked_patch_embed(a[0], a[1], a[2], a[3], 4, 0.5, mode, gen(),
                                      lead_embed=a[4] if len(a) > 4 else None)[0], inputs)


def test_opcheck():
    x = torch.randn(2, 3, 20)
    for mode, code in MASK_MODES.items():
        out = patch_mask(x, 5, 0.5, mode)
        for req in (False, True):
            xr = x.clone().requires_grad_(req)
            torch.library.opcheck(torch.ops.fastecg.patch_gather.default,
                                  (xr, out.ids_keep, 5, code, "auto"))
            kept = out.kept.clone().requires_grad_(req)
            torch.library.opcheck(torch.ops.fastecg.patch_scatter.default,
                                  (kept, out.ids_keep, 5, code, 3, 20, "auto"))
            pred = torch.randn(patchify(x, 5, mode).shape, requires_grad=req)
            torch.library.opcheck(torch.ops.fastecg.masked_recon_loss.default,
                                  (pred, xr, out.mask, 5, code, True, 1e-6, "auto"))


def test_compile_fullgraph_matches_eager():
    x = torch.randn(2, 3, 40, requires_grad=True)
    w = torch.randn(8, 15, requires_grad=True)
    pos = torch.randn(8, 8, requires_grad=True)
    head = torch.randn(15, 8)

    def step(x, w, pos):
        tokens, mask, ids_restore = masked_patch_embed(x, w, None, pos, 5, 0.75)
        full = torch.cat([tokens, tokens.new_zeros(2, 6, 8)], 1)
        full = full.gather(1, ids_restore[..., None].expand(-1, -1, 8))
        return masked_reconstruction_loss(full @ head.T, x, mask, 5)

    torch.manual_seed(0)
    eager = step(x, w, pos)
    g_eager = torch.autograd.grad(eager, (x, w, pos))
    # Inductor draws its own random numbers unless told to call torch.rand as eager does.
    with torch._inductor.config.patch(fallback_random=True):
        compiled = torch.compile(step, fullgraph=True)
        torch.manual_seed(0)
        out = compiled(x, w, pos)
    g_comp = torch.autograd.grad(out, (x, w, pos))
    torch.testing.assert_close(out, eager)
    for g, h in zip(g_comp, g_eager):
        torch.testing.assert_close(g, h)


def test_unpatchify_inverts_patchify():
    x = torch.randn(2, 3, 20)
    for mode in MODES:
        assert torch.equal(unpatchify(patchify(x, 5, mode), 3, 5, mode), x)


@pytest.mark.parametrize("mode", MODES)
def test_empty_batch(mode):
    x = torch.randn(0, 4, 40)
    out = patch_mask(x, 10, 0.5, mode=mode)
    n_tokens = 4 if MASK_MODES[mode] == MASK_MODES["temporal"] else 16
    assert out.kept.shape == (0, n_tokens // 2, out.kept.shape[-1])
    assert out.mask.shape == out.ids_restore.shape == (0, n_tokens)
    assert unpatchify(patchify(x, 10, mode), 4, 10, mode).shape == x.shape


@pytest.mark.parametrize("kwargs,match", [
    (dict(patch_size=7), "not a multiple"),
    (dict(mask_ratio=1.0), "mask_ratio"),
    (dict(mask_ratio=-0.1), "mask_ratio"),
    (dict(mode="time"), "unknown mode"),
    (dict(patch_size=0), "patch_size"),
])
def test_bad_arguments(kwargs, match):
    args = dict(patch_size=5, mask_ratio=0.5, mode="temporal") | kwargs
    with pytest.raises(ValueError, match=match):
        patch_mask(torch.randn(1, 2, 20), **args)


def test_bad_shapes():
    with pytest.raises(ValueError, match="n_leads, n_samples"):
        patch_mask(torch.randn(2, 20), 5, 0.5)
    with pytest.raises(TypeError):
        patch_mask(torch.zeros(1, 2, 20, dtype=torch.long), 5, 0.5)
    x = torch.randn(1, 2, 20)
    with pytest.raises(ValueError, match="weight"):
        masked_patch_embed(x, torch.randn(4, 3), None, torch.randn(4, 4), 5, 0.5)
    with pytest.raises(ValueError, match="pred"):
        masked_reconstruction_loss(torch.randn(1, 3, 10), x, torch.ones(1, 4), 5)


def test_half_prediction_against_float_signal():
    # Under autocast the decoder gives bfloat16 beside a float32 signal.
    x = torch.randn(2, 3, 40)
    mask = patch_mask(x, 5, 0.5, "lead_temporal").mask
    pred = torch.randn(2, 24, 5, dtype=torch.bfloat16, requires_grad=True)
    loss = masked_reconstruction_loss(pred, x, mask, 5, True, "lead_temporal")
    assert loss.dtype == torch.bfloat16
    loss.backward()
    assert pred.grad.dtype == torch.bfloat16
    torch.library.opcheck(torch.ops.fastecg.masked_recon_loss.default,
                          (pred.detach().requires_grad_(), x, mask, 5, 1, True, 1e-6, "auto"))


# ---- compiled backends against the torch reference -------------------------------------------
# Gather and scatter are copies: bit for bit. The loss kernels accumulate each patch in
# float64 and round once, the reference works in the input dtype; measured differences
# on these inputs: float32 ~1e-6 relative (loss and gradients), float64 ~1e-15.

from backends import CUDA, TRITON, device_for  # noqa: E402

import fastecg  # noqa: E402
from fastecg.ops._dispatch import has_kernel  # noqa: E402

LOSS_TOL = {torch.float32: dict(rtol=2e-5, atol=2e-6),
            torch.float64: dict(rtol=1e-11, atol=1e-13)}
KERNEL_BACKENDS = [b for b in ("cpu", TRITON, CUDA)
                   if has_kernel("patch_gather", getattr(b, "values", [b])[0])
                   and fastecg.backends()[getattr(b, "values", [b])[0]].available]
MASK_SHAPES = [((3, 4, 60), 6, 0.75), ((1, 1, 10), 5, 0.5), ((2, 12, 100), 10, 0.0),
               ((2, 3, 35), 7, 0.6)]


def _signal(shape, dtype, seed=0):
    # An offset larger than the spread, as baseline wander gives: norm_pix must centre well.
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 5).to(dtype)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape,patch,ratio", MASK_SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_gather_scatter_bit_exact(backend, mode, shape, patch, ratio, dtype):
    dev = device_for(backend)
    x = _signal(shape, dtype).to(dev)
    code = MASK_MODES[mode]
    ids = patch_mask(x, patch, ratio, mode, backend="torch").ids_keep
    kept = torch.ops.fastecg.patch_gather(x, ids, patch, code, backend)
    ref = torch.ops.fastecg.patch_gather(x, ids, patch, code, "torch")
    assert kept.dtype == dtype and torch.equal(kept, ref)
    back = torch.ops.fastecg.patch_scatter(kept, ids, patch, code, shape[1], shape[2], backend)
    ref_back = torch.ops.fastecg.patch_scatter(ref, ids, patch, code, shape[1], shape[2], "torch")
    assert torch.equal(back, ref_back)
    # the public op on that backend gives the same draw and the same tokens
    gen = lambda: torch.Generator(dev).manual_seed(4)  # noqa: E731
    a = patch_mask(x, patch, ratio, mode, gen(), backend=backend)
    b = patch_mask(x, patch, ratio, mode, gen(), backend="torch")
    assert all(torch.equal(u, v) for u, v in zip(a, b))


def _loss_and_grads(pred, x, mask, patch, norm_pix, mode, backend, need_dx=True):
    p = pred.clone().requires_grad_()
    v = x.clone().requires_grad_(need_dx)
    loss = masked_reconstruction_loss(p, v, mask, patch, norm_pix, mode, backend=backend)
    loss.backward(torch.tensor(1.7, dtype=loss.dtype, device=loss.device))
    return loss.detach(), p.grad, v.grad


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("norm_pix", [True, False])
@pytest.mark.parametrize("shape,patch,ratio", MASK_SHAPES[:2] + MASK_SHAPES[3:])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_loss_and_backward_match_reference(backend, mode, norm_pix, shape, patch, ratio, dtype):
    if backend == "triton" and not torch.cuda.is_available() and shape[0] * shape[2] > 100:
        pytest.skip("Triton interpreter: small shapes only")
    dev = device_for(backend)
    x = _signal(shape, dtype).to(dev)
    mask = patch_mask(x, patch, ratio, mode, backend="torch").mask
    if mode == "lead_temporal":  # weights other than 0/1 are the loss's weights too
        mask = mask * torch.rand(mask.shape, generator=torch.Generator().manual_seed(1),
                                 dtype=dtype).to(dev)
    pred = torch.randn(patchify(x, patch, mode).shape, dtype=dtype,
                       generator=torch.Generator().manual_seed(2)).to(dev)
    ours = _loss_and_grads(pred, x, mask, patch, norm_pix, mode, backend)
    ref = _loss_and_grads(pred, x, mask, patch, norm_pix, mode, "torch")
    for u, v in zip(ours, ref):
        assert u.dtype == dtype
        # equal_nan: "lead" on one lead at ratio 0.5 masks nothing, 0 / 0 on every backend
        torch.testing.assert_close(u, v, equal_nan=True, **LOSS_TOL[dtype])
    # without x's gradient: the same pred gradient, and the backward op skips dx
    no_dx = _loss_and_grads(pred, x, mask, patch, norm_pix, mode, backend, need_dx=False)
    assert no_dx[2] is None
    torch.testing.assert_close(no_dx[1], ours[1], equal_nan=True, **LOSS_TOL[dtype])


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("x_dtype", [torch.float32, torch.bfloat16])
def test_half_gradients_match_the_cpu_kernel(backend, x_dtype):
    # A bfloat16 prediction (autocast) beside a float32 or bfloat16 signal: every kernel's
    # gradients round float32 results, as the C++ kernel does (the Triton interpreter's
    # float64 -> bfloat16 store wrote zeros).
    dev = device_for(backend)
    x = _signal((2, 3, 20), x_dtype).to(dev)
    mask = patch_mask(x, 5, 0.5, "lead_temporal", backend="torch").mask
    pred = torch.randn(2, 12, 5, generator=torch.Generator().manual_seed(2)).bfloat16().to(dev)
    ours = _loss_and_grads(pred, x, mask, 5, True, "lead_temporal", backend)
    ref = _loss_and_grads(pred.cpu(), x.cpu(), mask.cpu(), 5, True, "lead_temporal", "cpu")
    for u, v in zip(ours, ref):
        assert u.dtype == v.dtype and bool(v.abs().max() > 0)
        torch.testing.assert_close(u.cpu(), v, rtol=0.02, atol=1e-3)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_a_loss_past_float32_range_is_inf(backend):
    # The kernels sum in float64: a float32 loss past float32's range rounds to Inf (the
    # CPU kernel's scalar_tensor refused to convert it).
    dev = device_for(backend)
    x = _signal((2, 3, 40), torch.float32) * 1e20 + 1e25
    out = patch_mask(x, 8, 0.6, "temporal", torch.Generator().manual_seed(0), backend="torch")
    pred = torch.zeros(2, 5, 24)
    loss = masked_reconstruction_loss(pred.to(dev), x.to(dev), out.mask.to(dev), 8,
                                      norm_pix=False, backend=backend)
    assert loss.dtype == torch.float32 and loss.item() == math.inf


@pytest.mark.parametrize("backend", ["torch"] + KERNEL_BACKENDS)
@pytest.mark.parametrize("norm_pix", [True, False])
def test_non_finite_kept_tokens_are_never_read(backend, norm_pix):
    # A kept token (weight 0) with NaN in the signal and Inf in its prediction takes no
    # part in the loss on any backend: the loss and the other tokens' gradients are
    # finite and the same, the kept token's gradients 0.
    dev = device_for(backend)
    x = _signal((2, 3, 40), torch.float64)
    out = patch_mask(x, 8, 0.6, "temporal", torch.Generator().manual_seed(0), backend="torch")
    kept = int(out.ids_keep[0, 0])
    x[0, 1, kept * 8 + 2] = float("nan")
    pred = torch.randn(2, 5, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    pred[0, kept, 3] = float("inf")
    clean_x, clean_pred = x.nan_to_num(0.0), pred.clamp(-10, 10)
    loss, dpred, dx = _loss_and_grads(pred.to(dev), x.to(dev), out.mask.to(dev), 8, norm_pix,
                                      "temporal", backend)
    ref = _loss_and_grads(clean_pred, clean_x, out.mask, 8, norm_pix, "temporal", "torch")
    assert torch.isfinite(loss) and dpred.isfinite().all() and dx.isfinite().all()
    assert not dpred[0, kept].any() and not dx[0, :, kept * 8:kept * 8 + 8].any()
    for u, v in zip((loss, dpred, dx), ref):
        torch.testing.assert_close(u.cpu(), v, **LOSS_TOL[torch.float64])


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_kernel_gradcheck_and_opcheck(backend):
    dev = device_for(backend)
    x = torch.randn(2, 2, 12, dtype=torch.float64, device=dev)
    # The Triton interpreter runs one program at a time: one mode, gradcheck's fast mode.
    slow = backend == "triton" and not torch.cuda.is_available()
    for mode, code in list(MASK_MODES.items())[:1 if slow else None]:
        out = patch_mask(x, 3, 0.5, mode, backend="torch")
        pred = torch.randn(patchify(x, 3, mode).shape, dtype=torch.float64, device=dev)
        xr, pr = x.clone().requires_grad_(), pred.clone().requires_grad_()
        torch.autograd.gradcheck(
            lambda v: torch.ops.fastecg.patch_gather(v, out.ids_keep, 3, code, backend), (xr,),
            fast_mode=slow)
        torch.autograd.gradcheck(
            lambda k: torch.ops.fastecg.patch_scatter(k, out.ids_keep, 3, code, 2, 12, backend),
            (out.kept.clone().requires_grad_(),), fast_mode=slow)
        for norm_pix in (True, False):
            torch.autograd.gradcheck(
                lambda p, v: masked_reconstruction_loss(p, v, out.mask, 3, norm_pix, mode,
                                                        backend=backend), (pr, xr),
                fast_mode=slow)
        for req in (False, True):
            xq = x.clone().requires_grad_(req)
            torch.library.opcheck(torch.ops.fastecg.patch_gather.default,
                                  (xq, out.ids_keep, 3, code, backend))
            torch.library.opcheck(torch.ops.fastecg.patch_scatter.default,
                                  (out.kept.clone().requires_grad_(req), out.ids_keep, 3, code,
                                   2, 12, backend))
            torch.library.opcheck(torch.ops.fastecg.masked_recon_loss.default,
                                  (pred.clone().requires_grad_(req), xq, out.mask, 3, code,
                                   True, 1e-6, backend))
        for need_dx in (False, True):
            torch.library.opcheck(torch.ops.fastecg.masked_recon_loss_backward.default,
                                  (torch.tensor(1.0, dtype=torch.float64, device=dev), pred, x,
                                   out.mask, 3, code, True, 1e-6, need_dx, backend))


def test_cpu_loss_same_for_every_isa_and_thread_count(cpu_isa):
    # Each patch is reduced by one thread in a fixed lane order and the patches' terms are
    # summed in token order: the thread count cannot change a bit, the ISA only rounding.
    x = _signal((5, 12, 500), torch.float32)
    mask = patch_mask(x, 50, 0.75, backend="torch").mask
    pred = torch.randn(5, 10, 600, generator=torch.Generator().manual_seed(3))
    threads = torch.get_num_threads()
    try:
        runs = []
        for n in (1, 2):
            torch.set_num_threads(n)
            runs.append(_loss_and_grads(pred, x, mask, 50, True, "temporal", "cpu"))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(u, v) for u, v in zip(*runs))
    ref = _loss_and_grads(pred, x, mask, 50, True, "temporal", "torch")
    for u, v in zip(runs[0], ref):
        torch.testing.assert_close(u, v, **LOSS_TOL[torch.float32])


@pytest.mark.skipif(not fastecg.backends()["cpu"].available, reason="no compiled extension")
def test_cpu_kernels_reject_bad_input():
    x = torch.randn(2, 3, 20)
    ids = torch.tensor([[0, 1], [2, 4]])
    with pytest.raises(RuntimeError, match="outside"):
        torch.ops.fastecg._patch_gather_kernel(x, ids, 5, 0)  # 4 time patches: ids 0..3
    with pytest.raises(RuntimeError, match="multiple"):
        torch.ops.fastecg._patch_gather_kernel(x, ids, 6, 0)
    with pytest.raises(RuntimeError, match="one dtype"):
        torch.ops.fastecg._masked_recon_loss_kernel(torch.randn(2, 4, 15, dtype=torch.float64),
                                                    x, torch.ones(2, 4), 5, 0, True, 1e-6)
    with pytest.raises(RuntimeError, match="pred must be"):
        torch.ops.fastecg._masked_recon_loss_kernel(torch.randn(2, 4, 5), x, torch.ones(2, 4),
                                                    5, 0, True, 1e-6)


def test_a_mask_that_requires_grad_is_refused_not_given_no_gradient():
    # The loss's backward returns no gradient for the mask: a soft mask being learnt got
    # None (treated as zero) without a word.
    x = torch.randn(2, 3, 20, dtype=torch.float64)
    pred = torch.randn(patchify(x, 5).shape, dtype=torch.float64, requires_grad=True)
    soft = torch.rand(2, 4, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="mask requires grad"):
        masked_reconstruction_loss(pred, x, soft, 5)
    loss = masked_reconstruction_loss(pred, x, soft.detach(), 5)
    with torch.no_grad():
        torch.testing.assert_close(masked_reconstruction_loss(pred, x, soft, 5), loss)


def test_forward_mode_ad_is_refused_not_dropped():
    import torch.autograd.forward_ad as fwAD

    x = torch.randn(2, 3, 20, dtype=torch.float64)
    v = torch.randn_like(x)
    with pytest.raises(RuntimeError, match="forward-mode AD"):
        torch.func.jvp(lambda t: patch_mask(t, 5, 0.5).kept, (x,), (v,))
    mask = patch_mask(x, 5, 0.5).mask
    pred = torch.randn(patchify(x, 5).shape, dtype=torch.float64)
    with fwAD.dual_level():
        with pytest.raises(RuntimeError, match="forward-mode AD"):
            masked_reconstruction_loss(fwAD.make_dual(pred, torch.ones_like(pred)), x, mask, 5)
        with pytest.raises(RuntimeError, match="forward-mode AD"):
            masked_reconstruction_loss(pred, fwAD.make_dual(x, v), mask, 5)


@pytest.mark.parametrize("norm_pix", [True, False])
def test_functorch_reverse_mode_through_the_loss(norm_pix):
    # The ops were torch.library custom ops: torch.func.grad / vjp / jacrev refused their
    # autograd formula ("must override the setup_context staticmethod"), and the loss's
    # backward op had none for them to run. Reference: the unfused loss in plain torch
    # (its gradient by autograd), and a central difference.
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 40, dtype=torch.float64, generator=gen)
    mask = patch_mask(x, 5, 0.5, generator=gen).mask
    pred = torch.randn(patchify(x, 5).shape, dtype=torch.float64, generator=gen)

    def loss(p, s):
        return masked_reconstruction_loss(p, s, mask, 5, norm_pix)

    pg, xg = pred.clone().requires_grad_(), x.clone().requires_grad_()
    want = torch.autograd.grad(_reference_loss(pg, xg, mask, 5, "temporal", norm_pix), (pg, xg))
    got = torch.func.grad(loss, argnums=(0, 1))(pred, x)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
    vp, vx, eps = torch.randn_like(pred), torch.randn_like(x), 1e-6
    slope = (loss(pred + eps * vp, x + eps * vx) - loss(pred - eps * vp, x - eps * vx)) / (2 * eps)
    torch.testing.assert_close((got[0] * vp).sum() + (got[1] * vx).sum(), slope, rtol=1e-6,
                               atol=1e-8)
    # vjp with respect to x alone (pred a constant), and jacrev over one loss per record
    _, pullback = torch.func.vjp(lambda s: loss(pred, s), x)
    torch.testing.assert_close(pullback(torch.tensor(1.0, dtype=torch.float64))[0], want[1],
                               rtol=1e-10, atol=1e-12)
    jac = torch.func.jacrev(lambda p: torch.stack(
        [masked_reconstruction_loss(p[i:i + 1], x[i:i + 1], mask[i:i + 1], 5, norm_pix)
         for i in range(2)]))(pred)
    for i in range(2):
        (row,) = torch.autograd.grad(
            _reference_loss(pg[i:i + 1], x[i:i + 1], mask[i:i + 1], 5, "temporal", norm_pix), pg)
        torch.testing.assert_close(jac[i], row, rtol=1e-10, atol=1e-12)
    # the gradient is the kernel's own, not differentiable again: said, not a torch error
    with pytest.raises(RuntimeError, match="not differentiable"):
        torch.func.grad(lambda p: torch.func.grad(loss)(p, x).square().sum())(pred)
