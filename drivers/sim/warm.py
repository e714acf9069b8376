"""Load the simulator's compiled kernels before anything is timed.

The first MVM of a process compiles the simulator's numba functions, or reads them from
numba's cache: seconds with a cold cache, about 0.35 s with a warm one. A server whose clients
time out after 0.25 s (the link soak) or a forkserver that forks many commands calls
:func:`warm_up` first.
"""

from __future__ import annotations

import numpy as np

from drivers.board import Board


def warm_up() -> None:
    """Pulses, verify reads and MVMs (one- and four-phase, raw and through the LDPU) on core 0
    of a one-core simulated chip. One core and a small batch run in the calling thread: no
    worker thread is left behind."""
    rng = np.random.default_rng(0)
    inputs = rng.integers(-127, 128, (8, 256))
    rows, cols = rng.integers(0, 256, (2, 64))
    with Board("mockchip://?seed=1&cores=1") as board:
        board.apply_pulses(0, rows, cols, rng.integers(0, 4, 64), "set", 300, 1000)
        board.verify_read(0, rows, cols, np.zeros(64, np.int64))
        for mode in (1, 4):
            board.mvm(0, inputs, mode=mode)
            board.mvm(0, inputs, mode=mode, output="ldpu")
        board.mvm(0, np.abs(inputs), mode=4, output="ldpu")  # no x− conversions: its own pass
