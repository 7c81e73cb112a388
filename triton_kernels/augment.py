"""Triton kernels of fastecg's fused augmentation pass (python/fastecg/ops/augment.py: the
op table; csrc/cpu/augment.cpp: the C++ kernel they mirror).

Passes: one kernel launch per *stage*. The ops between two ``WARP`` / ``PAIR`` ops (lead
mixes, affine maps, sinusoids, noises, band-limited noises, time masks, added rows) run point-wise in one
kernel on a register tile of all the leads of ``BLOCK`` samples; a ``WARP`` or ``PAIR``
starts a new stage, whose kernel reads the previous stage's materialised output (a warp
gathers from anywhere in it, a pairing reads another sample's). A plan of ``k`` stages is
therefore ``k`` passes over the batch with ``k - 1`` intermediates, held in at most two
batch-sized buffers used in turn; a plan with no warp or pairing is one pass. The
optional per-lead statistics (min, max, sum, sum of squares in float64) come from the
last stage's kernel, one partial per tile, reduced over the tiles by torch.

Each stage's op list is compiled into its kernel (constexpr codes, lead counts, sine and
mask counts): a new pipeline costs one compilation per stage, then runs from the cache.

Noise is :func:`fastecg.augmenters._random.hash_normal` computed in the kernel: for
elements 2m and 2m + 1 the lowbias32 hash of ``m * (k1 | 1) + k2`` in uint32 arithmetic,
Box-Muller on its 16-bit halves (radius times cosine, radius times sine) through
65536-entry tables computed once per (dtype, device) with torch's CPU arithmetic (the
rounding the torch backend and the C++ kernel use) and copied to the device once.
"""

import functools

import torch
import triton
import triton.language as tl

from ._common import float64_on_device

# Mirrors fastecg.ops.augment.OpCode (plain ints: a jit function reads globals only as
# constexpr).
LEAD_MIX = tl.constexpr(0)
LEAD_AFFINE = tl.constexpr(1)
SINES = tl.constexpr(2)
NOISE = tl.constexpr(3)
TIME_MASK = tl.constexpr(4)
ADD_ROWS = tl.constexpr(5)
WARP = tl.constexpr(6)
PAIR = tl.constexpr(7)
FIR_NOISE = tl.constexpr(8)

# An op's constexpr description: (code, leads in, leads out, count, first tensor, flag);
# count: sines per row, masks per sample or FIR taps; first: the index in the kernel's tuple of
# tensors of the op's first one; flag: the sines' noise is present / the mask value's
# index in the floats.


@functools.lru_cache(maxsize=16)
def noise_tables(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Box-Muller's radius ``sqrt(-2 ln((k + 0.5) / 65536))`` (65536,) and its cosines
    then sines ``cos(k * 2 pi / 65536)``, ``sin(...)`` (131072,) for k < 65536, in `dtype`
    on `device`: computed by torch on the CPU as hash_normal computes them, copied to the
    device once."""
    k = torch.arange(65536, dtype=dtype)
    radius = (k + 0.5).mul_(1.0 / 65536).log_().mul_(-2).sqrt_()
    angle = k * (2 * torch.pi / 65536)
    return radius.to(device), torch.cat([angle.cos(), angle.sin()]).to(device)


@triton.jit
def _lerp(a, b, w):
    # torch.lerp's formula: the branch keeps lerp(a, b, 1) == b exactly.
    return tl.where(tl.abs(w) < 0.5, a + w * (b - a), b - (b - a) * (1.0 - w))


@triton.jit
def _hash_normal(keys_ptr, row, row_ok, t, radius_ptr, cosine_ptr):
    """z of rows `row` (n * L + l, [LP], those with `row_ok`) at times `t` ([BLOCK]):
    [LP, BLOCK]."""
    k1 = tl.load(keys_ptr + 2 * row, mask=row_ok, other=0).to(tl.uint32) | 1
    k2 = tl.load(keys_ptr + 2 * row + 1, mask=row_ok, other=0).to(tl.uint32)
    # Elements 2m and 2m + 1: the cosine and the sine of one hash's Box-Muller pair.
    h = (t >> 1).to(tl.uint32)[None, :] * k1[:, None] + k2[:, None]
    h ^= h >> 16
    h = h * 0x7FEB352D
    h ^= h >> 15
    h = h * 0x846CA68B
    h ^= h >> 16
    r = tl.load(radius_ptr + (h >> 16).to(tl.int32))
    c = tl.load(cosine_ptr + (h & 0xFFFF).to(tl.int32) + ((t & 1) * 65536).to(tl.int32)[None, :])
    return r * c


@triton.jit
def _apply_op(y, P, floats_ptr, radius_ptr, cosine_ptr, n, t, leads, in_time, t_len,
              CODE: tl.constexpr, LIN: tl.constexpr, LOUT: tl.constexpr, COUNT: tl.constexpr,
              FIRST: tl.constexpr, FLAG: tl.constexpr, LP: tl.constexpr, BLOCK: tl.constexpr):
    """One point-wise op (its constexpr description, see above) on the tile y [LP, BLOCK]
    of sample n at times t."""
    dtype = y.dtype
    lead_ok = leads < LIN
    if CODE == LEAD_MIX:
        # y = M @ y, one input lead at a time (the C++ kernel's order of sums); a weight
        # of 0 does not read its lead (a NaN there stays out, as in the other kernels).
        mat = P[FIRST] + n * LOUT * LIN
        mixed = tl.zeros([LP, BLOCK], dtype)
        for i in tl.static_range(LIN):
            yi = tl.sum(tl.where(leads[:, None] == i, y, 0.0), axis=0)
            w = tl.load(mat + leads * LIN + i, mask=leads < LOUT, other=0.0).to(dtype)
            mixed += tl.where(w[:, None] != 0, w[:, None] * yi[None, :], 0.0)
        y = mixed
    elif CODE == LEAD_AFFINE:
        gain = tl.load(P[FIRST] + n * LIN + leads, mask=lead_ok, other=1.0)
        shift = tl.load(P[FIRST + 1] + n * LIN + leads, mask=lead_ok, other=0.0)
        y = y * gain[:, None] + shift[:, None]
    elif CODE == SINES:
        coef = P[FIRST] + (n * LIN + leads) * COUNT
        acc = tl.zeros([LP, BLOCK], dtype)
        for j in tl.static_range(COUNT):
            c = tl.load(coef + j, mask=lead_ok, other=0.0)
            basis = tl.load(P[FIRST + 1] + j * t_len + t, mask=in_time, other=0.0)
            acc += c[:, None] * basis[None, :]
        if FLAG:
            sd = tl.load(P[FIRST + 3] + n * LIN + leads, mask=lead_ok, other=0.0)
            z = _hash_normal(P[FIRST + 2], n * LIN + leads, lead_ok, t, radius_ptr, cosine_ptr)
            acc += z * sd[:, None]
        y = acc + y
    elif CODE == NOISE:
        sd = tl.load(P[FIRST + 1] + n * LIN + leads, mask=lead_ok, other=0.0)
        z = _hash_normal(P[FIRST], n * LIN + leads, lead_ok, t, radius_ptr, cosine_ptr)
        y = y + z * sd[:, None]
    elif CODE == TIME_MASK:
        value = tl.load(floats_ptr + FLAG).to(dtype)
        for i in tl.static_range(COUNT):
            start = tl.load(P[FIRST] + n * COUNT + i)
            end = tl.load(P[FIRST + 1] + n * COUNT + i)
            inside = (t >= start) & (t < end)
            y = tl.where(inside[None, :], value, y)
    elif CODE == ADD_ROWS:
        rows = P[FIRST] + (n * LIN + leads)[:, None] * t_len + t[None, :]
        y = y + tl.load(rows, mask=lead_ok[:, None] & in_time[None, :], other=0.0)
    elif CODE == FIR_NOISE:
        # y[t] += std * sum_k h[k] z[t + K - 1 - k]: the noise of each tap's shift hashed
        # again (a register tile cannot be shifted), skipped for a sample whose leads all
        # have std 0 (a step that leaves it alone).
        sd = tl.load(P[FIRST + 1] + n * LIN + leads, mask=lead_ok, other=0.0)
        if tl.max(tl.abs(sd), axis=0) != 0:
            acc = tl.zeros([LP, BLOCK], dtype)
            for k in range(COUNT):
                hk = tl.load(P[FIRST + 2] + k)
                z = _hash_normal(P[FIRST], n * LIN + leads, lead_ok, t + (COUNT - 1 - k),
                                 radius_ptr, cosine_ptr)
                acc += hk * z
            y = y + acc * sd[:, None]
    return y


# Lengths stay runtime values: a length of 1 would otherwise become a constexpr (and
# every new length a compilation).
@triton.jit(do_not_specialize=["t_len", "t_in", "tiles"])
def _stage_kernel(x_ptr, out_ptr, partial_ptr, P, floats_ptr, radius_ptr, cosine_ptr,
                  t_len, t_in, tiles, L0: tl.constexpr, LP: tl.constexpr,
                  HEAD: tl.constexpr, OPS: tl.constexpr, LOUT: tl.constexpr,
                  WRITE: tl.constexpr, STATS: tl.constexpr, BLOCK: tl.constexpr):
    """One tile (sample n, samples t) of a stage: read its head (the source, a warp or a
    pairing of x), apply OPS, store the LOUT leads and/or the tile's statistics."""
    pid = tl.program_id(0).to(tl.int64)
    n = pid // tiles
    tile = pid % tiles
    t = tile * BLOCK + tl.arange(0, BLOCK)
    leads = tl.arange(0, LP)
    in_time = t < t_len
    dtype = out_ptr.dtype.element_ty
    if HEAD[0] == WARP:
        # y(t) = x at (t + offset) * ratio, linear interpolation, 0 unless 0 <= m < limit.
        offset = tl.load(P[HEAD[1]] + n)
        limit = tl.load(P[HEAD[1] + 1] + n)
        ratio = tl.load(P[HEAD[1] + 2] + n)
        m = t + offset
        valid = in_time & (m >= 0) & (m < limit)
        src = m.to(tl.float64) * ratio
        f = tl.minimum(tl.maximum(tl.floor(src), 0.0), (t_in - 1).to(tl.float64))
        i0 = f.to(tl.int64)
        frac = (src - f).to(dtype)
        i1 = tl.minimum(i0 + 1, t_in - 1)
        ok = (leads[:, None] < L0) & valid[None, :]
        row = x_ptr + (n * L0 + leads)[:, None] * t_in
        a = tl.load(row + i0[None, :], mask=ok, other=0.0)
        b = tl.load(row + i1[None, :], mask=ok, other=0.0)
        y = tl.where(ok, _lerp(a, b, frac[None, :]), 0.0)
    elif HEAD[0] == PAIR:
        # lerp(x[partner], x[n], lam): the partner's signal so far, materialised; a sample
        # paired with itself is left as it is (lerp(a, a, 1) would make an Inf NaN).
        partner = tl.load(P[HEAD[1]] + n)
        lam = tl.load(P[HEAD[1] + 1] + n).to(dtype)
        ok = (leads[:, None] < L0) & in_time[None, :]
        mine = tl.load(x_ptr + (n * L0 + leads)[:, None] * t_len + t[None, :], mask=ok,
                       other=0.0)
        theirs = tl.load(x_ptr + (partner * L0 + leads)[:, None] * t_len + t[None, :],
                         mask=ok, other=0.0)
        y = tl.where(partner == n, mine, _lerp(theirs, mine, lam))
    else:
        ok = (leads[:, None] < L0) & in_time[None, :]
        y = tl.load(x_ptr + (n * L0 + leads)[:, None] * t_len + t[None, :], mask=ok,
                    other=0.0)
    for k in tl.static_range(len(OPS)):
        y = _apply_op(y, P, floats_ptr, radius_ptr, cosine_ptr, n, t, leads, in_time, t_len,
                      OPS[k][0], OPS[k][1], OPS[k][2], OPS[k][3], OPS[k][4], OPS[k][5], LP,
                      BLOCK)
    keep = (leads[:, None] < LOUT) & in_time[None, :]
    if WRITE:
        tl.store(out_ptr + (n * LOUT + leads)[:, None] * t_len + t[None, :], y, mask=keep)
    if STATS:
        # Partial (min, max, sum, sum of squares) of this tile, per lead, in float64.
        v = y.to(tl.float64)
        part = partial_ptr + ((n * tiles + tile) * LOUT + leads) * 4
        lead_out = leads < LOUT
        tl.store(part, tl.min(tl.where(keep, v, float("inf")), axis=1), mask=lead_out)
        tl.store(part + 1, tl.max(tl.where(keep, v, float("-inf")), axis=1), mask=lead_out)
        v = tl.where(keep, v, 0.0)
        tl.store(part + 2, tl.sum(v, axis=1), mask=lead_out)
        tl.store(part + 3, tl.sum(v * v, axis=1), mask=lead_out)


def _block(t_len: int, device: torch.device) -> int:
    # On a GPU, a register tile of up to 16 leads x 256 samples per program; under the
    # interpreter each program costs Python time, so fewer, wider tiles.
    cap = 256 if device.type == "cuda" else 4096
    return max(16, min(cap, triton.next_power_of_2(max(t_len, 1))))


class _Stage:
    """A stage of the op list: its head (("source",) / (WARP, first tensor) / (PAIR,
    first tensor)), its point-wise ops' descriptions, leads in and out, time length."""

    def __init__(self, head, lin, t_len, t_in):
        self.head, self.ops = head, []
        self.lin = self.lout = self.lmax = lin
        self.t_len, self.t_in = t_len, t_in


def _check(t: torch.Tensor, dtype: torch.dtype, shape: tuple, what: str, device) -> torch.Tensor:
    if t.dtype != dtype or t.device != device:
        raise RuntimeError(f"_augment_kernel: {what} must be a {dtype} tensor on {device}, got "
                           f"{t.dtype} on {t.device}")
    if tuple(t.shape) != tuple(shape):
        raise RuntimeError(f"_augment_kernel: {what} must have shape {list(shape)}, got "
                           f"{list(t.shape)}")
    return t.contiguous()


def _parse(x, codes, ints, floats, tensors):
    """Stages of the op list and the checked, contiguous tensors (the C++ kernel's checks)."""
    n, n_leads, n_samples = x.shape
    dt, dev = x.dtype, x.device
    stages = [_Stage((-1, 0), n_leads, n_samples, n_samples)]
    params: list[torch.Tensor] = []
    it, ii, fi = iter(tensors), 0, 0

    def take(dtype, shape, what):
        try:
            t = next(it)
        except StopIteration:
            raise RuntimeError("_augment_kernel: too few tensors for the ops") from None
        params.append(_check(t, dtype, shape, what, dev))
        return len(params) - 1

    for code in codes:
        st = stages[-1]
        lead, length = st.lout, st.t_len
        lout, count, flag = lead, 0, 0
        if code == 0:
            try:
                m = next(it)
            except StopIteration:
                raise RuntimeError("_augment_kernel: too few tensors for the ops") from None
            if m.dim() != 3:
                raise RuntimeError("_augment_kernel: lead matrix must be (N, L_out, L_in)")
            lout = m.shape[1]
            params.append(_check(m, torch.float64, (n, lout, lead), "lead matrix", dev))
            first = len(params) - 1
        elif code == 1:
            first = take(dt, (n, lead), "gain")
            take(dt, (n, lead), "shift")
        elif code == 2:
            try:
                coef = next(it)
            except StopIteration:
                raise RuntimeError("_augment_kernel: too few tensors for the ops") from None
            if coef.dim() != 3:
                raise RuntimeError("_augment_kernel: sine coefficients must be (N, L, J)")
            count = coef.shape[2]
            params.append(_check(coef, dt, (n, lead, count), "sine coefficients", dev))
            first = len(params) - 1
            take(dt, (count, length), "sine basis")
            keys, std = next(it, None), next(it, None)
            if keys is None or std is None:
                raise RuntimeError("_augment_kernel: too few tensors for the ops")
            if keys.numel() > 0:
                params.append(_check(keys, torch.long, (n, lead, 2), "noise keys", dev))
                params.append(_check(std, dt, (n, lead), "noise std", dev))
                flag = 1
            else:  # placeholders: the kernel's tensor indices stay the same
                params.extend([params[first], params[first]])
        elif code == 3:
            first = take(torch.long, (n, lead, 2), "noise keys")
            take(dt, (n, lead), "noise std")
        elif code == 4:
            start = next(it, None)
            if start is None:
                raise RuntimeError("_augment_kernel: too few tensors for the ops")
            if start.dim() != 2:
                raise RuntimeError("_augment_kernel: mask starts must be (N, S)")
            count = start.shape[1]
            params.append(_check(start, torch.long, (n, count), "mask starts", dev))
            first = len(params) - 1
            take(torch.long, (n, count), "mask ends")
            if fi >= len(floats):
                raise RuntimeError("_augment_kernel: too few floats for the ops")
            flag, fi = fi, fi + 1
        elif code == 5:
            first = take(dt, (n, lead, length), "added rows")
        elif code == 8:
            first = take(torch.long, (n, lead, 2), "noise keys")
            take(dt, (n, lead), "noise std")
            taps = next(it, None)
            if taps is None:
                raise RuntimeError("_augment_kernel: too few tensors for the ops")
            if taps.dim() != 1 or taps.shape[0] < 1:
                raise RuntimeError("_augment_kernel: FIR taps must be (K,), K >= 1")
            count = taps.shape[0]
            params.append(_check(taps, dt, (count,), "FIR taps", dev))
        elif code == 6:
            first = take(torch.long, (n,), "warp offsets")
            take(torch.long, (n,), "warp limits")
            take(torch.float64, (n,), "warp ratios")
            if ii >= len(ints) or int(ints[ii]) < 1:
                raise RuntimeError("_augment_kernel: warp needs its length")
            stages.append(_Stage((6, first), lead, int(ints[ii]), length))
            ii += 1
            continue
        elif code == 7:
            first = take(torch.long, (n,), "partners")
            take(torch.float64, (n,), "mixing weights")
            partner = params[first]
            # Checked on the device without a host sync (raises at once on the CPU).
            torch._assert_async(((partner >= 0) & (partner < n)).all(),
                                "_augment_kernel: partner out of range")
            stages.append(_Stage((7, first), lead, length, length))
            continue
        else:
            raise RuntimeError(f"_augment_kernel: unknown op code {code}")
        st.ops.append((int(code), int(lead), int(lout), int(count), int(first), int(flag)))
        st.lout = lout
        st.lmax = max(st.lmax, lead, lout)
    if next(it, None) is not None or ii != len(ints) or fi != len(floats):
        raise RuntimeError("_augment_kernel: more tensors, ints or floats than the ops use")
    return stages, params


def _run_stage(st, src, out, params, floats, tables, n, write, stats):
    """Launch stage `st` reading `src`, writing `out`; its statistics (n, lout, 4) or None."""
    block = _block(st.t_len, src.device)
    tiles = triton.cdiv(st.t_len, block)
    partial = torch.empty(n * tiles * st.lout * 4 if stats else 1, dtype=torch.float64,
                          device=src.device)
    _stage_kernel[(n * tiles,)](
        src, out, partial, tuple(params) if params else (src,), floats, tables[0], tables[1],
        st.t_len, st.t_in, tiles, L0=st.lin, LP=max(2, triton.next_power_of_2(st.lmax)),
        HEAD=st.head, OPS=tuple(st.ops), LOUT=st.lout, WRITE=write, STATS=stats, BLOCK=block)
    return _reduce(partial, n, tiles, st.lout) if stats else None


def _reduce(partial: torch.Tensor, n: int, tiles: int, leads: int) -> torch.Tensor:
    p = partial.view(n, tiles, leads, 4)
    return torch.stack([p[..., 0].amin(1), p[..., 1].amax(1), p[..., 2].sum(1),
                        p[..., 3].sum(1)], -1)


def augment_pass(x: torch.Tensor, codes, ints, floats, tensors, stats: bool = False,
                 out=None):
    """The fused pass on `x` (n, n_leads, n_samples): (output, stats), as
    ``torch.ops.fastecg._augment_kernel`` (the output is empty when written into `out`)."""
    if x.dim() != 3:
        raise RuntimeError(f"_augment_kernel: expected (n, n_leads, n_samples), got "
                           f"{list(x.shape)}")
    if x.dtype not in (torch.float32, torch.float64):
        raise RuntimeError(f"_augment_kernel: expected float32 or float64, got {x.dtype}")
    x = x.contiguous()
    n = x.shape[0]
    stages, params = _parse(x, [int(c) for c in codes], list(ints), list(floats), tensors)
    last = stages[-1]
    shape = (n, last.lout, last.t_len)
    if out is not None:
        if out.dtype != x.dtype or out.device != x.device or not out.is_contiguous() \
                or tuple(out.shape) != shape:
            raise RuntimeError(f"_augment_kernel: out must be a contiguous {x.dtype} tensor of "
                               f"shape {list(shape)}, got {out.dtype} {list(out.shape)}")
        lo, hi = out.data_ptr(), out.data_ptr() + out.nbytes
        if not (hi <= x.data_ptr() or x.data_ptr() + x.nbytes <= lo):
            raise RuntimeError("_augment_kernel: out must not overlap x")
        result = out
    else:
        result = torch.empty(shape, dtype=x.dtype, device=x.device)
    stats_out = torch.empty(0, dtype=torch.float64, device=x.device)
    if n == 0 or last.lout == 0 or last.t_len == 0:
        if stats:
            stats_out = torch.empty(n, last.lout, 4, dtype=torch.float64, device=x.device)
        return (x.new_empty(0) if out is not None else result), stats_out
    tables = noise_tables(x.dtype, x.device)
    fl = float64_on_device(tuple(float(f) for f in floats) or (0.0,), x.device)
    # Intermediates: two buffers in turn (stage s writes buffers[s % 2], which stage s + 1
    # reads while it writes the other).
    buffers: list[torch.Tensor] = [x.new_empty(0), x.new_empty(0)]
    src = x
    for s, st in enumerate(stages):
        final = s == len(stages) - 1
        if final:
            dest = result
        else:
            need = n * st.lout * st.t_len
            if buffers[s % 2].numel() < need:
                buffers[s % 2] = x.new_empty(need)
            dest = buffers[s % 2][:need].view(n, st.lout, st.t_len)
        st_stats = _run_stage(st, src, dest, params, fl, tables, n, True, stats and final)
        if st_stats is not None:
            stats_out = st_stats
        src = dest
    return (x.new_empty(0) if out is not None else result), stats_out


def lead_stats(x: torch.Tensor) -> torch.Tensor:
    """Per-lead (min, max, sum, sum of squares) of `x` (n, n_leads, n_samples), float32 or
    float64, in one read: float64 (n, n_leads, 4)."""
    if x.dim() != 3 or x.dtype not in (torch.float32, torch.float64):
        raise RuntimeError(f"_lead_stats_kernel: expected a float32 or float64 (n, n_leads, "
                           f"n_samples) tensor, got {x.dtype} {list(x.shape)}")
    x = x.contiguous()
    n, leads, t_len = x.shape
    if n == 0 or leads == 0 or t_len == 0:
        out = torch.empty(n, leads, 4, dtype=torch.float64, device=x.device)
        out[..., 0], out[..., 1], out[..., 2:] = float("inf"), float("-inf"), 0.0
        return out
    st = _Stage((-1, 0), leads, t_len, t_len)
    tables = noise_tables(x.dtype, x.device)
    return _run_stage(st, x, x, [], float64_on_device((0.0,), x.device), tables, n, False, True)
