"""Shared timing helper for benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_time_s(
    function: Callable[[], object], *, repeat: int = 5, min_time_s: float = 0.2
) -> float:
    """Best per-call wall time over ``repeat`` rounds of at least ``min_time_s`` each."""
    function()  # warm up caches and lazy initialisation
    best = float("inf")
    for _ in range(repeat):
        calls = 0
        start = time.perf_counter()
        while True:
            function()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time_s:
                break
        best = min(best, elapsed / calls)
    return best


def best_single_s(function: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``repeats`` single calls, after one warm-up call."""
    return _best_single(function, repeats, time.perf_counter)


def best_single_cpu_s(function: Callable[[], object], repeats: int) -> float:
    """Best process CPU time (all threads) of ``repeats`` single calls, after one warm-up.

    On a shared, busy machine wall times depend on what the others run; the CPU time a call
    uses does much less (as long as it does not spin waiting for its own threads)."""
    return _best_single(function, repeats, time.process_time)


def _best_single(function: Callable[[], object], repeats: int, clock: Callable[[], float]) -> float:
    function()
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        function()
        best = min(best, clock() - start)
    return best
