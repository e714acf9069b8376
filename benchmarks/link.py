"""Link overhead: batch-256 MVMs through the board protocol vs calling the simulated chip directly.

Throughput ratios (direct time / link time); targets (issue 2): mockchip:// >= 0.8,
socket:// >= 0.6. The socket server runs in its own process (``python -m drivers.sim.server``),
as it would in use. ``python -m benchmarks link``
"""

from __future__ import annotations

import numpy as np

from benchmarks._timing import best_time_s
from drivers.board import Board
from drivers.sim.board_model import BoardOptions
from drivers.sim.server import spawned

BATCH = 256


def _measure(n_cores: int, mode: int, inputs: np.ndarray) -> dict[str, float]:
    cores = list(range(n_cores))
    chip = BoardOptions(seed=1, cores=n_cores).make_chip()
    core_ids = np.arange(n_cores)
    direct = best_time_s(lambda: chip.mvm_raw(core_ids, inputs, mode))
    with Board(f"mockchip://?seed=1&cores={n_cores}") as board:
        mock = best_time_s(lambda: board.mvm(cores, inputs, mode=mode))
    with spawned(f"seed=1&cores={n_cores}") as url, Board(url, timeout_s=30) as remote:
        tcp = best_time_s(lambda: remote.mvm(cores, inputs, mode=mode))
    tag = f"{n_cores}core_{mode}phase"
    return {
        f"direct_ms_{tag}": round(direct * 1e3, 3),
        f"mockchip_ratio_{tag}": round(direct / mock, 3),
        f"socket_ratio_{tag}": round(direct / tcp, 3),
    }


def run() -> dict[str, float]:
    figures: dict[str, float] = {}
    rng = np.random.default_rng(0)
    for n_cores in (1, 8):
        inputs = rng.integers(-127, 128, size=(n_cores, BATCH, 256)).astype(np.int8)
        for mode in (1, 4):
            figures.update(_measure(n_cores, mode, inputs))
    figures["target_mockchip_ratio"] = 0.8
    figures["target_socket_ratio"] = 0.6
    return figures
