"""One rule for caching inside the ops: eager calls reuse what they built for the same
arguments; under ``torch.compile`` the function runs uncached, since its arguments may
be symbolic and a cached tensor would be baked into the graph as a constant."""

from __future__ import annotations

import functools
from typing import Callable

import torch


def cached_unless_compiling(maxsize: int = 128) -> Callable:
    """Decorator: ``functools.lru_cache(maxsize)`` on eager calls, a plain call while
    ``torch.compiler.is_compiling()``. Arguments must be hashable (devices, ints, ...)."""

    def wrap(fn: Callable) -> Callable:
        cached = functools.lru_cache(maxsize=maxsize)(fn)

        @functools.wraps(fn)
        def call(*args):
            if torch.compiler.is_compiling():
                return fn(*args)
            return cached(*args)

        call.cache_clear = cached.cache_clear
        call.cache_info = cached.cache_info
        return call

    return wrap
