"""Full-chip noisy MVM throughput against a plain float32 matmul of the same shapes.

64 cores programmed with ``set_conductances_us`` (random ODP weights, 30 % zeros, Gmax 8 µS),
clock advanced by t0 = 200 s, batch 256 int8 inputs per core. The baseline is numpy's
``(64, 256, 256) @ (64, 256, 256)`` in float32, measured in the same run. Figures are the best
of ``repeats`` timings; ``ratio`` = baseline time / MVM time (1.0 = as fast as the matmul).
"""

from __future__ import annotations

import numpy as np

from benchmarks._timing import best_single_s
from drivers.sim.chip import SimulatedChip

CORES, BATCH = 64, 256


def run(repeats: int = 7) -> dict[str, float]:
    rng = np.random.default_rng(0)
    chip = SimulatedChip(rng=np.random.default_rng(1), n_cores=CORES)
    for core in range(CORES):
        w = rng.uniform(-1.0, 1.0, (256, 256)).astype(np.float32)
        w[rng.random((256, 256)) < 0.3] = 0.0
        g = np.zeros((256, 256, 4), np.float32)
        g[..., 0] = np.maximum(w, 0.0) * 8.0
        g[..., 2] = np.maximum(-w, 0.0) * 8.0
        chip.set_conductances_us(core, g)
    chip.clock.advance(200.0)
    cores = np.arange(CORES)
    x = rng.integers(-127, 128, (CORES, BATCH, 256)).astype(np.int8)
    a = rng.standard_normal((CORES, 256, 256), dtype=np.float32)
    b = rng.standard_normal((CORES, 256, 256), dtype=np.float32)

    baseline = best_single_s(lambda: a @ b, repeats)
    one = best_single_s(lambda: chip.mvm_raw(cores, x, 1), repeats)
    four = best_single_s(lambda: chip.mvm_raw(cores, x, 4), repeats)
    baseline = min(baseline, best_single_s(lambda: a @ b, repeats))
    return {
        "matmul_ms": baseline * 1e3,
        "mvm_1phase_ms": one * 1e3,
        "mvm_4phase_ms": four * 1e3,
        "ratio_1phase": baseline / one,
        "ratio_4phase": baseline / four,
        "target_ratio_1phase": 0.25,
        "target_ratio_4phase": 0.15,
    }
