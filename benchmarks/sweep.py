"""Sweep on a local Dask cluster vs the same points run serially in one process.

A small MVM study (``SWEEP_BENCH_POINTS`` chip instances, default 8; TDP, 2 cores each, drift
25 s / 1 h / 1 d, no compensation and GDC) is run twice each way, alternating: serially with
:func:`chipctl.sweep.run_point` in this process, and with :func:`chipctl.sweep.run_sweep` on a
new ``LocalCluster`` of ``SWEEP_BENCH_WORKERS`` processes (default: one per CPU core). Figures
(best of the two rounds): ``speedup`` = serial / cluster wall time including the cluster's start
and stop and the result file; ``speedup_running`` the same with an already running cluster;
``ideal_speedup`` = min(workers, points).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from chipctl.sweep import dask_client, parse_spec, run_point, run_sweep

SPEC = """
name = "bench"
[grid]
seeds = "1-{n}"
mode = ["tdp"]
compensation = ["none", "gdc"]
drift = ["25s", "1h", "1d"]
[settings]
cores = 2
inputs = 1024
"""


def run(points: int = 8, workers: int | None = None, rounds: int = 2) -> dict[str, float]:
    """Serial vs cluster wall times for ``points`` points; see the module docstring."""
    workers = workers or os.cpu_count() or 1
    spec = parse_spec(SPEC.format(n=points))
    serial, cluster, running = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for k in range(rounds):
            started = time.perf_counter()
            for point in spec.points():
                run_point(point)
            serial.append(time.perf_counter() - started)
            started = time.perf_counter()
            report = run_sweep(spec, Path(folder) / f"cold{k}.h5", workers=workers)
            cluster.append(time.perf_counter() - started)
            assert report.points_ok == points, report.errors
            with dask_client(workers=workers) as client:
                client.submit(run_point, spec.points()[0], pure=False).result()  # warm workers
                started = time.perf_counter()
                run_sweep(spec, Path(folder) / f"warm{k}.h5", client=client)
                running.append(time.perf_counter() - started)
    return {
        "points": float(points),
        "workers": float(workers),
        "serial_s": min(serial),
        "cluster_s": min(cluster),
        "cluster_running_s": min(running),
        "speedup": min(serial) / min(cluster),
        "speedup_running": min(serial) / min(running),
        "ideal_speedup": float(min(workers, points)),
    }


def run_from_env() -> dict[str, float]:
    """:func:`run` sized by SWEEP_BENCH_POINTS and SWEEP_BENCH_WORKERS."""
    workers = os.environ.get("SWEEP_BENCH_WORKERS")
    return run(
        points=int(os.environ.get("SWEEP_BENCH_POINTS", "8")),
        workers=int(workers) if workers else None,
    )
