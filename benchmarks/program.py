"""Whole-chip program-and-verify: 64 cores, TDP, random weights, on ``mockchip://?seed=1``.

Random uniform weights in [−1, 1] with 30 % zeros, one matrix per core, the published settings
(5 counts, ≤ 30 iterations [LG Methods]), automatic Gmax (160 counts lowered by the 100 µA
line-current limit), 8 cores per group. Figures: wall time (target ≤ 120 s on the 2-core
development machine), iterations used (max and mean over cores), pulses, the chip time the
simulator's virtual clock accounted for (board.status().uptime_s), and the converged fraction.
"""

from __future__ import annotations

import time

import numpy as np

from drivers.board import Board
from procedures.base import Stop
from procedures.program_verify import ProgramVerify

CORES = 64


def run() -> dict[str, float]:
    rng = np.random.default_rng(0)
    weights = rng.uniform(-1.0, 1.0, (CORES, 256, 256))
    weights[rng.random(weights.shape) < 0.3] = 0.0
    procedure = ProgramVerify(weights=weights, cores=list(range(CORES)), mode="tdp")
    with Board(f"mockchip://?seed=1&cores={CORES}") as board:
        uptime0 = board.status().uptime_s
        started = time.perf_counter()
        records = list(procedure.run(board))
        wall_s = time.perf_counter() - started
        chip_s = board.status().uptime_s - uptime0
    stop = records[-1]
    assert isinstance(stop, Stop) and stop.status == "success", stop
    cores = stop.results["cores"].values()
    iterations = [c["iterations"] for c in cores]
    return {
        "wall_s": wall_s,
        "target_wall_s": 120.0,
        "chip_time_s": chip_s,
        "iterations_max": float(max(iterations)),
        "iterations_mean": float(np.mean(iterations)),
        "pulses": float(sum(c["pulses"] for c in cores)),
        "converged_fraction_mean": float(np.mean([c["converged_fraction"] for c in cores])),
        "yield_fraction_mean": float(np.mean([c["yield_fraction"] for c in cores])),
        "g_max_counts_mean": float(np.mean([c["g_max_counts"] for c in cores])),
    }
