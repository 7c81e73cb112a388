"""Counter-based random numbers in plain torch integer ops, so that a sample's
augmentation is a function of ``(seed, epoch, global sample index)`` only.

Per-sample parameters come from Philox 4x32-10 (Salmon et al. 2011), keyed by
``(seed, epoch)`` with the counter ``(index low 32 bits, index high 16 bits | view << 16,
slot << 16 | stream, j)``: the same words on every backend and batch split.

Dense noise (one value per signal element) does not run Philox per element: ten rounds
of 32-bit multiplies emulated in int64 would cost ~50 full-size passes in the torch
backend. Each ``(sample, lead)`` row instead gets two 32-bit words from Philox, and
elements ``2m`` and ``2m + 1`` of the row come from ``lowbias32(m * (k1 | 1) + k2)``
(C. Wellons' integer hash, a bijection with full avalanche): ~8 int32 passes for two
values. Rows with different odd multipliers never run along the same sequence, so no two
rows of a batch are shifted copies of each other. Box-Muller on the hash's two 16-bit
halves gives both values (the radius times the cosine and times the sine of one angle:
independent standard normals), whose tails stop at sqrt(-2 ln(2**-17)) = 4.85 sigma:
ample for augmentation noise.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from ..ops.augment import draw_kernel, philox_stream, philox_uniform

__all__ = ["philox4x32", "Keys", "hash_normal", "add_hash_noise", "MASK32"]

MASK32 = 0xFFFFFFFF
_M0, _M1 = 0xD2511F53, 0xCD9E8D57
_W0, _W1 = 0x9E3779B9, 0xBB67AE85


def _mulhilo(a: Tensor, m: int) -> tuple[Tensor, Tensor]:
    # a < 2**32 in int64: a * m would overflow int64, so multiply by m's 16-bit halves.
    p_hi = a * (m >> 16)
    p_lo = a * (m & 0xFFFF)
    hi = (p_hi + (p_lo >> 16)) >> 16
    lo = (((p_hi & 0xFFFF) << 16) + p_lo) & MASK32
    return hi, lo


def philox4x32(c0: Tensor, c1: Tensor, c2: Tensor, c3: Tensor, k0: int, k1: int,
               rounds: int = 10) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Philox 4x32 on int64 tensors holding uint32 values (broadcast together); returns
    four int64 tensors of uint32 values. Matches Random123's known-answer vectors."""
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + _W0) & MASK32, (k1 + _W1) & MASK32
        hi0, lo0 = _mulhilo(c0, _M0)
        hi1, lo1 = _mulhilo(c2, _M1)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


class Keys:
    """The random source of one call: ``seed`` and ``epoch`` (the Philox key), each
    sample's global ``index`` and ``view`` (int64, shape (n,)), and the ``slot`` of the
    step in its pipeline (steps draw from disjoint streams)."""

    def __init__(self, seed: int, epoch: int, index: Tensor, view: Optional[Tensor] = None,
                 slot: int = 0):
        self.seed, self.epoch, self.slot = seed, epoch, slot
        self.index = index
        self.view = torch.zeros_like(index) if view is None else view

    def for_slot(self, slot: int) -> "Keys":
        return Keys(self.seed, self.epoch, self.index, self.view, slot)

    def select(self, rows: Tensor) -> "Keys":
        return Keys(self.seed, self.epoch, self.index[rows], self.view[rows], self.slot)

    # Without the C++ kernel an augmenter's first draw computes the words of its first
    # _CACHED_SUBS streams at once (one Philox call of ~240 small ops instead of one per
    # draw): per-call overhead, not arithmetic, is what the torch form costs. The kernel
    # costs little per call but its time grows with the blocks, so it makes only the words
    # asked for (most draws need a few blocks of the cache's 8 streams x 32 a sample).
    _CACHED_SUBS, _CACHED_WORDS = 8, 128

    def _key(self) -> tuple[int, int]:
        return self.seed & MASK32, self.epoch & MASK32

    def _word(self, sub: int) -> int:
        """The third counter word of stream `sub` of this step."""
        return ((self.slot & 0xFFFF) << 16) | (sub & 0xFFFF)

    def _philox(self, first: int, count: int, blocks: int) -> Tensor:
        """Words for counters (index, view, first + s, b), s < count, b < blocks:
        (n, count, 4 * blocks), in torch (the C++ kernel's form is philox_stream)."""
        key = self._key()
        device = self.index.device
        c0 = (self.index & MASK32).view(-1, 1, 1)
        c1 = (((self.index >> 32) & 0xFFFF) | (self.view << 16)).view(-1, 1, 1)
        c2 = (first + torch.arange(count, device=device)).view(1, -1, 1)
        c3 = torch.arange(blocks, device=device)
        out = torch.stack(torch.broadcast_tensors(*philox4x32(c0, c1, c2, c3, *key)), -1)
        return out.reshape(*out.shape[:-2], 4 * blocks)

    def bits(self, sub: int, n: int) -> Tensor:
        """(n_samples, n) int64 uint32 words of stream `sub` of this step."""
        word, k = self._word(sub), sub & 63
        out = philox_stream(self.index, self.view, word, 1, -(-n // 4), *self._key())
        if out is not None:
            return out[:, 0, :n]
        if k < self._CACHED_SUBS and n <= self._CACHED_WORDS:
            cache = self.__dict__.setdefault("_cache", {})
            base = word - k
            if base not in cache:
                cache[base] = self._philox(base, self._CACHED_SUBS, self._CACHED_WORDS // 4)
            return cache[base][:, k, :n]
        return self._philox(word, 1, -(-n // 4))[:, 0, :n]

    def native_draw(self, stream: int, ints=(), floats=(), tensors=()) -> Optional[list]:
        """A classic augmenter's whole draw (its `stream`) by the C++ kernel
        (:func:`fastecg.ops.augment.draw_kernel`), or None where it cannot run."""
        return draw_kernel(stream, self.index, self.view, self.slot, *self._key(), ints, floats,
                           tensors)

    def uniform(self, sub: int, n: int = 1) -> Tensor:
        """(n_samples, n) float64 uniforms in (0, 1)."""
        # The C++ kernel's form where it runs: one call instead of 3-6 small ops, whose
        # float64 log and cos wake a thread pool.
        out = philox_uniform(self.index, self.view, self._word(sub), n, *self._key(), False)
        return out if out is not None else (self.bits(sub, n).double() + 0.5) * 2.0 ** -32

    def normal(self, sub: int, n: int = 1) -> Tensor:
        """(n_samples, n) float64 standard normals (Box-Muller on two uniforms)."""
        out = philox_uniform(self.index, self.view, self._word(sub), n, *self._key(), True)
        if out is not None:
            return out
        u = (self.bits(sub, 2 * n).double() + 0.5) * 2.0 ** -32
        return torch.sqrt(-2 * torch.log(u[:, :n])) * torch.cos(2 * math.pi * u[:, n:])


def _as_int32(words: Tensor) -> Tensor:
    # uint32 values held in int64 -> the same bits as int32 (two's complement).
    return (words - ((words >> 31) << 32)).to(torch.int32)


def hash_normal(row_keys: Tensor, n_samples: int, dtype: torch.dtype) -> Tensor:
    """Standard normal noise of shape ``row_keys.shape[:-1] + (n_samples,)``: row r,
    elements 2m and 2m + 1 from h = ``lowbias32(m * (k1 | 1) + k2)`` with ``(k1, k2) =
    row_keys[r]`` (int64 uint32 words): ``r cos(a)`` and ``r sin(a)`` with ``r =
    sqrt(-2 ln(((h >> 16) + 0.5) / 65536))`` and ``a = (h & 0xFFFF) 2 pi / 65536``. int32
    arithmetic wraps, which is the mod-2**32 the hash wants; logical shifts are arithmetic
    shifts masked."""
    k1 = _as_int32(row_keys[..., 0:1] | 1)
    k2 = _as_int32(row_keys[..., 1:2])
    m = torch.arange((n_samples + 1) // 2, dtype=torch.int32, device=row_keys.device)
    # In place with one scratch buffer: each pass is a full-size read and write.
    x = m * k1
    x += k2
    t = torch.empty_like(x)
    for shift, keep, mul in ((16, 0xFFFF, 0x7FEB352D), (15, 0x1FFFF, 0x846CA68B - (1 << 32)),
                             (16, 0xFFFF, None)):
        torch.bitwise_right_shift(x, shift, out=t)
        t &= keep
        x ^= t
        if mul is not None:
            x *= mul
    work = torch.float64 if dtype == torch.float64 else torch.float32
    torch.bitwise_right_shift(x, 16, out=t)
    t &= 0xFFFF
    radius = t.to(work).add_(0.5).mul_(1.0 / 65536).log_().mul_(-2).sqrt_()
    x &= 0xFFFF
    angle = x.to(work).mul_(2 * math.pi / 65536)
    pairs = torch.stack([radius * angle.cos(), radius.mul_(angle.sin_())], -1)
    return pairs.flatten(-2)[..., :n_samples].to(dtype)


def add_hash_noise(out: Tensor, row_keys: Tensor, std: Tensor,
                   taps: Optional[Tensor] = None) -> Tensor:
    """``out += std[..., None] * noise`` in place, for out (..., n_samples), std (...) and
    row_keys (..., 2): the noise is :func:`hash_normal` of the row's keys, or with `taps`
    (K,) a "valid" FIR of a K - 1 longer hash-noise row z, ``sum_k taps[k] * z[t + K - 1 -
    k]`` (band-limited noise, by ``torch.nn.functional.conv1d``). On the CPU only the rows
    with a non-zero std are generated (a step applied with probability p makes a fraction
    p of the noise); a row's noise depends on its keys only, so the result is the same
    either way. On a GPU all rows are, to keep the call free of host syncs."""
    n_samples = out.shape[-1]
    # A caller's non-contiguous signal (a clone keeps its strides) is filled through a
    # contiguous copy.
    work = out if out.is_contiguous() else out.contiguous()
    flat = work.view(-1, n_samples)
    std = std.to(out.dtype).reshape(-1)
    keys = row_keys.reshape(-1, 2)
    rows = std.nonzero().squeeze(1) if out.device.type == "cpu" else None
    if rows is not None:
        keys, std = keys[rows], std[rows]
    if taps is None:
        noise = hash_normal(keys, n_samples, out.dtype)
    else:
        z = hash_normal(keys, n_samples + taps.shape[0] - 1, out.dtype)
        # conv1d correlates: weights reversed make it the convolution above.
        noise = torch.nn.functional.conv1d(z[:, None], taps.to(out.dtype).flip(0)[None, None])[:, 0]
    if rows is None:
        flat.addcmul_(noise, std[:, None])
    else:
        flat.index_add_(0, rows, noise.mul_(std[:, None]))
    if work is not out:
        out.copy_(work)
    return out
