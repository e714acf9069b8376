"""Imported by the kill tests' forkserver (:data:`tests.reliability.forked.PRELOAD`): a few
operations on a one-core simulated chip, so that the compiled simulator kernels are loaded
(numba's target set up, the cached machine code read) once in the forkserver instead of in
every forked command (~0.35 s each; the kill tests fork ~150 commands).

Nothing here may leave a thread behind: a forked child gets only the thread that forked it,
so a worker pool made here would be a dead pool in every command. One core and a small batch
run in the calling thread (the simulator splits work over its threads by core and batch size);
the check below fails the forkserver, loudly, if that ever changes.
"""

from __future__ import annotations

import threading

import numpy as np

from drivers.board import Board


def warm_up() -> None:
    """Pulses, verify reads and MVMs (one- and four-phase, raw and through the LDPU) on core 0
    of a one-core simulated chip."""
    rng = np.random.default_rng(0)
    inputs = rng.integers(-127, 128, (8, 256))
    rows, cols = rng.integers(0, 256, (2, 64))
    with Board("mockchip://?seed=1&cores=1") as board:
        board.apply_pulses(0, rows, cols, rng.integers(0, 4, 64), "set", 300, 1000)
        board.verify_read(0, rows, cols, np.zeros(64, np.int64))
        for mode in (1, 4):
            board.mvm(0, inputs, mode=mode)
            board.mvm(0, inputs, mode=mode, output="ldpu")
    threads = [t.name for t in threading.enumerate()]
    assert threads == [threading.current_thread().name], f"warm-up left threads: {threads}"


warm_up()
