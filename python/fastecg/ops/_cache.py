"""One rule for caching inside the ops: eager calls reuse what they built for the same
arguments; under ``torch.compile`` the function runs uncached, since its arguments may
be symbolic and a cached tensor would be baked into the graph as a constant.

A cached tensor outlives the call that made it, so it is made as a plain constant
(:func:`tensor_cache`): outside inference mode (a first call in a validation loop under
``torch.inference_mode()`` would cache an inference tensor, which a later training call
cannot save for backward) and outside functorch transforms (a tensor made inside
``torch.func.grad`` is wrapped for that transform's level; cached, it escapes it and
every later transform fails)."""

from __future__ import annotations

import functools
from typing import Callable

import torch


def _plain(fn: Callable) -> Callable:
    """`fn`, run outside inference mode and outside functorch transforms (eagerly; under
    ``torch.compile`` as it is)."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if torch.compiler.is_compiling():
            return fn(*args, **kwargs)
        with torch.inference_mode(False), torch._C._DisableFuncTorch():
            return fn(*args, **kwargs)

    return call


def tensor_cache(maxsize: int = 128) -> Callable:
    """Decorator: ``functools.lru_cache(maxsize)`` for a function that returns tensors
    (read only to its callers), which it makes as plain constants (see the module
    docstring). Arguments must be hashable."""

    def wrap(fn: Callable) -> Callable:
        return functools.lru_cache(maxsize=maxsize)(_plain(fn))

    return wrap


def length_split_cache(length_arg: int, long_from: int = 1 << 16, maxsize: int = 128,
                       long_maxsize: int = 2) -> Callable:
    """Decorator: :func:`tensor_cache` for a function whose result grows with a length
    (positional argument `length_arg`): up to `maxsize` results for lengths below
    `long_from`, but only the `long_maxsize` most recent ones for longer lengths. Long
    records (Holter) come in many lengths, and a result per length kept for each would
    hold ~``maxsize`` times a record's size (gigabytes); a fixed long length, called
    again and again, stays cached."""

    def wrap(fn: Callable) -> Callable:
        short, long = tensor_cache(maxsize)(fn), tensor_cache(long_maxsize)(fn)

        @functools.wraps(fn)
        def call(*args):
            return (long if args[length_arg] >= long_from else short)(*args)

        def cache_clear():
            short.cache_clear()
            long.cache_clear()

        call.cache_clear = cache_clear
        return call

    return wrap


def cached_unless_compiling(maxsize: int = 128) -> Callable:
    """Decorator: ``functools.lru_cache(maxsize)`` on eager calls, a plain call while
    ``torch.compiler.is_compiling()``; cached tensors are made as :func:`tensor_cache`
    makes them. Arguments must be hashable (devices, ints, ...)."""

    def wrap(fn: Callable) -> Callable:
        cached = tensor_cache(maxsize)(fn)

        @functools.wraps(fn)
        def call(*args):
            if torch.compiler.is_compiling():
                return fn(*args)
            return cached(*args)

        call.cache_clear = cached.cache_clear
        call.cache_info = cached.cache_info
        return call

    return wrap


def _hashable(args: tuple) -> tuple:
    return tuple(tuple(a) if isinstance(a, list) else a for a in args)


def design_op(qualname: str, fake: Callable, maxsize: int = 128) -> Callable:
    """Decorator for a filter design that the ops need as tensors on the signal's device.

    The designs come from SciPy, which ``torch.compile`` cannot trace. The decorated
    function ``fn(*args) -> Tensor | tuple[Tensor, ...]`` (arguments of op-schema types,
    annotated) becomes:

    * in eager mode, a cache lookup per arguments: the cached tensors themselves, with
      no host-to-device copy per call (callers only read them; list arguments are cached
      as tuples);
    * under ``torch.compile``, the custom op `qualname` (copies of the cached tensors: an
      op's outputs must not alias; `fake` gives their shapes), so the graph computes the
      design when it runs and its parameters (band edges, fs) may be symbolic.
    """

    def wrap(fn: Callable) -> Callable:
        cached = tensor_cache(maxsize)(fn)

        @functools.wraps(fn)
        def impl(*args):
            out = cached(*_hashable(args))
            return tuple(t.clone() for t in out) if isinstance(out, tuple) else out.clone()

        # The schema from fn itself: its annotations resolve in its own module.
        schema = torch.library.infer_schema(fn, mutates_args=())
        op = torch.library.custom_op(qualname, impl, mutates_args=(), schema=schema)
        op.register_fake(fake)

        @functools.wraps(fn)
        def design(*args):
            if torch.compiler.is_compiling():
                return op(*args)
            return cached(*_hashable(args))

        design.cache_clear = cached.cache_clear
        return design

    return wrap
