"""Thread control of the simulator's MVM: the worker pool and OpenBLAS's own thread count.

The MVM kernel (:mod:`drivers.sim.mvm`) runs one single-threaded GEMM per core in each of its
worker threads, which beats OpenBLAS's own threading on 256×256 GEMMs and leaves no BLAS threads
spinning while the elementwise work runs. :class:`BlasThreads` sets OpenBLAS's thread count for
the duration of such a run; :func:`executor` is the process-wide worker pool.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, TypeVar

_EXECUTOR: ThreadPoolExecutor | None = None
_EXECUTOR_LOCK = threading.Lock()

T = TypeVar("T")


def executor(workers: int) -> ThreadPoolExecutor:
    """The shared worker pool, grown to at least ``workers`` threads."""
    global _EXECUTOR
    with _EXECUTOR_LOCK:
        if _EXECUTOR is None or _EXECUTOR._max_workers < workers:
            _EXECUTOR = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="simchip")
        return _EXECUTOR


def run_in_threads(work: Callable[[int, T], int], jobs: Sequence[T], workers: int) -> int:
    """Sum of ``work(g, job)`` over the non-empty ``jobs`` (g = the job's position).

    The first job runs in the calling thread, the others on the pool (the caller works instead
    of waiting: a pool thread takes 50–100 µs to wake here). OpenBLAS is held at one thread
    either way (its own threads, spinning between small GEMMs, only compete with the workers
    and the caller). Jobs that are falsy (empty lists) are skipped.
    """
    todo = [(g, job) for g, job in enumerate(jobs) if job]
    if not todo:
        return 0
    with BlasThreads(1):
        others = [executor(workers).submit(work, g, job) for g, job in todo[1:]]
        try:
            total = int(work(*todo[0]))
        except BaseException:
            wait(others)  # they write into the caller's arrays: never return before they end
            raise
        return total + sum(f.result() for f in others)


class BlasThreads:
    """Temporarily set OpenBLAS's thread count (numpy's bundled OpenBLAS, found via ctypes).

    A no-op where the library or the symbols are not found. Process-wide: the first of
    overlapping users (two threads running MVMs) saves the count and sets it, the last one
    restores it, so it can never be left at 1.
    """

    _lib: Any = None
    _searched = False

    @classmethod
    def _find(cls) -> Any:
        if not cls._searched:
            cls._searched = True
            try:
                import ctypes

                with open("/proc/self/maps") as maps:
                    paths = sorted({ln.split()[-1] for ln in maps if "openblas" in ln.lower()})
                for path in paths:
                    lib = ctypes.CDLL(path)
                    for prefix in ("scipy_openblas_", "openblas_"):
                        for suffix in ("64_", ""):
                            get = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
                            put = getattr(lib, f"{prefix}set_num_threads{suffix}", None)
                            if get is not None and put is not None:
                                cls._lib = (get, put)
                                return cls._lib
            except (OSError, IndexError):
                cls._lib = None
        return cls._lib

    _lock = threading.Lock()
    _users = 0
    _saved: int | None = None

    def __init__(self, n: int) -> None:
        self._n = n

    def __enter__(self) -> None:
        lib = self._find()
        if lib is None:
            return
        with BlasThreads._lock:
            if BlasThreads._users == 0:
                BlasThreads._saved = int(lib[0]())
                lib[1](self._n)
            BlasThreads._users += 1

    def __exit__(self, *exc: object) -> None:
        lib = self._find()
        if lib is None:
            return
        with BlasThreads._lock:
            BlasThreads._users -= 1
            if BlasThreads._users == 0 and BlasThreads._saved is not None:
                lib[1](BlasThreads._saved)
