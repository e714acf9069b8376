"""Iterative program-and-verify of PCM conductances on one core, over the board protocol.

The published sequence [LG Methods p.7-8; chip.md §2a]: (1) RESET all four devices of every cell
(700 µA, 125 ns); (2) SET the device that carries the weight's sign (125 µA, 250 ns; device G1+
for positive weights, G1− for negative ones: one-device programming, ODP); (3) read each SET
level; (4) iterate 125 ns partial pulses on that device, the next amplitude updated in proportion
to (read − target) (Papandreou 2011), until |error| < 5 ADC counts or 30 iterations.

A partial pulse melts the device and quenches it into a state whose conductance falls as the
amplitude rises, so a device that reads too high gets a larger amplitude next time. The start
amplitude interpolates between the ends of the melt range using the device's own SET level, and
the loop gain is that same slope; both ends are parameters, since they are a property of the
devices on a given chip.

Vectorised: every device of the core that needs pulses gets one per iteration, in one PULSES
frame, followed by one VERIFY_READ frame. Two-device programming, records and the runner
integration come with the procedure framework (issue 3); this module is its algorithmic core.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivers.board import Board
from drivers.errors import LimitError

ROWS = COLS = 256
DEVICES = 4
G_MAX_ODP_COUNTS = 80.0
"""Gmax for one-device programming: the 10th percentile of SET states on the least conductive
core [LG §IV]."""


@dataclass(frozen=True)
class ProgramSettings:
    """Pulse and verify parameters, defaults from [LG Methods p.7-8].

    Attributes:
        tolerance_counts: stop when |read − target| < this many ADC counts (5).
        max_iterations: at most this many partial pulses per device (30).
        reset_amplitude_ua, reset_width_ns: initial RESET pulse (700 µA, 125 ns).
        set_amplitude_ua, set_width_ns: SET pulse (125 µA, 250 ns).
        partial_width_ns: iterative pulse width (125 ns).
        melt_range_ua: amplitudes (low, high) between which a partial pulse sweeps the device
            from its SET level to RESET (chip characterisation; default 250-650 µA).
        min_amplitude_ua, max_amplitude_ua: the published iterative range (125-700 µA).
        gain_fraction: loop gain relative to the device's slope; < 1 damps overshoot.
    """

    tolerance_counts: float = 5.0
    max_iterations: int = 30
    reset_amplitude_ua: int = 700
    reset_width_ns: int = 125
    set_amplitude_ua: int = 125
    set_width_ns: int = 250
    partial_width_ns: int = 125
    melt_range_ua: tuple[float, float] = (250.0, 650.0)
    min_amplitude_ua: int = 125
    max_amplitude_ua: int = 700
    gain_fraction: float = 0.8

    def __post_init__(self) -> None:
        if not self.tolerance_counts > 0:
            raise LimitError(f"tolerance_counts must be > 0, got {self.tolerance_counts}")
        if not 1 <= self.max_iterations <= 1000:
            raise LimitError(f"max_iterations must be within 1..1000, got {self.max_iterations}")
        low, high = self.melt_range_ua
        if not self.min_amplitude_ua <= low < high <= self.max_amplitude_ua:
            raise LimitError(
                f"melt_range_ua {self.melt_range_ua} must lie within "
                f"[{self.min_amplitude_ua}, {self.max_amplitude_ua}] with low < high"
            )
        if not 0 < self.gain_fraction <= 2:
            raise LimitError(f"gain_fraction must be within (0, 2], got {self.gain_fraction}")


@dataclass(frozen=True, eq=False)
class ProgramResult:
    """Outcome of programming one core.

    Attributes:
        targets_counts: target conductance per device, (256, 256, 4), ADC counts.
        reads_counts: last verify read of each programmed device (NaN where not read).
        converged: devices within tolerance at the end (True where nothing was to be done).
        iterations: partial-pulse iterations used (the largest over devices).
        converged_per_iteration: fraction of programmed devices converged after each read.
        pulses: number of pulses sent.
    """

    targets_counts: np.ndarray
    reads_counts: np.ndarray
    converged: np.ndarray
    iterations: int
    converged_per_iteration: list[float]
    pulses: int

    @property
    def converged_fraction(self) -> float:
        return float(self.converged.mean())


def odp_targets(
    weights: np.ndarray, *, g_max_counts: float = G_MAX_ODP_COUNTS, w_max: float | None = None
) -> np.ndarray:
    """Per-device targets in ADC counts for one-device programming [LG Eq 1].

    G = |W|·Gmax/Wmax on G1+ (device 0) for W > 0 and on G1− (device 2) for W < 0; the other
    devices stay RESET (target 0).

    Args:
        weights: float weight matrix (256, 256): rows are outputs, columns inputs.
        g_max_counts: conductance of the largest weight, in counts (80 for ODP [LG §IV]).
        w_max: weight mapped to Gmax; default max|W|.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (ROWS, COLS):
        raise LimitError(f"weights must have shape ({ROWS}, {COLS}), got {w.shape}")
    if not np.all(np.isfinite(w)):
        raise LimitError("weights contain NaN or infinite values")
    if not 0 < g_max_counts <= 4095:
        raise LimitError(f"g_max_counts must be within (0, 4095], got {g_max_counts}")
    scale = float(np.max(np.abs(w))) if w_max is None else float(w_max)
    if not scale > 0 or not np.isfinite(scale):
        raise LimitError(
            "w_max must be positive and finite (all-zero weights have nothing to program)"
        )
    if np.max(np.abs(w)) > scale * (1 + 1e-12):
        raise LimitError(f"|W| reaches {np.max(np.abs(w)):.4g}, above w_max {scale:.4g}")
    targets = np.zeros((ROWS, COLS, DEVICES), np.float32)
    g = (np.abs(w) * (g_max_counts / scale)).astype(np.float32)
    targets[..., 0] = np.where(w > 0, g, 0)
    targets[..., 2] = np.where(w < 0, g, 0)
    return targets


def program_core(
    board: Board, core: int, targets_counts: np.ndarray, settings: ProgramSettings | None = None
) -> ProgramResult:
    """Program one core to per-device targets (ADC counts) by iterative program-and-verify."""
    settings = settings or ProgramSettings()
    targets = np.asarray(targets_counts, dtype=np.float32)
    if targets.shape != (ROWS, COLS, DEVICES):
        raise LimitError(
            f"targets must have shape ({ROWS}, {COLS}, {DEVICES}), got {targets.shape}"
        )
    if not np.all(np.isfinite(targets)) or targets.min() < 0 or targets.max() > 4095:
        raise LimitError("targets must be finite ADC counts within [0, 4095]")
    rows, cols, devices = np.indices(targets.shape).reshape(3, -1).astype(np.uint8)
    pulses = board.apply_pulses(
        core, rows, cols, devices, "reset", settings.reset_amplitude_ua, settings.reset_width_ns
    )
    flat_targets = targets.reshape(-1)
    active = np.flatnonzero(flat_targets >= settings.tolerance_counts)
    reads = np.full(flat_targets.size, np.nan, np.float32)
    converged = np.ones(flat_targets.size, bool)
    history: list[float] = []
    if active.size == 0:
        return ProgramResult(
            targets,
            reads.reshape(targets.shape),
            converged.reshape(targets.shape),
            0,
            history,
            pulses,
        )

    r, c, d = rows[active], cols[active], devices[active]
    pulses += board.apply_pulses(
        core, r, c, d, "set", settings.set_amplitude_ua, settings.set_width_ns
    )
    g_set = board.verify_read(core, r, c, d).astype(np.float32)
    target = flat_targets[active]
    low, high = settings.melt_range_ua
    slope = (high - low) / np.maximum(g_set, 1.0)  # µA per count, the device's own
    fraction = np.clip(target / np.maximum(g_set, 1.0), 0.0, 1.0)
    amplitude = high - fraction * (high - low)
    read = g_set
    # Targets at or above the SET level cannot be reached by partial pulses: keep them SET.
    todo = np.abs(read - target) >= settings.tolerance_counts
    todo &= target < g_set - settings.tolerance_counts
    history.append(float(1 - todo.mean()))
    iterations = 0
    while todo.any() and iterations < settings.max_iterations:
        iterations += 1
        idx = np.flatnonzero(todo)
        amp = np.rint(np.clip(amplitude[idx], settings.min_amplitude_ua, settings.max_amplitude_ua))
        pulses += board.apply_pulses(
            core, r[idx], c[idx], d[idx], "partial", amp, settings.partial_width_ns
        )
        new_read = board.verify_read(core, r[idx], c[idx], d[idx]).astype(np.float32)
        read[idx] = new_read
        error = new_read - target[idx]
        amplitude[idx] = amp + settings.gain_fraction * slope[idx] * error
        done = np.abs(error) < settings.tolerance_counts
        todo[idx[done]] = False
        history.append(float(1 - todo.mean()))
    reads[active] = read
    converged[active] = np.abs(read - target) < settings.tolerance_counts
    return ProgramResult(
        targets_counts=targets,
        reads_counts=reads.reshape(targets.shape),
        converged=converged.reshape(targets.shape),
        iterations=iterations,
        converged_per_iteration=history,
        pulses=pulses,
    )
