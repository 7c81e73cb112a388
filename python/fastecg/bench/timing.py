"""Timing and peak memory for ``fastecg bench`` and the pytest-benchmark suites.

:func:`time_paired` runs the candidates of one workload in alternating rounds: after a
warm-up (at least 5 calls each: caches, thread pools, lazy imports, Triton autotuning),
every round calls every candidate once, starting one further along the list than the
round before, so load that drifts over the run lands on all of them alike; a ratio of
two candidates' times is taken within each round (paired), and its median and 20/80
percentiles are reported. Device candidates are timed with CUDA events around the call
(and a synchronisation after it), host candidates with ``time.perf_counter``.

:func:`peak_memory` is one call's peak of live bytes above what was live before it,
output included: on CUDA ``torch.cuda.max_memory_allocated``; on the host, NumPy's
allocations (``tracemalloc``) plus torch's CPU allocations (the profiler's memory events,
at op granularity: a kernel's scratch that it frees before returning is not seen), and
not what worker processes allocate.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
import tracemalloc
from typing import Callable, Optional, Sequence

import numpy as np

__all__ = ["Timed", "time_paired", "peak_memory", "summary", "paired_ratios", "MIN_WARMUP"]

MIN_WARMUP = 5


@dataclasses.dataclass
class Timed:
    """A candidate's per-call seconds, one per round, in round order.

    Examples
    --------
    >>> from fastecg.bench.timing import Timed
    >>> Timed("scipy", [0.003, 0.001, 0.002]).summary()
    {'median_ms': 2.0, 'p20_ms': 1.4, 'p80_ms': 2.6, 'rounds': 3}
    """
    label: str
    seconds: list[float]

    def summary(self) -> dict:
        return summary(self.seconds)


def summary(seconds: Sequence[float]) -> dict:
    """Median and 20/80 percentiles in ms, and the number of calls timed.

    Examples
    --------
    >>> from fastecg.bench.timing import summary
    >>> summary([0.001, 0.002, 0.003])
    {'median_ms': 2.0, 'p20_ms': 1.4, 'p80_ms': 2.6, 'rounds': 3}
    """
    ms = 1e3 * np.asarray(seconds, dtype=np.float64)
    return {"median_ms": float(np.median(ms)), "p20_ms": float(np.percentile(ms, 20)),
            "p80_ms": float(np.percentile(ms, 80)), "rounds": int(ms.size)}


def paired_ratios(own: Sequence[float], other: Sequence[float]) -> dict:
    """Distribution over rounds of ``other / own`` (above 1: ``own`` is faster).

    Examples
    --------
    >>> from fastecg.bench.timing import paired_ratios
    >>> paired_ratios([1.0, 1.0, 2.0], [2.0, 3.0, 2.0])     # seconds per round
    {'median': 2.0, 'p20': 1.4, 'p80': 2.6}
    """
    ratio = np.asarray(other, dtype=np.float64) / np.asarray(own, dtype=np.float64)
    return {"median": float(np.median(ratio)), "p20": float(np.percentile(ratio, 20)),
            "p80": float(np.percentile(ratio, 80))}


def _cuda_timer(fn: Callable[[], object]) -> Callable[[], float]:
    import torch

    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)

    def timed() -> float:
        start.record()
        result = fn()
        end.record()
        end.synchronize()
        del result
        return start.elapsed_time(end) / 1e3
    return timed


def _host_timer(fn: Callable[[], object]) -> Callable[[], float]:
    def timed() -> float:
        begin = time.perf_counter()
        result = fn()  # held past the clock: see time_paired
        elapsed = time.perf_counter() - begin
        del result
        return elapsed
    return timed


def time_paired(candidates: dict[str, Callable[[], object]], *,
                on_device: Optional[dict[str, bool]] = None, warmup: int = MIN_WARMUP,
                min_rounds: int = 5, max_rounds: int = 100,
                budget_s: float = 2.0) -> dict[str, Timed]:
    """Times ``candidates`` ({label: callable without arguments}) in alternating rounds.

    Rounds continue until ``min_rounds`` are done and ``budget_s`` of wall time has
    passed, or ``max_rounds``. ``on_device[label]``: time that candidate with CUDA events
    (its work is queued on the current stream). A call's result is freed after its time
    is taken: freeing a batch-sized result can hand the top of glibc's heap back to the
    operating system, at a cost set by what the calls before it allocated.

    Examples
    --------
    >>> import torch
    >>> from fastecg.bench.timing import paired_ratios, time_paired
    >>> x = torch.randn(64, 1000)
    >>> timed = time_paired({"sum": lambda: x.sum(), "sort": lambda: x.sort()},
    ...                     min_rounds=5, max_rounds=5)
    >>> {label: len(t.seconds) for label, t in timed.items()}
    {'sum': 5, 'sort': 5}
    >>> speedup = paired_ratios(timed["sum"].seconds, timed["sort"].seconds)["median"]
    """
    if warmup < MIN_WARMUP:
        raise ValueError(f"warmup must be at least {MIN_WARMUP} calls, got {warmup}")
    on_device = on_device or {}
    timers = {label: (_cuda_timer if on_device.get(label) else _host_timer)(fn)
              for label, fn in candidates.items()}
    labels = list(candidates)
    for _ in range(warmup):
        for label in labels:
            timers[label]()
    seconds: dict[str, list[float]] = {label: [] for label in labels}
    begin = time.perf_counter()
    for round_ in range(max_rounds):
        if round_ >= min_rounds and time.perf_counter() - begin >= budget_s:
            break
        first = round_ % len(labels)
        for label in labels[first:] + labels[:first]:
            seconds[label].append(timers[label]())
    return {label: Timed(label, s) for label, s in seconds.items()}


def _torch_cpu_peak(prof) -> int:
    """Peak of live torch CPU bytes over a profiled stretch: allocations are attributed to
    the op that made them (its self memory), frees are ``[memory]`` events."""
    live = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        if event.name == "[memory]":
            live += event.cpu_memory_usage
        else:
            live += max(event.self_cpu_memory_usage, 0)
        peak = max(peak, live)
    return peak


@contextlib.contextmanager
def _quiet_stderr():
    """File descriptor 2 to /dev/null: kineto logs each profiler start and stop there
    from C++ (KINETO_LOG_LEVEL only counts if set before torch is imported)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


_PROFILER_WARM: list = []


def peak_memory(fn: Callable[[], object], device: str = "cpu") -> int:
    """Peak bytes allocated during one call of ``fn`` above what was live before it.

    Examples
    --------
    >>> import numpy as np
    >>> from fastecg.bench.timing import peak_memory
    >>> peak_memory(lambda: np.ones(1 << 20, np.uint8)) >= 1 << 20     # a 1 MiB array
    True
    """
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        out = fn()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
        del out
        return int(peak)
    from torch.profiler import ProfilerActivity, profile

    if not _PROFILER_WARM:
        # The profiler's first use in a process imports and allocates tens of MB, which
        # tracemalloc would count as the measured call's.
        with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True):
            pass
        _PROFILER_WARM.append(True)
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    try:
        with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU],
                                      profile_memory=True) as prof:
            out = fn()
        _, numpy_peak = tracemalloc.get_traced_memory()
    finally:
        if not was_tracing:
            tracemalloc.stop()
    del out
    return int(max(numpy_peak - base, 0) + _torch_cpu_peak(prof))
