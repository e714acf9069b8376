"""Programming a deployed network's tiles: replication, Gmax per core, program-and-verify.

[LG Methods p.9; chip.md §2d; DESIGN.md "Inference executor"].

**Programming.** Each tile (``procedures.inference.mapping``) is programmed by
program-and-verify (:mod:`procedures.programming.iterative`) with its own Wmax = max|W_tile| and
Gmax per core: 80 (ODP) or 160 (TDP) counts, lowered where the bit-line current would exceed
100 µA. The deployment's ``g_max_rule`` says at which inputs: ``"workload"`` (default) the
layer's own int8 inputs on calibration data, of which the ``g_max_quantile`` must fit
(:func:`~procedures.programming.gmax.workload_g_max`); ``"worst-case"`` full-scale inputs on
every column (:func:`~procedures.programming.targets.line_limited_g_max`). Cores are programmed
in lockstep groups, optionally refined by GDP (:mod:`procedures.programming.gdp`).
:func:`measure_saturation` then runs the same inputs through every core and records the
fraction that saturates a conversion.

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
from procedures.programming.gmax import saturated_fraction, workload_g_max
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
        weights = deployment.core_weights(state.core)
        state.g_max_worst_case = line_limited_g_max(
            weights,
            g_max_counts=base,
            mvm_mode=deployment.mvm_mode,
            line_current_limit_ua=LINE_CURRENT_LIMIT_UA,
            read_voltage_mv=read_mv,
        )
        g_max = state.g_max_worst_case
        if deployment.g_max_rule == "workload":
            g_max = workload_g_max(
                weights,
                workload_inputs(state),
                g_max_counts=base,
                mvm_mode=deployment.mvm_mode,
                quantile=deployment.g_max_quantile,
                line_current_limit_ua=LINE_CURRENT_LIMIT_UA,
                read_voltage_mv=read_mv,
            )
        if g_max >= deployment.min_g_max_fraction * base or replicas == 1:
            return replicas, g_max
    raise AssertionError("unreachable")


def workload_inputs(state: TileState) -> np.ndarray:
    """The core's int8 inputs on calibration data (n, 256): the layer's typical inputs
    (:func:`~procedures.inference.calibration.use_calibration_data`), one copy per replica."""
    if state.data_codes is None or not state.data_codes.shape[0]:
        raise LimitError(
            f"core {state.core}: the workload Gmax rule needs the layer's inputs on calibration "
            "data: call use_calibration_data(x) first, or use the worst-case rule"
        )
    codes = np.tile(state.data_codes, (1, state.replicas))
    x = np.zeros((codes.shape[0], CORE_COLS), np.int8)
    x[:, : codes.shape[1]] = codes
    return x


def measure_saturation(deployment: Deployment) -> int:
    """Run every core's calibration-data inputs through it and set each tile's
    ``saturated_fraction`` (inputs that saturate a conversion); returns the core-MVMs spent."""
    cores = list(deployment.tiles)
    batches = [workload_inputs(deployment.tiles[c]) for c in cores]
    lengths = [b.shape[0] for b in batches]
    x = np.zeros((len(cores), max(lengths), CORE_COLS), np.int8)
    for i, b in enumerate(batches):
        x[i, : b.shape[0]] = b  # zero padding drives no current
    fractions, spent = saturated_fraction(
        deployment.board, cores, x, deployment.mvm_mode, lengths=lengths
    )
    for core, fraction in zip(cores, fractions, strict=True):
        deployment.tiles[core].saturated_fraction = float(fraction)
    return spent
