"""Link soak (issue 8): MVMs (batch 1, one core, 4-phase) through ``socket://`` to the simulator
server with byte corruption 1e-4, against a clean-link run of the same seed.

The clean and the faulty board (two simulator servers in child processes, same chip seed) get
the same inputs chunk by chunk, so every result is compared as soon as it is made and a run
stopped early still has figures: a progress line (JSON, the same figures so far) goes to stderr
every ``CHIPCTL_SOAK_PROGRESS`` MVMs (default 50,000).

Figures: ``frames_corrupted`` and ``bytes_corrupted`` are what the faulty server's injector did
(requests it received damaged plus replies it sent damaged; read from the server process).
What the host saw: ``corrupt_replies``, ``crc_naks`` (the board received a corrupted request)
and ``timeouts`` (a header or sync word was hit, so the frame was not recognised); ``detected``
is their sum and ``retried`` the retries they caused. ``undetected`` counts results that differ
from the clean run (must be 0); ``failed`` counts MVMs that raised after the retries were
spent. ``throughput_ratio`` is clean time / faulty time (each timed over its own MVMs only).
``clean_link_retries`` counts reply timeouts on the clean link (a loaded machine can exceed the
0.25 s per-attempt timeout; the board answers a repeated request from its reply cache, so
results are unaffected); a corrupt reply on the clean link is an error.

``python -m benchmarks soak`` runs ``CHIPCTL_SOAK_MVMS`` MVMs (default 1,000,000).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import numpy as np

from drivers.board import Board
from drivers.errors import DriverError

CLEAN = "seed=1&cores=1"
FAULTY = "seed=1&cores=1&corrupt=1e-4&fault_seed=7"
CORRUPT_RATE = 1e-4
INPUT_SEED = 11
CHUNK = 4096
TIMEOUT_S = 0.25
"""Per-attempt reply timeout: replies on localhost take well under a millisecond, and every
recognisable-frame loss (a hit sync word or header) costs one timeout."""
RETRIES = 5
PROGRESS = 50_000


def _inputs(n_mvms: int) -> Iterator[np.ndarray]:
    """The same input vectors for both boards, in chunks of at most ``CHUNK``."""
    rng = np.random.default_rng(INPUT_SEED)
    left = n_mvms
    while left:
        size = min(CHUNK, left)
        yield rng.integers(-127, 128, size=(size, 256), dtype=np.int8)
        left -= size


def _program(board: Board) -> None:
    """Give the core non-trivial conductances (identically on both boards)."""
    rng = np.random.default_rng(INPUT_SEED + 1)
    n = 2048
    rows, cols = rng.integers(0, 256, n), rng.integers(0, 256, n)
    devices = rng.integers(0, 4, n)
    board.apply_pulses(0, rows, cols, devices, "set", 300, 1000)


def _serve(query: str) -> None:
    """Child process: a simulator server that prints its fault counters (one JSON line) on
    SIGUSR1 and stops on SIGTERM."""
    from drivers.sim.board_model import BoardOptions
    from drivers.sim.server import SimServer
    from drivers.sim.warm import warm_up

    # compiled kernels loaded before the URL is announced: with a cold numba cache the first
    # MVM took seconds, and the clean link's 0.25 s timeouts failed it
    warm_up()
    server = SimServer(BoardOptions.from_query(query))

    def counters(signum: int, frame: FrameType | None) -> None:
        faults = server.faults
        values = dataclasses.asdict(faults.counters) if faults is not None else {}
        print(json.dumps(values), flush=True)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGUSR1, counters)
    signal.signal(signal.SIGTERM, stop)
    print(f"simulated board on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


class _Server:
    """A ``_serve`` child process; :meth:`counters` asks it for its fault counters."""

    def __init__(self, query: str) -> None:
        code = f"from benchmarks.soak import _serve; _serve({query!r})"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if " on socket://" not in line:
            self.process.kill()
            raise RuntimeError(f"simulator server did not start: {line!r}")
        self.url = line.rsplit(" on ", 1)[1].strip()

    def counters(self) -> dict[str, int]:
        assert self.process.stdout is not None
        self.process.send_signal(signal.SIGUSR1)
        return dict(json.loads(self.process.stdout.readline()))

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@contextmanager
def _board(query: str) -> Iterator[tuple[_Server, Board]]:
    server = _Server(query)
    try:
        with Board(server.url, timeout_s=TIMEOUT_S, retries=RETRIES) as board:
            _program(board)
            yield server, board
    finally:
        server.close()


def _digests(board: Board, chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-MVM result digests, a mask of failed MVMs and the wall time for one chunk."""
    digests = np.zeros(len(chunk), np.uint64)
    failed = np.zeros(len(chunk), bool)
    start = time.perf_counter()
    for i, x in enumerate(chunk):
        try:
            counts = board.mvm(0, x, mode=4)
        except DriverError:
            failed[i] = True
            continue
        pos = zlib.crc32(counts.positive.tobytes())
        neg = zlib.crc32(counts.negative.tobytes())
        digests[i] = (pos << 32) | neg
    return digests, failed, time.perf_counter() - start


def _figures(
    done: int,
    clean: np.ndarray,
    faulty: np.ndarray,
    failed: np.ndarray,
    stats: dict[str, int],
    injected: dict[str, int],
    clean_s: float,
    faulty_s: float,
    clean_retries: int,
) -> dict:
    ok = ~failed[:done]
    detected = stats["corrupt_replies"] + stats["crc_naks"] + stats["timeouts"]
    return {
        "n_mvms": done,
        "corrupt_rate": CORRUPT_RATE,
        "requests": stats["requests"],
        "frames_corrupted": injected.get("frames_corrupted_in", 0)
        + injected.get("frames_corrupted_out", 0),
        "frames_corrupted_in": injected.get("frames_corrupted_in", 0),
        "frames_corrupted_out": injected.get("frames_corrupted_out", 0),
        "bytes_corrupted": injected.get("bytes_corrupted", 0),
        "detected": detected,
        "corrupt_replies": stats["corrupt_replies"],
        "crc_naks": stats["crc_naks"],
        "timeouts": stats["timeouts"],
        "retried": stats["retries"],
        "garbage_bytes": stats["garbage_bytes"],
        "failed": int(failed[:done].sum()),
        "undetected": int(np.count_nonzero(faulty[:done][ok] != clean[:done][ok])),
        "distinct_results": int(np.unique(clean[:done]).size),
        "clean_mvm_per_s": round(done / clean_s, 1),
        "faulty_mvm_per_s": round(done / faulty_s, 1),
        "throughput_ratio": round(clean_s / faulty_s, 3),
        "clean_link_retries": clean_retries,
    }


def run(n_mvms: int = 1_000_000, progress: int = PROGRESS) -> dict:
    clean = np.zeros(n_mvms, np.uint64)
    faulty = np.zeros(n_mvms, np.uint64)
    failed = np.zeros(n_mvms, bool)
    clean_s = faulty_s = 0.0
    done = 0
    next_report = progress
    with _board(CLEAN) as (_, clean_board), _board(FAULTY) as (faulty_server, faulty_board):
        for chunk in _inputs(n_mvms):
            end = done + len(chunk)
            clean[done:end], clean_failed, seconds = _digests(clean_board, chunk)
            clean_s += seconds
            clean_stats = clean_board.link.stats
            if clean_failed.any() or clean_stats.corrupt_replies or clean_stats.crc_naks:
                raise RuntimeError(f"the clean link is not clean: {clean_stats}")
            faulty[done:end], failed[done:end], seconds = _digests(faulty_board, chunk)
            faulty_s += seconds
            done = end
            if done >= next_report and done < n_mvms:
                next_report += progress
                figures = _figures(
                    done,
                    clean,
                    faulty,
                    failed,
                    faulty_board.link.stats.as_dict(),
                    faulty_server.counters(),
                    clean_s,
                    faulty_s,
                    clean_board.link.stats.retries,
                )
                print(json.dumps({"progress": True, **figures}), file=sys.stderr, flush=True)
        return _figures(
            done,
            clean,
            faulty,
            failed,
            faulty_board.link.stats.as_dict(),
            faulty_server.counters(),
            clean_s,
            faulty_s,
            clean_board.link.stats.retries,
        )


def run_from_env() -> dict:
    """What ``python -m benchmarks soak`` runs: ``CHIPCTL_SOAK_MVMS`` MVMs."""
    return run(
        int(os.environ.get("CHIPCTL_SOAK_MVMS", "1000000")),
        int(os.environ.get("CHIPCTL_SOAK_PROGRESS", str(PROGRESS))),
    )
