"""Resident memory of a 64-core SimulatedChip with every core programmed (target < 1.5 GB).

Reports VmRSS (current) and VmHWM (peak) from /proc/self/status and ru_maxrss, after
construction, after programming all cores and after one full-chip four-phase MVM of batch 256
(which adds the per-thread work buffers). Run it in a fresh process
(``python -m benchmarks memory``): the figures include the interpreter and numpy (~40 MB).
"""

from __future__ import annotations

import resource

import numpy as np

from drivers.sim.chip import SimulatedChip


def _status_mb() -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = float(value.split()[0]) / 1024.0
    except OSError:
        pass
    out["ru_maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return out


def run() -> dict[str, float]:
    before = _status_mb()
    chip = SimulatedChip(rng=np.random.default_rng(1), n_cores=64)
    built = _status_mb()
    rng = np.random.default_rng(0)
    for core in range(64):
        chip.set_conductances_us(core, rng.uniform(0.0, 8.0, (256, 256, 4)).astype(np.float32))
    programmed = _status_mb()
    x = rng.integers(-127, 128, (64, 256, 256)).astype(np.int8)
    chip.mvm_raw(np.arange(64), x, 4)
    chip.mvm_raw(np.arange(64), x, 1)
    after_mvm = _status_mb()
    return {
        "rss_start_mb": before.get("VmRSS", float("nan")),
        "rss_built_mb": built.get("VmRSS", float("nan")),
        "rss_programmed_mb": programmed.get("VmRSS", float("nan")),
        "rss_after_mvm_mb": after_mvm.get("VmRSS", float("nan")),
        "peak_rss_mb": after_mvm.get("VmHWM", after_mvm["ru_maxrss"]),
        "ru_maxrss_mb": after_mvm["ru_maxrss"],
        "target_mb": 1536.0,
    }
