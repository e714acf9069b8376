"""Full-chip noisy MVM throughput against a plain float32 matmul of the same shapes.

64 cores programmed with ``set_conductances_us`` (random ODP weights, 30 % zeros, Gmax 8 µS),
clock advanced by t0 = 200 s, batch 256 int8 inputs per core on every column (dense: nothing
to skip). The baseline is numpy's ``(64, 256, 256) @ (64, 256, 256)`` in float32, measured in
the same run, the faster of two ways: numpy as it comes (OpenBLAS threads) and the stack split
over the simulator's worker threads with OpenBLAS at one thread (what the kernels do; on a busy
machine OpenBLAS's own threads slow down many times, which would flatter the ratios).

Figures are the best single call of at least ``repeats`` and 0.5 s of calls; ``ratio`` =
baseline time / MVM time (1.0 = as fast as the matmul), for each kernel
(``drivers.sim.mvm_choice.make_kernel``); ``cpu_ratio`` the same with the process CPU time of a
call instead of its wall time (steadier on a shared machine; on an idle two-core machine the
wall ratio approaches it, the work being split evenly over the two threads). Issue 16
targets: ≥ 0.28 one-phase, ≥ 0.15 four-phase.

``compile_s``: the compiled kernel's first call in a fresh process with an empty numba cache
(a subprocess with its own ``NUMBA_CACHE_DIR``); ``cached_load_s``: its first call in a fresh
process once the cache is written (what every later process pays).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import numpy as np

from benchmarks._timing import best_single_cpu_s, best_single_s
from drivers.sim.chip import SimulatedChip
from drivers.sim.threads import run_in_threads

CORES, BATCH = 64, 256

_FIRST_CALL = """
import time, numpy as np
from drivers.sim.chip import SimulatedChip
chip = SimulatedChip(rng=np.random.default_rng(1), n_cores=1, kernel="numba")
x = np.ones((1, 4, 256), np.int8)
start = time.perf_counter()
chip.mvm_raw(np.array([0]), x, 1)
chip.mvm_raw(np.array([0]), x, 4)
print(time.perf_counter() - start)
"""


def first_call_s(cache_dir: str) -> float:
    """Seconds of the compiled kernel's first one- and four-phase calls in a fresh process."""
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    out = subprocess.run(
        [sys.executable, "-c", _FIRST_CALL], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def build_chip(kernel: str) -> SimulatedChip:
    rng = np.random.default_rng(0)
    chip = SimulatedChip(rng=np.random.default_rng(1), n_cores=CORES, kernel=kernel)
    for core in range(CORES):
        w = rng.uniform(-1.0, 1.0, (256, 256)).astype(np.float32)
        w[rng.random((256, 256)) < 0.3] = 0.0
        g = np.zeros((256, 256, 4), np.float32)
        g[..., 0] = np.maximum(w, 0.0) * 8.0
        g[..., 2] = np.maximum(-w, 0.0) * 8.0
        chip.set_conductances_us(core, g)
    chip.clock.advance(200.0)
    return chip


def run(repeats: int = 7) -> dict[str, float | str]:
    rng = np.random.default_rng(2)
    cores = np.arange(CORES)
    x = rng.integers(-127, 128, (CORES, BATCH, 256)).astype(np.int8)
    x[x == 0] = 1  # every column driven in every vector
    a = rng.standard_normal((CORES, 256, 256), dtype=np.float32)
    b = rng.standard_normal((CORES, 256, 256), dtype=np.float32)
    figures: dict[str, float | str] = {}
    with tempfile.TemporaryDirectory() as cache:
        figures["compile_s"] = first_call_s(cache)
        figures["cached_load_s"] = first_call_s(cache)
    figures["kernel_default"] = type(
        SimulatedChip(rng=np.random.default_rng(0), n_cores=1).kernel
    ).__name__
    out = np.empty_like(a)
    halves = [slice(0, CORES // 2), slice(CORES // 2, CORES)]

    def split_matmul() -> None:
        def work(g: int, part: slice) -> int:
            np.matmul(a[part], b[part], out=out[part])
            return 0

        run_in_threads(work, halves, 2)

    def matmul_s() -> float:
        return min(best_single_s(lambda: a @ b, repeats), best_single_s(split_matmul, repeats))

    baseline = matmul_s()
    baseline_cpu = best_single_cpu_s(split_matmul, repeats)
    for kernel in ("numba", "numpy"):
        chip = build_chip(kernel)
        for mode in (1, 4):
            call = lambda: chip.mvm_raw(cores, x, mode)  # noqa: B023, E731
            wall = best_single_s(call, repeats)
            cpu = best_single_cpu_s(call, repeats)
            figures[f"{kernel}_mvm_{mode}phase_ms"] = wall * 1e3
            figures[f"{kernel}_mvm_{mode}phase_cpu_ms"] = cpu * 1e3
        baseline = min(baseline, matmul_s())
        baseline_cpu = min(baseline_cpu, best_single_cpu_s(split_matmul, repeats))
    figures["matmul_ms"] = baseline * 1e3
    figures["matmul_cpu_ms"] = baseline_cpu * 1e3
    for kernel in ("numba", "numpy"):
        for mode in (1, 4):
            wall = float(figures[f"{kernel}_mvm_{mode}phase_ms"]) * 1e-3
            cpu = float(figures[f"{kernel}_mvm_{mode}phase_cpu_ms"]) * 1e-3
            figures[f"ratio_{mode}phase_{kernel}"] = baseline / wall
            figures[f"cpu_ratio_{mode}phase_{kernel}"] = baseline_cpu / cpu
    figures["target_ratio_1phase"] = 0.28
    figures["target_ratio_4phase"] = 0.15
    return figures
