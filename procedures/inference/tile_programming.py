"""Programming a deployed network's tiles: replication, Gmax per core, program-and-verify.

[LG Methods p.9; chip.md §2d; DESIGN.md "Inference executor"].

**Programming.** Each tile (``procedures.inference.mapping``) is programmed by
program-and-verify (:mod:`procedures.programming.iterative`) with its own Wmax = max|W_tile| and
Gmax per core: 80 (ODP) or 160 (TDP) counts, lowered so no bit-line current exceeds 100 µA at
full-scale inputs in the chosen MVM mode
(:func:`~procedures.programming.targets.line_limited_g_max`). Cores are programmed in lockstep
groups, optionally refined by GDP (:mod:`procedures.programming.gdp`).

**Replication** (ours, on by default). A tile narrower than half a core is repeated
r = ⌊256/cols⌋ times side by side and its input vector with it; the LDPU divides by r (inside
the calibrated gain). The signal grows r-fold, programming errors of the copies average out
(÷√r) and the output-referred read noise and ADC errors shrink relative to the signal. Gmax is
then set by the line-current limit for the replicated matrix. Costs nothing: same cores, same
MVMs. (A first layer of 5 inputs had a 27 % output error without it.)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from drivers.errors import LimitError
from procedures.inference.deployment import Deployment, TileState
from procedures.inference.mapping import CORE_COLS
from procedures.programming.gdp import GdpSettings, GdpState, gdp_refine
from procedures.programming.iterative import (
    CoreProgram,
    IterationStats,
    ProgramSettings,
    program_group,
)
from procedures.programming.targets import G_MAX_ODP_COUNTS, G_MAX_TDP_COUNTS, line_limited_g_max

LINE_CURRENT_LIMIT_UA = 100.0
"""Bit-line current limit of the row ADC [KA §III-D; chip.md §1.4]."""


def program(
    deployment: Deployment,
    mode: str = "tdp",
    settings: ProgramSettings | None = None,
    *,
    group_size: int = 8,
    cores: Sequence[int] | None = None,
    gdp: GdpSettings | None = None,
    seed: int = 0,
) -> Iterator[tuple[list[int], IterationStats]]:
    """Program the tiles (all, or those on ``cores``) in lockstep groups; yields (group
    cores, stats) after every iteration (and every GDP step when ``gdp`` is given; their
    iteration numbers continue the program-and-verify ones).

    Sets each tile's replicas, Gmax, Wmax and programming figures."""
    if mode not in ("odp", "tdp"):
        raise LimitError(f"programming mode must be 'odp' or 'tdp', got {mode!r}")
    settings = settings or ProgramSettings()
    base = G_MAX_ODP_COUNTS if mode == "odp" else G_MAX_TDP_COUNTS
    read_mv = float(deployment.board.mvm_read_voltage_mv)
    order = list(deployment.tiles) if cores is None else [int(c) for c in cores]
    for start in range(0, len(order), group_size):
        jobs = []
        for core in order[start : start + group_size]:
            state = deployment.tiles[core]
            state.replicas, state.g_max = _replicas_and_g_max(deployment, state, base, read_mv)
            w = deployment.core_weights(core)
            state.w_max = float(np.abs(w).max()) or 1.0
            targets = (w * (state.g_max / state.w_max)).astype(np.float32)
            jobs.append(CoreProgram(core, targets, mode, settings))
        group = [job.core for job in jobs]
        last = None
        for last in program_group(deployment.board, jobs):
            yield group, last
        if gdp is not None and last is not None:
            states = [GdpState(job, gdp, seed) for job in jobs]
            for step in gdp_refine(deployment.board, states):
                yield (
                    group,
                    IterationStats(
                        last.iteration + step, last.fraction_converged, last.error_percentiles
                    ),
                )
        for job in jobs:
            result = job.result()
            state = deployment.tiles[job.core]
            state.converged_fraction = result.converged_fraction
            state.iterations = result.iterations
            state.pulses = result.pulses


def _replicas_and_g_max(
    deployment: Deployment, state: TileState, base: float, read_mv: float
) -> tuple[int, float]:
    """Most copies (≤ the replication limit) whose line-limited Gmax stays at or above
    ``min_g_max_fraction``·base, and that Gmax."""
    cols = state.tile.shape[1]
    copies = max(1, min(deployment.max_replicas, CORE_COLS // cols))
    for replicas in range(copies, 0, -1):
        state.replicas = replicas
        g_max = line_limited_g_max(
            deployment.core_weights(state.core),
            g_max_counts=base,
            mvm_mode=deployment.mvm_mode,
            line_current_limit_ua=LINE_CURRENT_LIMIT_UA,
            read_voltage_mv=read_mv,
        )
        if g_max >= deployment.min_g_max_fraction * base or replicas == 1:
            return replicas, g_max
    raise AssertionError("unreachable")
