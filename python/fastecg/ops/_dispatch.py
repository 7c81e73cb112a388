"""The one place where fastecg picks a backend for a kernel.

Kernels register as ``(name, backend)``; :func:`kernel_for` returns the kernel to run
for a tensor, walking a per-device preference unless the caller forces a backend.
A kernel may be registered as ``"module:attr"`` so that heavy imports (Triton) happen
only when that backend is picked.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
from typing import Callable, Union

import torch
from torch.autograd import forward_ad

BACKENDS = ("cuda", "triton", "cpu", "torch")
# Fastest first. Triton is never picked for CPU tensors by "auto": its CPU
# interpreter is a correctness tool, thousands of times slower than the C++ kernel.
_PREFERENCE = {"cuda": ("cuda", "triton", "torch"), "cpu": ("cpu", "torch")}

# Any compiled op: if it has a CUDA kernel, the extension was built with CUDA.
_CANARY_OP = "fastecg::_normalize_kernel"

_KERNELS: dict[tuple[str, str], Union[Callable, str]] = {}
# kernel_for's answers per (name, backend asked for, device type): they depend on nothing
# else, and an op asks on every call.
_RESOLVED: dict[tuple[str, str, str], Callable] = {}

# What a user called, for messages: kernel names are ours, not theirs.
_USER_NAMES = {
    "zero_phase_fft": 'bandpass(method="fft")',
    "moving_average": 'remove_baseline(method="mean")',
    "median_filter": 'median_filter1d / remove_baseline(method="median")',
    "sosfiltfilt": 'sosfiltfilt / bandpass(method="iir")',
    "sosfiltfilt_adjoint": 'the backward of sosfiltfilt / bandpass(method="iir")',
    "sosfilt": "sosfilt",
    "normalize": "normalize",
}


@dataclasses.dataclass(frozen=True)
class BackendInfo:
    available: bool
    reason: str


def register_kernel(name: str, backend: str, fn: Union[Callable, str, None] = None):
    """Register ``fn`` (a callable or a lazy ``"module:attr"``) as ``name``'s kernel on
    ``backend``; usable as a decorator when ``fn`` is omitted."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")

    def add(f):
        _KERNELS[(name, backend)] = f
        _RESOLVED.clear()
        return f

    return add if fn is None else add(fn)


def has_kernel(name: str, backend: str) -> bool:
    """Whether ``name`` has a kernel registered for ``backend``."""
    return (name, backend) in _KERNELS


@functools.cache
def _extension() -> BackendInfo:
    try:
        from fastecg import _C  # noqa: F401  (registers fastecg::_*_kernel ops)
    except ImportError as err:
        return BackendInfo(False, f"fastecg._C did not load ({err}); rebuild with `pip install -e .`")
    return BackendInfo(True, "fastecg._C loaded")


def _triton_interpreter() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.cache
def backends() -> dict[str, BackendInfo]:
    """Availability of every backend in this install, with the reason."""
    ext = _extension()
    status = {"cpu": ext, "torch": BackendInfo(True, "pure PyTorch reference")}
    if not ext.available:
        status["cuda"] = ext
    elif not torch._C._dispatch_has_kernel_for_dispatch_key(_CANARY_OP, "CUDA"):
        status["cuda"] = BackendInfo(
            False, "fastecg._C was built without CUDA (needs nvcc and a CUDA build of torch; "
            "FASTECG_CUDA=1 pip install -e .)")
    elif not torch.cuda.is_available():
        status["cuda"] = BackendInfo(False, "CUDA kernels built, but no GPU is visible")
    else:
        status["cuda"] = BackendInfo(True, f"CUDA kernels on {torch.cuda.get_device_name()}")
    try:
        import triton  # noqa: F401
    except ImportError:
        status["triton"] = BackendInfo(False, "triton is not installed (pip install triton)")
    else:
        if torch.cuda.is_available():
            status["triton"] = BackendInfo(True, f"Triton {triton.__version__} on the GPU")
        elif _triton_interpreter():
            status["triton"] = BackendInfo(True, f"Triton {triton.__version__} CPU interpreter "
                                           "(TRITON_INTERPRET=1: correct but slow)")
        else:
            status["triton"] = BackendInfo(
                False, "no GPU driver; set TRITON_INTERPRET=1 before importing fastecg to "
                "run Triton kernels on the CPU interpreter")
    return {name: status[name] for name in BACKENDS}


def _runs_on(backend: str, device: str) -> bool:
    if backend == "torch":
        return True
    if backend == "triton":
        return device == "cuda" or (device == "cpu" and _triton_interpreter())
    return backend == device


def check_backend_name(backend: str) -> None:
    """ValueError unless `backend` is "auto" or a known backend's name."""
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected 'auto' or one of {BACKENDS}")


def resolve_backend(name: str, x: torch.Tensor, backend: str = "auto") -> str:
    """The backend that runs kernel ``name`` on ``x``; raises if a forced one cannot."""
    device = x.device.type
    check_backend_name(backend)
    if backend == "auto":
        for candidate in _PREFERENCE.get(device, ("torch",)):
            if (name, candidate) in _KERNELS and backends()[candidate].available:
                return candidate
        raise RuntimeError(f"{_USER_NAMES.get(name, name)} has no backend that runs on "
                           f"{device} (not even the torch reference)")
    if (name, backend) not in _KERNELS:
        have = ", ".join(repr(b) for b in BACKENDS if (name, b) in _KERNELS)
        raise RuntimeError(f"{_USER_NAMES.get(name, name)} has no {backend!r} backend; "
                           f"use backend='auto' or one of {have}")
    info = backends()[backend]
    if not info.available:
        raise RuntimeError(f"backend {backend!r} is not available: {info.reason}")
    if not _runs_on(backend, device):
        raise RuntimeError(f"backend {backend!r} cannot run on a {device} tensor; "
                           f"move the tensor or use backend='auto'")
    return backend


def kernel_for(name: str, x: torch.Tensor, backend: str = "auto") -> Callable:
    """The kernel callable for ``name`` on ``x`` (see :func:`resolve_backend`)."""
    asked = (name, backend, x.device.type)
    kernel = _RESOLVED.get(asked)
    if kernel is not None:
        return kernel
    key = (name, resolve_backend(name, x, backend))
    kernel = _KERNELS[key]
    if isinstance(kernel, str):
        module, attr = kernel.split(":")
        kernel = _KERNELS[key] = getattr(importlib.import_module(module), attr)
    _RESOLVED[asked] = kernel
    return kernel


def plain_eager(tensors) -> bool:
    """Whether a call with these tensor arguments is plain eager work: no ``torch.compile``,
    ``jit.trace``, functorch transform (``vmap``, ``grad``) or dispatch mode (fake tensors,
    tracing, flop counters) around it, no tensor subclass or meta tensor (the custom op's
    fake gives those their shapes), and no tensor that autograd would record the call
    for."""
    if torch.compiler.is_compiling() or torch._C._get_tracing_state() is not None:
        return False
    grad = torch.is_grad_enabled()
    for t in tensors:
        if type(t) is not torch.Tensor or t.is_meta or (grad and t.requires_grad):
            return False
    return not (torch._C._len_torch_dispatch_stack() or torch._C._are_functorch_transforms_active())


def has_tangent(tensors) -> bool:
    """Whether any of `tensors` carries a forward-mode AD tangent
    (``torch.autograd.forward_ad``, ``torch.func.jvp`` / ``jacfwd``). A custom op has a
    backward formula only: below autograd it drops the tangent without a word, and so do
    the compiled kernels. One module attribute read when no dual level is open."""
    if forward_ad._current_level < 0:
        return False
    for t in tensors:
        while True:
            try:
                if forward_ad.unpack_dual(t).tangent is not None:
                    return True
                break
            except RuntimeError:
                # a vmap-batched tensor: look at the tensor it batches (a jvp's dual when
                # vmap runs inside jvp; a constant under vmap in a dual level carries none)
                if not torch._C._functorch.is_batchedtensor(t):
                    return True  # cannot tell, so assume so
                t = torch._C._functorch.get_unwrapped(t)
    return False


def forward_mode_error(op: str) -> RuntimeError:
    """The error for a forward-mode tangent reaching `op`, which has a backward formula
    only, with the reverse-mode ways to the same derivatives."""
    return RuntimeError(
        f"{op}: forward-mode AD (torch.func.jvp, jacfwd, hessian, torch.autograd.forward_ad) "
        f"is not supported: the custom op has a backward formula only; use reverse mode "
        f"(torch.autograd.grad, torch.func.grad / vjp / jacrev, or "
        f"torch.autograd.functional.jvp, which is built from it), and for second "
        f"derivatives torch.func.jacrev(torch.func.jacrev(f)) or "
        f"torch.autograd.functional.hessian (reverse-over-reverse, its default)")


def check_no_tangent(tensors, op: str) -> None:
    """RuntimeError if any of `tensors` carries a forward-mode tangent (:func:`has_tangent`),
    which `op` would otherwise silently drop (a zero or missing derivative)."""
    if has_tangent(tensors):
        raise forward_mode_error(op)


def functorch_grad_active() -> bool:
    """Whether a functorch reverse-mode transform (``torch.func.grad``, ``vjp``,
    ``jacrev``) is active around this call."""
    if not torch._C._are_functorch_transforms_active():
        return False
    from torch._C._functorch import TransformType
    from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters

    return any(i.key() == TransformType.Grad for i in retrieve_all_functorch_interpreters())


def _functorch_function(op) -> type:
    """An ``autograd.Function`` with the custom op's registered ``setup_context`` and
    backward, for functorch's reverse-mode transforms.

    ``torch.library`` runs a custom op's autograd formula in an ``autograd.Function`` whose
    ``forward`` takes ``ctx``, which ``torch.func.grad`` / ``vjp`` / ``jacrev`` reject; this
    one has a separate ``setup_context`` and a generated vmap rule (``vmap(grad(f))``,
    ``jacrev``), so they can run it. Its forward calls the custom op, below this level of
    the transform. Call it with every argument, defaults included, as torch.library hands
    them to setup_context. Its ``jvp`` raises :func:`forward_mode_error`."""

    class Function(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(*args):
            return op(*args)

        @staticmethod
        def setup_context(ctx, inputs, output):
            op._setup_context_fn(ctx=ctx, inputs=inputs, output=output)

        @staticmethod
        def backward(ctx, *grads):
            return op._backward_fn(ctx, *grads)

        @staticmethod
        def jvp(ctx, *tangents):
            # a tangent from a forward-mode transform around the reverse-mode one
            # (torch.func.hessian, jvp(grad(f))): the wrapped tensors hide it from
            # has_tangent, so functorch asks for the rule here
            raise forward_mode_error(op._qualname)

    Function.__name__ = Function.__qualname__ = f"FunctorchFunction_{op._qualname}"
    return Function


class EagerOp:
    """A ``torch.library`` custom op whose plain eager calls (:func:`plain_eager`) run its
    implementation directly.

    The custom op is what autograd, ``torch.compile``, ``jit.trace``, functorch transforms,
    dispatch modes and tensor subclasses see, so it runs whenever any of them is involved.
    In a plain eager call it would only forward to the same implementation, through four
    Python layers that cost ~15 us with warm caches and ~60 us right after another large
    op has evicted them (benchmarks/README.md, resampling). Under a functorch reverse-mode
    transform (:func:`functorch_grad_active`) it runs as an ``autograd.Function`` with the
    op's registered formula, which those transforms accept and the custom op's own
    autograd wrapper is not. Attributes (``register_fake``, ``register_autograd``, ...) are
    the custom op's."""

    def __init__(self, op, impl: Callable):
        self._op, self._impl = op, impl
        self._name = op._qualname
        self._function = self._signature = None

    def __call__(self, *args):
        if torch.compiler.is_compiling():
            return self._op(*args)
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        check_no_tangent(tensors, self._name)
        if plain_eager(tensors):
            return self._impl(*args)
        if functorch_grad_active() and getattr(self._op, "_backward_fn", None) is not None:
            if self._function is None:
                import inspect

                self._function = _functorch_function(self._op)
                self._signature = inspect.signature(self._impl)
            bound = self._signature.bind(*args)
            bound.apply_defaults()
            return self._function.apply(*bound.args)
        return self._op(*args)

    def __getattr__(self, name):
        return getattr(self._op, name)


def custom_op(qualname: str) -> Callable:
    """Decorator: ``torch.library.custom_op(qualname, mutates_args=())`` of the function, as
    an :class:`EagerOp`."""

    def wrap(fn: Callable) -> EagerOp:
        return EagerOp(torch.library.custom_op(qualname, fn, mutates_args=()), fn)

    return wrap


def compiled_op(op_name: str) -> Callable:
    """A lazy handle to ``torch.ops.fastecg.<op_name>`` (loads fastecg._C on first call)."""

    def call(*args):
        if not _extension().available:
            raise RuntimeError(_extension().reason)
        return getattr(torch.ops.fastecg, op_name)(*args)

    return call
