"""Keep freed memory in the process for the simulator's large, short-lived arrays (glibc only).

Every simulated MVM makes and drops arrays of megabytes: GEMM outputs, counts, frames, the
host's float64 intermediates. glibc hands blocks above its mmap threshold straight back to the
kernel when they are freed and trims the heap's free top above its trim threshold, so the next
array of that size is a fresh mapping whose every 4 kB page faults on first touch. Measured on
the shipped LSTM (1000 samples, 2 cores, a virtual machine): 2,756 page faults and 13.7 ms of
system time per forward pass; with the thresholds below, 40 faults and 2.3 ms, and the pass
went from 118 to 88 ms.

The setting is process-wide and only ever raises the two thresholds (memory freed stays
available to the process instead of going back to the system: its resident size stays near
its peak). It is made once, when the first simulated chip is made; ``CHIPCTL_SIM_MALLOC=default``
leaves glibc's own settings. A no-op on other C libraries.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

MALLOC_ENV = "CHIPCTL_SIM_MALLOC"
"""Environment variable: ``default`` leaves the C library's allocator settings as they are."""

MMAP_THRESHOLD_BYTES = 64 << 20
"""Blocks below this come from the heap (glibc's own default grows to at most 32 MiB)."""

TRIM_THRESHOLD_BYTES = 256 << 20
"""Free memory at the heap's top kept before it is returned to the system."""

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3


@functools.cache
def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process (module docstring; two
    threads racing here both set the same values, which is harmless).

    Returns whether the thresholds are set (False: another C library, or the environment
    variable says ``default``)."""
    if os.environ.get(MALLOC_ENV, "").strip().lower() == "default":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl without mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; setting either also switches off glibc's dynamic threshold
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
