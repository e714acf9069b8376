"""Link soak (issue 8): MVMs (batch 1, one core, 4-phase) through ``socket://`` to the simulator
server with byte corruption 1e-4, against a clean-link run of the same seed.

Reports what the host saw (the server's fault counters live in its child process): requests,
retries, corrupted replies, CRC NAKs (the board received a corrupted request) and timeouts
(a header or sync word was hit, so the frame was not recognised). ``detected`` is their sum;
``undetected`` counts results that differ from the clean run (must be 0); ``failed`` counts MVMs
that raised after the retries were spent. ``throughput_ratio`` is clean time / faulty time.

``python -m benchmarks soak`` runs ``CHIPCTL_SOAK_MVMS`` MVMs (default 1,000,000).
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Iterator

import numpy as np

from drivers.board import Board
from drivers.errors import DriverError
from drivers.sim.server import spawned

CLEAN = "seed=1&cores=1"
FAULTY = "seed=1&cores=1&corrupt=1e-4&fault_seed=7"
INPUT_SEED = 11
CHUNK = 4096
TIMEOUT_S = 0.25
"""Per-attempt reply timeout: replies on localhost take well under a millisecond, and every
recognisable-frame loss (a hit sync word or header) costs one timeout."""
RETRIES = 5


def _inputs(n_mvms: int) -> Iterator[np.ndarray]:
    """The same input vectors for both runs, generated in chunks."""
    rng = np.random.default_rng(INPUT_SEED)
    left = n_mvms
    while left:
        size = min(CHUNK, left)
        yield from rng.integers(-127, 128, size=(size, 256), dtype=np.int8)
        left -= size


def _program(board: Board) -> None:
    """Give the core non-trivial conductances (identically in both runs)."""
    rng = np.random.default_rng(INPUT_SEED + 1)
    n = 2048
    rows, cols = rng.integers(0, 256, n), rng.integers(0, 256, n)
    devices = rng.integers(0, 4, n)
    board.apply_pulses(0, rows, cols, devices, "set", 300, 1000)


def _soak(query: str, n_mvms: int) -> tuple[np.ndarray, np.ndarray, dict[str, int], float]:
    """Per-MVM result digests, a mask of failed MVMs, the link counters and the wall time."""
    digests = np.zeros(n_mvms, np.uint64)
    failed = np.zeros(n_mvms, bool)
    with spawned(query) as url, Board(url, timeout_s=TIMEOUT_S, retries=RETRIES) as board:
        _program(board)
        start = time.perf_counter()
        for i, x in enumerate(_inputs(n_mvms)):
            try:
                counts = board.mvm(0, x, mode=4)
            except DriverError:
                failed[i] = True
                continue
            pos = zlib.crc32(counts.positive.tobytes())
            neg = zlib.crc32(counts.negative.tobytes())
            digests[i] = (pos << 32) | neg
        elapsed = time.perf_counter() - start
        stats = board.link.stats.as_dict()
    return digests, failed, stats, elapsed


def run(n_mvms: int = 1_000_000) -> dict:
    clean, clean_failed, clean_stats, clean_s = _soak(CLEAN, n_mvms)
    if clean_failed.any() or clean_stats["retries"]:
        raise RuntimeError(f"the clean link is not clean: {clean_stats}")
    faulty, failed, stats, faulty_s = _soak(FAULTY, n_mvms)
    ok = ~failed
    detected = stats["corrupt_replies"] + stats["crc_naks"] + stats["timeouts"]
    return {
        "n_mvms": n_mvms,
        "corrupt_rate": 1e-4,
        "requests": stats["requests"],
        "frames_corrupted": detected,
        "detected": detected,
        "corrupt_replies": stats["corrupt_replies"],
        "crc_naks": stats["crc_naks"],
        "timeouts": stats["timeouts"],
        "retried": stats["retries"],
        "garbage_bytes": stats["garbage_bytes"],
        "failed": int(failed.sum()),
        "undetected": int(np.count_nonzero(faulty[ok] != clean[ok])),
        "distinct_results": int(np.unique(clean).size),
        "clean_mvm_per_s": round(n_mvms / clean_s, 1),
        "faulty_mvm_per_s": round(n_mvms / faulty_s, 1),
        "throughput_ratio": round(clean_s / faulty_s, 3),
    }


def run_from_env() -> dict:
    """What ``python -m benchmarks soak`` runs: ``CHIPCTL_SOAK_MVMS`` MVMs."""
    return run(int(os.environ.get("CHIPCTL_SOAK_MVMS", "1000000")))
