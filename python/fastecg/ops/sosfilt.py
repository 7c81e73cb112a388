"""IIR filtering with second-order sections: ``sosfilt`` and zero-phase ``sosfiltfilt``.

Drop-in for ``scipy.signal.sosfilt`` / ``sosfiltfilt`` along the last axis of a
tensor, for any SOS filter designed with SciPy (Butterworth, Chebyshev, elliptic,
notch, ...): same validation, padding and initial conditions, state in float64, and
exact adjoints so gradients flow through the filter.
"""


from __future__ import annotations




from typing import Optional, Union


import numpy as np


import torch


from torch import Tensor


from .._rows import PADTYPES, extend_rows
from ._design import (_as_sos, _check_real, _sos_key, _sos_on_device, _sosfilt_zi, _tuple_padlen,
                      _zi_for, _zi_on_device, check_longer_than_padding, default_padlen,
                      extension_length)
from ._dispatch import (compiled_op, custom_op, has_kernel, kernel_for, register_kernel,
                        resolve_backend)


from ._validate import check_signal, kernel_dtype


__all__ = ["sosfilt", "sosfiltfilt", "default_padlen", "PADTYPES"]


# ---- kernels (rows (n_rows, n), sos (n_sections, 6) float64) ----------------------------

@register_kernel("sosfilt", "torch")
def sosfilt_reference(rows: Tensor, sos: Tensor, zi: Tensor) -> tuple[Tensor, Tensor]:
    """Pure-PyTorch sosfilt: SciPy's transposed direct form II, vectorised over rows and
    sequential in time (slow; the reference and the fallback on any device)."""
    x = rows.to(torch.float64)
    z = zi.clone()
    out = torch.empty_like(x)
    for t in range(x.shape[-1]):
        v = x[:, t]
        for s in range(sos.shape[0]):
            b0, b1, b2, _, a1, a2 = sos[s]
            y = b0 * v + z[:, s, 0]
            z[:, s, 0] = b1 * v - a1 * y + z[:, s, 1]
            z[:, s, 1] = b2 * v - a2 * y
            v = y
        out[:, t] = v
    return out.to(rows.dtype), z


@register_kernel("sosfiltfilt", "torch")
def sosfiltfilt_reference(rows: Tensor, sos: Tensor, zi: Tensor, padlen: int,
                          padtype: int) -> Tensor:
    """Pure-PyTorch sosfiltfilt composed from :func:`sosfilt_reference`."""
    ext = extend_rows(rows, padlen, padtype)  # in the input dtype, as SciPy builds it
    y, _ = sosfilt_reference(ext.double(), sos, zi[None] * ext[:, :1, None].double())
    y = y.flip(-1)
    y, _ = sosfilt_reference(y, sos, zi[None] * y[:, :1, None])
    return y.flip(-1)[:, padlen:padlen + rows.shape[-1]].to(rows.dtype)


register_kernel("sosfilt", "cpu", compiled_op("_sosfilt_kernel"))


register_kernel("sosfiltfilt", "cpu", compiled_op("_sosfiltfilt_kernel"))


register_kernel("sosfilt", "cuda", compiled_op("_sosfilt_kernel"))


register_kernel("sosfiltfilt", "cuda", compiled_op("_sosfiltfilt_kernel"))


register_kernel("sosfilt", "triton", "fastecg.triton_kernels.sosfilt:sosfilt")


register_kernel("sosfiltfilt", "triton", "fastecg.triton_kernels.sosfilt:sosfiltfilt")


# The fused adjoint (see _sosfiltfilt_adjoint); other backends compose it from sosfilt.
register_kernel("sosfiltfilt_adjoint", "cpu", compiled_op("_sosfiltfilt_adjoint_kernel"))


register_kernel("sosfiltfilt_adjoint", "cuda", compiled_op("_sosfiltfilt_adjoint_kernel"))


# ---- custom ops ------------------------------------------------------------------------

def _resolved_padlen(sos: Tensor, padlen: int, n: int) -> int:
    """`padlen`, or for -1 the design's default, read from `sos` when the op runs (under
    torch.compile a `sos` that is a graph input has no values while tracing)."""
    if padlen >= 0:
        return padlen
    edge = default_padlen(sos)
    check_longer_than_padding(n, edge)
    return edge


@custom_op("fastecg::sosfiltfilt")
def _sosfiltfilt(x: Tensor, sos: Tensor, zi: Tensor, padlen: int, padtype: int,
                 backend: str) -> Tensor:
    padlen = _resolved_padlen(sos, padlen, x.shape[-1])
    rows = x.reshape(-1, x.shape[-1])
    kernel = kernel_for("sosfiltfilt", x, backend)
    return kernel(rows, sos, zi, padlen, padtype).view(x.shape)


@custom_op("fastecg::sosfiltfilt_adjoint")
def _sosfiltfilt_adjoint(grad: Tensor, sos: Tensor, zi: Tensor, padlen: int, padtype: int,
                         backend: str) -> Tensor:
    padlen = _resolved_padlen(sos, padlen, grad.shape[-1])
    rows = grad.reshape(-1, grad.shape[-1])
    chosen = resolve_backend("sosfilt", grad, backend)
    filt = kernel_for("sosfilt", grad, chosen)
    weights = _edge_weights(sos, zi, rows.shape[-1], padlen, filt)
    # (rows, n) @ (n, 2) as the transpose of a (2, n) matrix: MKL's sgemm is several times
    # faster on this layout than on the plain (n, 2) one (benchmarks/CPU_NOTES.md).
    edge_terms = (rows @ weights.to(rows.dtype).t()).to(torch.float64)
    if has_kernel("sosfiltfilt_adjoint", chosen):
        fused = kernel_for("sosfiltfilt_adjoint", grad, chosen)
        out = fused(rows, sos, edge_terms, padlen, padtype)
    else:
        out = _composed_adjoint(rows, sos, edge_terms, padlen, padtype, filt)
    return out.view(grad.shape)


@_sosfiltfilt.register_fake
@_sosfiltfilt_adjoint.register_fake
def _(x, sos, zi, padlen, padtype, backend):
    return x.new_empty(x.shape)


def _setup_context(ctx, inputs, output):
    _, sos, zi, padlen, padtype, backend = inputs
    ctx.save_for_backward(sos, zi)
    ctx.args = (padlen, padtype, backend)


def _forward_grad(ctx, grad):
    sos, zi = ctx.saved_tensors
    return _sosfiltfilt_adjoint(grad, sos, zi, *ctx.args), None, None, None, None, None


def _adjoint_grad(ctx, grad):
    # The adjoint is linear: its own adjoint is the forward map.
    sos, zi = ctx.saved_tensors
    return _sosfiltfilt(grad, sos, zi, *ctx.args), None, None, None, None, None


_sosfiltfilt.register_autograd(_forward_grad, setup_context=_setup_context)


_sosfiltfilt_adjoint.register_autograd(_adjoint_grad, setup_context=_setup_context)


def _edge_weights(sos: Tensor, zi: Tensor, n: int, padlen: int, filt) -> Tensor:
    """(2, n) float64 weights: ``g @ weights.T`` gives (c1, c2) per row."""
    h, _ = filt(torch.zeros(1, n + 2 * padlen, dtype=torch.float64, device=sos.device), sos,
                zi[None])
    zero = torch.zeros_like(zi)[None]
    jtjh, _ = filt(h.flip(-1).contiguous(), sos, zero)
    c1 = h[0].flip(-1)[padlen:padlen + n]
    c2 = jtjh[0].flip(-1)[padlen:padlen + n] + c1 * h[0, -1]
    return torch.stack([c1, c2])


def _composed_adjoint(rows: Tensor, sos: Tensor, edge_terms: Tensor, padlen: int,
                      padtype: int, filt) -> Tensor:
    """The adjoint composed from any backend's sosfilt kernel (float64 inside)."""
    v = torch.nn.functional.pad(rows.to(torch.float64), (padlen, padlen))
    zero = torch.zeros(v.shape[0], sos.shape[0], 2, dtype=torch.float64, device=v.device)
    t, _ = filt(v, sos, zero)
    t[:, -1] += edge_terms[:, 0]
    w, _ = filt(t.flip(-1).contiguous(), sos, zero)
    w = w.flip(-1)
    w[:, 0] += edge_terms[:, 1]
    return _extension_transpose(w, rows.shape[-1], padlen, padtype).to(rows.dtype)


def _extension_transpose(w: Tensor, n: int, padlen: int, padtype: int) -> Tensor:
    """E^T: (rows, n + 2 padlen) -> (rows, n), each extension sample added back onto
    the samples :func:`_extend` built it from."""
    xg = w[:, padlen:padlen + n].clone()
    if padlen:
        left, right = w[:, :padlen], w[:, padlen + n:]
        if padtype == PADTYPES["constant"]:
            xg[:, 0] += left.sum(-1)
            xg[:, -1] += right.sum(-1)
        else:
            sign = -1.0 if padtype == PADTYPES["odd"] else 1.0
            xg[:, 1:padlen + 1] += sign * left.flip(-1)
            xg[:, n - 1 - padlen:n - 1] += sign * right.flip(-1)
            if padtype == PADTYPES["odd"]:
                xg[:, 0] += 2 * left.sum(-1)
                xg[:, -1] += 2 * right.sum(-1)
    return xg


@custom_op("fastecg::sosfilt")
def _sosfilt(x: Tensor, sos: Tensor, zi: Tensor, backend: str) -> tuple[Tensor, Tensor]:
    rows = x.reshape(-1, x.shape[-1])
    states = zi.reshape(rows.shape[0], sos.shape[0], 2)  # (-1 is ambiguous for 0 rows)
    y, zf = kernel_for("sosfilt", x, backend)(rows, sos, states)
    return y.view(x.shape), zf.view(zi.shape)


@_sosfilt.register_fake
def _(x, sos, zi, backend):
    return x.new_empty(x.shape), zi.new_empty(zi.shape)


def _sosfilt_setup(ctx, inputs, output):
    _, sos, zi, backend = inputs
    ctx.save_for_backward(sos)
    ctx.backend, ctx.zi_shape, ctx.zi_dtype = backend, zi.shape, zi.dtype


_sosfilt.register_autograd(lambda ctx, gy, gzf: _sosfilt_grad(ctx, gy, gzf),
                           setup_context=_sosfilt_setup)


def _sosfilt_grad(ctx, grad_y, grad_zf):
    # (y, zf) is linear in (x, zi). With the cascade as one state-space system
    # s[t+1] = A s[t] + B x[t], y[t] = C s[t] + D x[t] (s: every section's 2 states):
    #   x  <- T^T grad_y (the filter run backwards)  + sum_k grad_zf . A^k B at t = n-1-k
    #   zi <- Z^T grad_y (zero-input responses)      + (A^n)^T grad_zf
    # Every filter call goes through the custom op (not the raw kernel): it has a fake
    # kernel (compile, opcheck) and an autograd formula (double backward).
    (sos,) = ctx.saved_tensors
    g = grad_y.reshape(-1, grad_y.shape[-1]).to(torch.float64)
    gzf = grad_zf.reshape(g.shape[0], -1).to(torch.float64)
    n_sections, n = sos.shape[0], g.shape[-1]
    zero = torch.zeros(g.shape[0], n_sections, 2, dtype=torch.float64, device=g.device)
    gx = _sosfilt(g.flip(-1), sos, zero, ctx.backend)[0].flip(-1)
    basis = torch.eye(2 * n_sections, dtype=torch.float64, device=g.device)
    responses, powers = _sosfilt(torch.zeros(2 * n_sections, n, dtype=torch.float64,
                                             device=g.device),
                                 sos, basis.view(-1, n_sections, 2), ctx.backend)
    gx = gx + (gzf @ _impulse_states(sos, n, ctx.backend)).flip(-1)
    gzi = g @ responses.T + gzf @ powers.reshape(2 * n_sections, -1).T
    return (gx.to(grad_y.dtype).view(grad_y.shape), None,
            gzi.to(ctx.zi_dtype).view(ctx.zi_shape), None)


def _impulse_states(sos: Tensor, n: int, backend: str) -> Tensor:
    """``A^k B`` for k < n, as (2 * n_sections, n): every section's state after a unit
    impulse and k zeros. In transposed direct form II a section's states are linear in
    its input u and output y (z1[t] = b2 u[t] - a2 y[t], z0[t] = b1 u[t] - a1 y[t] +
    z1[t-1]), so one single-section filter call per section gives them, no time loop."""
    u = torch.zeros(1, n, dtype=torch.float64, device=sos.device)
    u[0, 0] = 1.0
    zero = torch.zeros(1, 1, 2, dtype=torch.float64, device=sos.device)
    states = []
    for section in sos:
        y, _ = _sosfilt(u, section[None].contiguous(), zero, backend)
        b1, b2, a1, a2 = section[1], section[2], section[4], section[5]
        z1 = b2 * u - a2 * y
        z0 = b1 * u - a1 * y + torch.nn.functional.pad(z1[:, :-1], (1, 0))
        states += [z0, z1]
        u = y
    return torch.cat(states)


# ---- helpers and public functions ---------------------------------------------------------

def sosfiltfilt(sos: Union[np.ndarray, Tensor], x: Tensor, padtype: Optional[str] = "odd",
                padlen: Optional[int] = None, backend: str = "auto") -> Tensor:
    """Zero-phase forward-backward IIR filter along the last axis (``scipy.signal.sosfiltfilt``).

    Parameters
    ----------
    sos : array_like or Tensor, shape (n_sections, 6)
        Second-order sections from SciPy (``butter(..., output="sos")``, ``cheby1``,
        ``ellip``, ``iirnotch`` + ``tf2sos``, ...). ``sos[:, 3]`` must be 1.
    x : Tensor, shape (..., n_samples)
        float32 or float64 (half types are computed in float32), CPU or CUDA, any strides.
    padtype : {"odd", "even", "constant", None}, optional
        Edge extension before filtering, as SciPy.
    padlen : int, optional
        Extension length; default :func:`default_padlen`. Must be < ``n_samples``.
    backend : {"auto", "cuda", "triton", "cpu", "torch"}, optional
        Kernel; ``"cuda"`` / ``"triton"`` run the block scan along time on a GPU
        (Triton also on the CPU under ``TRITON_INTERPRET=1``); ``"torch"`` is the
        slow pure-PyTorch reference (any device).

    Returns
    -------
    Tensor
        Same shape, dtype and device as `x`. Differentiable in `x` (exact adjoint of
        the whole map, padding and initial conditions included).

    Raises
    ------
    TypeError
        If `x` is not floating point.
    ValueError
        For a malformed `sos`, a `sos` that requires grad (the filter is a constant),
        an unknown `padtype`, or ``n_samples <= padlen``.

    Notes
    -----
    The extension is built in `x`'s dtype (as SciPy does: float32 in, float32 padding),
    the recurrence runs in float64 with SciPy's initial conditions (``sosfilt_zi``
    scaled by the first sample, in both directions), and the result is rounded once
    to `x`'s dtype. NaN or Inf in a channel makes that channel's output NaN; other
    channels are unaffected. Measured error vs SciPy: ~1e-7 of the peak in float32,
    ~1e-13 in float64.

    Under ``torch.compile`` `sos` (tensor, NumPy array, nested lists or tuples) is read
    when the graph runs: a compiled function called with another design uses that
    design; the checks of its values (``sos[:, 3] == 1``) are then left out, and the
    default `padlen` and the initial conditions are found from its values as the graph
    runs.

    Examples
    --------
    >>> from scipy.signal import butter
    >>> sos = butter(4, [0.5, 45.0], btype="bandpass", fs=500.0, output="sos")
    >>> sosfiltfilt(sos, torch.randn(8, 12, 5000)).shape
    torch.Size([8, 12, 5000])
    """
    check_signal(x, "sosfiltfilt")
    if torch.compiler.is_compiling():  # sos read when the graph runs, never a stale design
        sos_t = _as_sos(sos, x.device)
        zi, default = _sosfilt_zi(sos_t), None
    elif isinstance(sos, Tensor):
        sos_t = _as_sos(sos, x.device)
        zi, default = _zi_for(sos, sos_t), default_padlen(sos_t)
    else:  # one validated key per call: sos, zi and padlen are cached per design
        key, device = _sos_key(sos), str(x.device)
        sos_t, zi = _sos_on_device(key, device), _zi_on_device(key, device)
        default = _tuple_padlen(key)
    return filtfilt_design(x, sos_t, zi, default, padtype, padlen, backend)


def filtfilt_design(x: Tensor, sos: Tensor, zi: Tensor, default_padlen: Optional[int],
                    padtype: Optional[str], padlen: Optional[int], backend: str) -> Tensor:
    """sosfiltfilt of a checked signal with a prepared design: `sos`, its ``sosfilt_zi``
    (float64 on x's device) and its default padding (None: found by the op from `sos`)."""
    edge = extension_length(x, padtype, padlen, default_padlen)
    if not torch.compiler.is_compiling():
        resolve_backend("sosfiltfilt", x, backend)
    work = x.to(kernel_dtype(x))
    return _sosfiltfilt(work, sos, zi, edge, PADTYPES[padtype], backend).to(x.dtype)


def sosfilt(sos: Union[np.ndarray, Tensor], x: Tensor, zi: Optional[Tensor] = None,
            backend: str = "auto"):
    """Causal IIR filter along the last axis (``scipy.signal.sosfilt(sos, x, axis=-1, zi=zi)``).

    Parameters
    ----------
    sos : array_like or Tensor, shape (n_sections, 6)
        Second-order sections; ``sos[:, 3]`` must be 1.
    x : Tensor, shape (..., n_samples)
        float32 or float64 (half types are computed in float32), CPU or CUDA.
    zi : Tensor, shape (n_sections, ..., 2), optional
        Initial state per section and channel, as SciPy lays it out
        (``sosfilt_zi(sos)[:, None, :] * x[..., :1]`` style).
    backend : {"auto", "cuda", "triton", "cpu", "torch"}, optional
        As in :func:`sosfiltfilt`.

    Returns
    -------
    y : Tensor
        Same shape and dtype as `x`.
    zf : Tensor, float64, shape of `zi`
        Final state; returned only when `zi` is given, as SciPy does.

    Notes
    -----
    State and arithmetic in float64. Differentiable in `x` and `zi` through both `y`
    and `zf` (exact adjoints; twice differentiable); `sos` is a constant (a `sos` that
    requires grad raises ValueError).

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from scipy import signal
    >>> from fastecg.ops import sosfilt
    >>> sos = signal.butter(4, 40.0, fs=500.0, output="sos")          # low-pass 40 Hz
    >>> x = torch.randn(2, 12, 1000, dtype=torch.float64)
    >>> np.allclose(sosfilt(sos, x).numpy(), signal.sosfilt(sos, x.numpy()))
    True

    A signal filtered in two pieces, the state carried over, equals the whole:

    >>> zi = torch.zeros(sos.shape[0], 2, 12, 2, dtype=torch.float64)
    >>> y1, zf = sosfilt(sos, x[..., :500], zi=zi)
    >>> y2, _ = sosfilt(sos, x[..., 500:], zi=zf)
    >>> torch.allclose(torch.cat([y1, y2], dim=-1), sosfilt(sos, x))
    True
    """
    check_signal(x, "sosfilt")
    sos_t = _as_sos(sos, x.device)
    n_sections = sos_t.shape[0]
    lead_shape = tuple(x.shape[:-1])
    if zi is None:
        state = torch.zeros(lead_shape + (n_sections, 2), dtype=torch.float64, device=x.device)
    else:
        zi = torch.as_tensor(zi, device=x.device)
        _check_real(zi.is_complex(), "zi")
        if tuple(zi.shape) != (n_sections,) + lead_shape + (2,):
            raise ValueError(f"Invalid zi shape. With axis=-1, an input with shape "
                             f"{tuple(x.shape)}, and an sos array with {n_sections} sections, "
                             f"zi must have shape {(n_sections,) + lead_shape + (2,)}, "
                             f"got {tuple(zi.shape)}.")
        state = zi.to(torch.float64).movedim(0, -2)
    if not torch.compiler.is_compiling():
        resolve_backend("sosfilt", x, backend)
    y, zf = _sosfilt(x.to(kernel_dtype(x)), sos_t, state.contiguous(), backend)
    y = y.to(x.dtype)
    if zi is None:
        return y
    return y, zf.movedim(-2, 0)
