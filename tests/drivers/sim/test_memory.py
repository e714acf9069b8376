"""The simulator keeps freed memory in the process (drivers.sim.memory), and can be told not to."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from drivers.sim.memory import MALLOC_ENV

PROBE = """
import resource, numpy as np
from drivers.sim.memory import keep_freed_memory
from drivers.sim.chip import SimulatedChip
chip = SimulatedChip(rng=np.random.default_rng(0), n_cores=2, kernel="numpy")
print(keep_freed_memory())
for core in (0, 1):
    chip.set_conductances_us(core, np.full((256, 256, 4), 5.0))
x = np.random.default_rng(1).integers(-127, 128, (2, 1000, 256)).astype(np.int8)
chip.mvm_raw(np.array([0, 1]), x, 4)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    chip.mvm_raw(np.array([0, 1]), x, 4)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _probe(env_value: str | None) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if k != MALLOC_ENV}
    if env_value is not None:
        env[MALLOC_ENV] = env_value
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_a_simulated_chip_keeps_freed_memory_unless_told_not_to() -> None:
    """Ten four-phase MVMs of batch 1000 on two cores (two worker threads) after a first one:
    with the thresholds raised their arrays reuse memory the process already has; with
    glibc's own settings, many of them are fresh mappings whose pages fault in again."""
    kept, faults_kept = _probe(None)
    default, faults_default = _probe("default")
    assert (kept, default) == ("True", "False")
    assert faults_kept * 10 < faults_default
