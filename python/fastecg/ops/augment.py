"""The fused augmentation pass's kernel: one pass over a batch for a whole list of
augmentation ops (csrc/cpu/augment.cpp). :class:`fastecg.augmenters.AugmenterManager`
compiles its steps into these ops (``fastecg.augmenters.fused``); the torch backend of
the manager, which runs each augmenter's own torch code, is the reference.

Ops and the tensors each takes (in this order, ``N`` the batch, ``L`` the leads and ``T``
the samples the op sees, float tensors in the signal's dtype unless said):

=============== ====================================================================
``LEAD_MIX``    matrix (N, L_out, L) float64: y = M @ y (leads become L_out)
``LEAD_AFFINE`` gain (N, L), shift (N, L): y = y * gain + shift
``SINES``       coef (N, L, J), basis (J, T), noise keys (N, L, 2) int64 and std
                (N, L) or two empty tensors: y = coef @ basis + std * z + y
``NOISE``       keys (N, L, 2) int64, std (N, L): y = y + std * z
``TIME_MASK``   start (N, S), end (N, S) int64 and one float: y = value on [start, end)
``ADD_ROWS``    rows (N, L, T): y = y + rows
``FIR_NOISE``   keys (N, L, 2) int64, std (N, L), taps (K,): y[t] = y[t] + std *
                sum_k taps[k] * z[t + K - 1 - k], z over T + K - 1 samples (a "valid"
                FIR of a longer noise row: band-limited noise, EMG)
``WARP``        offset (N,) int64, limit (N,) int64, ratio (N,) float64 and one int,
                the output length: y(t) = y at (t + offset) * ratio, linear
                interpolation, 0 unless 0 <= t + offset < limit
``PAIR``        partner (N,) int64, lam (N,) float64: y = lerp(y[partner], y, lam)
                (Mixup), y as it is where the partner is the sample itself; ``cpu``
                evaluates the signal so far once for each paired sample, into a buffer
                of their size, before the pass
``RENORM``      mean (N, W), std (N, W), applied (N,) int64 and one int, per lead (1,
                W = L) or per sample (0, W = 1): where applied, y = (y - mu) * std /
                sqrt(max(var, 1e-12)) + mean with mu, var the population mean and
                variance of the whole signal so far (RandomRenormalize). ``cpu`` only:
                the kernel then works a sample at a time, the signal before the op held
                whole in a per-thread buffer; at most one per pass, and no ``PAIR``
                after it
``SINES_PTP``   ``SINES``'s tensors, coef and std relative to each lead's peak-to-peak
                (max - min of x[n, l]): y = ptp * (coef @ basis + std * z) + y. ``cpu``
                only, and only as the pass's first op (the kernel takes the source's
                ptp as it reads the sample: the baseline wander without a read of its own)
=============== ====================================================================

z is :func:`fastecg.augmenters._random.hash_normal` of the row's keys, computed inside
the kernel (never materialised; ``FIR_NOISE``'s K - 1 extra samples are made again by
each block of output that needs them). A ``FIR_NOISE`` row whose std is 0 costs no noise
work (under Triton, a sample whose rows all have std 0).

Backends: ``cpu`` (the C++ kernel), ``cuda`` (csrc/cuda/augment.cu, the same op on CUDA
tensors when the extension is built with CUDA) and ``triton``
(fastecg/triton_kernels/augment.py: CUDA tensors, or CPU tensors under
``TRITON_INTERPRET=1``), picked by :mod:`fastecg.ops._dispatch` for the tensor's device.
"""

from __future__ import annotations

import enum
from typing import Optional, Sequence

import torch
from torch import Tensor

from ._dispatch import backends, compiled_op, kernel_for, register_kernel, resolve_backend

__all__ = ["OpCode", "augment_pass", "fused_backend", "fused_pass_available", "philox_stream",
           "philox_uniform", "beta_from_variates", "lead_stats"]


class OpCode(enum.IntEnum):
    """Codes of the fused pass's ops (mirrored by csrc/cpu/augment.cpp's OpCode)."""

    LEAD_MIX = 0
    LEAD_AFFINE = 1
    SINES = 2
    NOISE = 3
    TIME_MASK = 4
    ADD_ROWS = 5
    WARP = 6
    PAIR = 7
    FIR_NOISE = 8
    RENORM = 9
    SINES_PTP = 10


# The compiled op is one entry point for CPU and CUDA tensors (the dispatcher picks the
# device's implementation); Triton's launchers are imported when first picked.
for _backend in ("cpu", "cuda"):
    register_kernel("augment", _backend, compiled_op("_augment_kernel"))
    register_kernel("augment_lead_stats", _backend, compiled_op("_lead_stats_kernel"))
register_kernel("augment", "triton", "fastecg.triton_kernels.augment:augment_pass")
register_kernel("augment_lead_stats", "triton", "fastecg.triton_kernels.augment:lead_stats")

FUSED_DTYPES = (torch.float32, torch.float64)
FUSED_BACKENDS = ("cpu", "cuda", "triton")


def fused_backend(x: Tensor, backend: str = "auto") -> tuple[Optional[str], Optional[str]]:
    """``(backend, None)``: the backend of the fused pass on `x` (``"auto"``: cpu for CPU
    tensors; cuda, else triton, for CUDA ones), or ``(None, why not)`` in one sentence."""
    if x.dtype not in FUSED_DTYPES:
        return None, f"the fused pass takes float32 or float64 signals, got {x.dtype}"
    if backend != "auto" and backend not in FUSED_BACKENDS:
        return None, (f"the fused pass has no {backend!r} kernel (it has "
                      f"{', '.join(FUSED_BACKENDS)})")
    try:
        return resolve_backend("augment", x, backend), None
    except RuntimeError as err:
        if backend == "auto":
            return None, (f"the fused pass has no kernel available for {x.device.type} "
                          f"tensors here ({'; '.join(_reasons(x.device.type))})")
        return None, str(err)


def _reasons(device: str) -> list[str]:
    names = ("cpu",) if device == "cpu" else ("cuda", "triton")
    return [f"{b}: {backends()[b].reason}" for b in names]


def fused_pass_available(x: Tensor, backend: str = "auto") -> Optional[str]:
    """None when the fused pass can run on `x` (on `backend`: "auto", "cpu", "cuda" or
    "triton"), else why not (one sentence).

    Examples
    --------
    >>> import torch
    >>> fused_pass_available(torch.zeros(2, 3, 4, dtype=torch.int32))
    'the fused pass takes float32 or float64 signals, got torch.int32'
    """
    return fused_backend(x, backend)[1]


def augment_pass(x: Tensor, codes: Sequence[int], ints: Sequence[int], floats: Sequence[float],
                 tensors: Sequence[Tensor], stats: bool = False,
                 out: Optional[Tensor] = None, backend: str = "auto") -> tuple[Tensor, Tensor]:
    """Run the ops `codes` over the batch `x` in one pass.

    Parameters
    ----------
    x : Tensor, shape (n, n_leads, n_samples)
        float32 or float64; the op's tensors on its device.
    codes : sequence of int
        :class:`OpCode` values, in order.
    ints, floats, tensors : sequences
        The ops' arguments, in order (see the module's table).
    stats : bool, optional
        Also return the output's per-lead (min, max, sum, sum of squares).
    out : Tensor, optional
        Contiguous tensor of the output's shape and dtype, not overlapping `x`, to write
        into (then returned as the output).
    backend : {"auto", "cpu", "cuda", "triton"}, optional
        See :func:`fused_backend`.

    Returns
    -------
    out : Tensor, shape (n, n_leads_out, n_samples_out)
        x's dtype.
    stats : Tensor, shape (n, n_leads_out, 4) float64, or empty

    Examples
    --------
    >>> import torch
    >>> x = torch.ones(2, 3, 5)
    >>> gain, shift = torch.full((2, 3), 2.0), torch.zeros(2, 3)
    >>> out, s = augment_pass(x, [OpCode.LEAD_AFFINE], [], [], [gain, shift], stats=True)
    >>> out[0, 0].tolist(), s[0, 0].tolist()
    ([2.0, 2.0, 2.0, 2.0, 2.0], [2.0, 2.0, 10.0, 20.0])
    """
    name, reason = fused_backend(x, backend)
    if reason is not None:
        raise RuntimeError(reason)
    result, st = kernel_for("augment", x, name)(x, [int(c) for c in codes],
                                                [int(i) for i in ints],
                                                [float(f) for f in floats], list(tensors),
                                                bool(stats), out)
    return (result if out is None else out), st


def lead_stats(x: Tensor, backend: str = "auto") -> Tensor:
    """Per-lead (min, max, sum, sum of squares) of `x` (n, n_leads, n_samples), float32 or
    float64, in one read: float64 (n, n_leads, 4). `backend` as :func:`augment_pass`'s.

    Examples
    --------
    >>> import torch
    >>> lead_stats(torch.tensor([[[1.0, -2.0, 3.0]]])).tolist()
    [[[-2.0, 3.0, 2.0, 14.0]]]
    """
    name, reason = fused_backend(x, backend)
    if reason is not None:
        raise RuntimeError(reason)
    return kernel_for("augment_lead_stats", x, name)(x)


def _long(t: Tensor) -> Tensor:
    # A draw makes a few dozen of these calls, whose keys are int64 already: a no-op
    # .long() would still cost a dispatch each.
    return t if t.dtype == torch.int64 else t.long()


def _draw_kernels_run(t: Tensor) -> bool:
    """Whether the C++ kernels of the parameter draws (Philox, uniforms, Beta) run on
    `t`'s device: the CPU, with the extension built."""
    return t.device.type == "cpu" and backends()["cpu"].available


def philox_stream(index: Tensor, view: Tensor, first: int, count: int, blocks: int, k0: int,
                  k1: int) -> Optional[Tensor]:
    """Philox 4x32-10 words of sample i's counters ``(index[i] & 0xFFFFFFFF,
    (index[i] >> 32) & 0xFFFF | view[i] << 16, first + s, b)`` for ``s < count``,
    ``b < blocks``, under key ``(k0, k1)``: ``(n, count, 4 * blocks)`` int64 from the C++
    kernel (the counters of :class:`fastecg.augmenters._random.Keys`), or None where it
    cannot run.

    Examples
    --------
    >>> import torch
    >>> zero = torch.zeros(1, dtype=torch.long)
    >>> [hex(w) for w in philox_stream(zero, zero, 0, 1, 1, 0, 0)[0, 0].tolist()]
    ['0x6627e8d5', '0xe169c58d', '0xbc57ac4c', '0x9b00dbd8']
    """
    if not _draw_kernels_run(index):
        return None
    return torch.ops.fastecg._philox_stream_kernel(_long(index), _long(view), int(first),
                                                   int(count), int(blocks), int(k0), int(k1))


def philox_uniform(index: Tensor, view: Tensor, word: int, n: int, k0: int, k1: int,
                   normal: bool = False) -> Optional[Tensor]:
    """Stream `word` of :func:`philox_stream` (``first=word``, ``count=1``) as ``n``
    uniforms ``(w + 0.5) * 2**-32`` of its first n words, or with `normal` as ``n``
    standard normals ``sqrt(-2 ln u[j]) cos(2 pi u[n + j])`` of its first 2n:
    ``(len(index), n)`` float64 from the C++ kernel in one call (what
    :meth:`fastecg.augmenters._random.Keys.uniform` and ``.normal`` compute in torch), or
    None where it cannot run.

    Examples
    --------
    >>> import torch
    >>> zero = torch.zeros(1, dtype=torch.long)
    >>> u = philox_uniform(zero, zero, 0, 4, 0, 0)
    >>> bool(torch.equal(u, (philox_stream(zero, zero, 0, 1, 1, 0, 0)[0].double() + 0.5) / 2 ** 32))
    True
    """
    if not _draw_kernels_run(index):
        return None
    return torch.ops.fastecg._philox_uniform_kernel(_long(index), _long(view), int(word), int(n),
                                                    int(k0), int(k1), bool(normal))


def draw_kernel(stream: int, index: Tensor, view: Tensor, slot: int, k0: int, k1: int,
                ints: Sequence[int] = (), floats: Sequence[float] = (),
                tensors: Sequence[Tensor] = ()) -> Optional[list[Tensor]]:
    """The whole parameter draw of the classic augmenter with this `stream`, by the C++
    kernel in one call: the values of its ``draw()``'s params dict in their order (the
    same operations on the same Philox words; see csrc/cpu/augment_draw.cpp for each
    step's arguments), or None where it cannot run."""
    if not _draw_kernels_run(index):
        return None
    return torch.ops.fastecg._augment_draw_kernel(int(stream), _long(index), _long(view),
                                                  int(slot), int(k0), int(k1),
                                                  [int(i) for i in ints],
                                                  [float(f) for f in floats], list(tensors))


def fuse_kernel(stream: int, ints: Sequence[int], tensors: Sequence[Tensor]
                ) -> Optional[list[Tensor]]:
    """The fused pass's op tensors that the classic augmenter with this `stream` makes of
    its drawn parameters (its ``fuse()``; baseline wander and stretch/compress), by the C++
    kernel in one call, or None where it cannot run (a tensor off the CPU or needing a
    gradient, or no extension)."""
    if not _draw_kernels_run(tensors[0]) or any(
            t.device.type != "cpu" or t.requires_grad for t in tensors):
        return None
    return torch.ops.fastecg._augment_fuse_kernel(int(stream), [int(i) for i in ints],
                                                  list(tensors))


def beta_from_variates(u: Tensor, z: Tensor, alpha: float, b: float) -> Optional[Tensor]:
    """Beta(alpha, b) per row from uniforms `u` (n, 2 * tries + 2) and standard normals
    `z` (n, 2 * tries), float64, by the C++ kernel in one call:
    :func:`fastecg.augmenters.classic.beta`'s Marsaglia-Tsang draw, the same operations in
    the same order (the C library's log and pow: a few ulp from torch's); None where it
    cannot run.

    Examples
    --------
    >>> import torch
    >>> u, z = torch.full((1, 4), 0.5, dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64)
    >>> beta_from_variates(u, z, 2.0, 2.0).tolist()  # both Gammas accept v = 1: d / 2d
    [0.5]
    """
    if not _draw_kernels_run(u):
        return None
    return torch.ops.fastecg._beta_kernel(u, z, float(alpha), float(b))
