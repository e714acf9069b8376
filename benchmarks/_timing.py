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


BEST_OF_S = 0.5
"""Seconds of calls that a best single time is taken over at least: a best of three calls of a
millisecond is mostly the machine's noise (the digits MLP's forward pass: 1.6–2.6 ms as a best
of three, 1.3 ms as a best of 400), and a fast call gets as many chances as a slow one."""
MAX_CALLS = 2000


def best_single_s(
    function: Callable[[], object], repeats: int, min_total_s: float = BEST_OF_S
) -> float:
    """Best wall time of single calls, after one warm-up call: at least ``repeats`` calls, and
    more until ``min_total_s`` has passed (at most :data:`MAX_CALLS`)."""
    return _best_single(function, repeats, min_total_s, time.perf_counter)


def best_single_cpu_s(
    function: Callable[[], object], repeats: int, min_total_s: float = BEST_OF_S
) -> float:
    """Best process CPU time (all threads) of single calls, after one warm-up (as
    :func:`best_single_s`).

    On a shared, busy machine wall times depend on what the others run; the CPU time a call
    uses does much less (as long as it does not spin waiting for its own threads)."""
    return _best_single(function, repeats, min_total_s, time.process_time)


def _best_single(
    function: Callable[[], object],
    repeats: int,
    min_total_s: float,
    clock: Callable[[], float],
) -> float:
    function()
    best = float("inf")
    calls = 0
    start = time.perf_counter()
    while calls < repeats or (time.perf_counter() - start < min_total_s and calls < MAX_CALLS):
        begin = clock()
        function()
        best = min(best, clock() - begin)
        calls += 1
    return best
