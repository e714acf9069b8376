"""Iterative program-and-verify of PCM conductances on one core, over the board protocol.

The published sequence [LG Methods p.7-8; chip.md §2a]: (1) RESET all four devices of every cell
(700 µA, 125 ns); (2) SET the device that carries the weight's sign (125 µA, 250 ns; device G1+
for positive weights, G1− for negative ones: one-device programming, ODP); (3) read each SET
level; (4) iterate 125 ns partial pulses on that device, the next amplitude updated in proportion
to (read − target) (Papandreou 2011), until |error| < 5 ADC counts or 30 iterations.

After the RESET every device is read once: a device that still conducts (≥ the tolerance) is
stuck high, and its conductance is subtracted from what the cell's programmed device must carry
(on the opposite polarity if need be), so one stuck device does not cost a whole weight. If the
primary device (G1±) is stuck, its partner G2± is used.

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
    """Outcome of programming one core (all conductances in ADC counts).

    Attributes:
        cell_targets: signed target per cell, (256, 256): (g0 + g1) − (g2 + g3).
        device_targets: target per device after stuck-device compensation, (256, 256, 4).
        reset_reads: each device's read right after the RESET, (256, 256, 4).
        reads: last verify read of each device (the RESET read where not programmed).
        stuck_high: devices that still conducted after the RESET, (256, 256, 4).
        converged: cells whose read conductance is within tolerance of the target, (256, 256).
        iterations: partial-pulse iterations used (the largest over devices).
        converged_per_iteration: fraction of programmed devices converged after each read.
        pulses: number of pulses sent.
    """

    cell_targets: np.ndarray
    device_targets: np.ndarray
    reset_reads: np.ndarray
    reads: np.ndarray
    stuck_high: np.ndarray
    converged: np.ndarray
    iterations: int
    converged_per_iteration: list[float]
    pulses: int

    @property
    def converged_fraction(self) -> float:
        return float(self.converged.mean())

    @property
    def cell_reads(self) -> np.ndarray:
        """Read conductance per cell, (g0 + g1) − (g2 + g3), counts."""
        r = self.reads
        return (r[..., 0] + r[..., 1]) - (r[..., 2] + r[..., 3])


def weight_targets(
    weights: np.ndarray, *, g_max_counts: float = G_MAX_ODP_COUNTS, w_max: float | None = None
) -> np.ndarray:
    """Signed per-cell targets in ADC counts, G = W·Gmax/Wmax [LG Eq 1].

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
    return (w * (g_max_counts / scale)).astype(np.float32)


def _assign_devices(
    cell_targets: np.ndarray, reset_reads: np.ndarray, tolerance: float
) -> tuple[np.ndarray, np.ndarray]:
    """ODP device targets that carry each cell's target net of its stuck devices."""
    stuck = reset_reads >= tolerance
    stuck_net = np.where(stuck, reset_reads, 0.0)
    offset = (stuck_net[..., 0] + stuck_net[..., 1]) - (stuck_net[..., 2] + stuck_net[..., 3])
    needed = cell_targets - offset
    device_targets = np.zeros(reset_reads.shape, np.float32)
    positive = needed > 0
    for sign_mask, primary, partner in ((positive, 0, 1), (~positive, 2, 3)):
        use_partner = stuck[..., primary] & ~stuck[..., partner]
        magnitude = np.abs(needed)
        device_targets[..., primary] = np.where(
            sign_mask & ~use_partner & ~stuck[..., primary], magnitude, device_targets[..., primary]
        )
        device_targets[..., partner] = np.where(
            sign_mask & use_partner, magnitude, device_targets[..., partner]
        )
    return device_targets, stuck


def program_core(
    board: Board, core: int, cell_targets: np.ndarray, settings: ProgramSettings | None = None
) -> ProgramResult:
    """Program one core to signed per-cell targets (ADC counts) by program-and-verify (ODP)."""
    settings = settings or ProgramSettings()
    cell_targets = np.asarray(cell_targets, dtype=np.float32)
    if cell_targets.shape != (ROWS, COLS):
        raise LimitError(f"targets must have shape ({ROWS}, {COLS}), got {cell_targets.shape}")
    if not np.all(np.isfinite(cell_targets)) or np.abs(cell_targets).max() > 4095:
        raise LimitError("targets must be finite ADC counts within [-4095, 4095]")
    shape = (ROWS, COLS, DEVICES)
    rows, cols, devices = np.indices(shape).reshape(3, -1).astype(np.uint8)
    pulses = board.apply_pulses(
        core, rows, cols, devices, "reset", settings.reset_amplitude_ua, settings.reset_width_ns
    )
    reset_reads = board.verify_read(core, rows, cols, devices).astype(np.float32).reshape(shape)
    device_targets, stuck = _assign_devices(cell_targets, reset_reads, settings.tolerance_counts)
    flat_targets = device_targets.reshape(-1)
    reads = reset_reads.reshape(-1).copy()
    active = np.flatnonzero(flat_targets >= settings.tolerance_counts)
    history: list[float] = []
    iterations = 0
    if active.size:
        pulses += board.apply_pulses(
            core,
            rows[active],
            cols[active],
            devices[active],
            "set",
            settings.set_amplitude_ua,
            settings.set_width_ns,
        )
        g_set = board.verify_read(core, rows[active], cols[active], devices[active])
        reads[active] = g_set
        active, partners, pulses = _recruit_partners(
            board,
            core,
            settings,
            active,
            g_set.astype(np.float32),
            flat_targets,
            reads,
            stuck,
            pulses,
        )
        iterations, history, pulses = _iterate(
            board, core, settings, active, flat_targets, reads, pulses
        )
    reads = reads.reshape(shape)
    cell_reads = (reads[..., 0] + reads[..., 1]) - (reads[..., 2] + reads[..., 3])
    return ProgramResult(
        cell_targets=cell_targets,
        device_targets=device_targets,
        reset_reads=reset_reads,
        reads=reads,
        stuck_high=stuck,
        converged=np.abs(cell_reads - cell_targets) < 2 * settings.tolerance_counts,
        iterations=iterations,
        converged_per_iteration=history,
        pulses=pulses,
    )


def _recruit_partners(
    board: Board,
    core: int,
    settings: ProgramSettings,
    active: np.ndarray,
    g_set: np.ndarray,
    flat_targets: np.ndarray,
    reads: np.ndarray,
    stuck: np.ndarray,
    pulses: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Let the partner device carry what a weak primary cannot (its SET level below target).

    The weak device stays SET (a fully SET device is among the least noisy states [LG §2a]);
    its partner G2± is SET and then iterated to the remainder. Returns the devices to iterate.
    """
    weak = g_set + settings.tolerance_counts < flat_targets[active]
    partner = active + 1  # device 0 -> 1, 2 -> 3 in the flat (row, col, device) order
    usable = weak & (active % 2 == 0) & ~stuck.reshape(-1)[partner]
    remainder = flat_targets[active] - g_set
    usable &= remainder >= settings.tolerance_counts
    if not usable.any():
        return active, partner[:0], pulses
    helpers = partner[usable]
    flat_targets[helpers] = remainder[usable]
    flat_targets[active[usable]] = g_set[usable]
    rows, cols, devices = np.unravel_index(helpers, (ROWS, COLS, DEVICES))
    pulses += board.apply_pulses(
        core, rows, cols, devices, "set", settings.set_amplitude_ua, settings.set_width_ns
    )
    reads[helpers] = board.verify_read(core, rows, cols, devices)
    keep = active[~usable]
    return np.concatenate([keep, helpers]), helpers, pulses


def _iterate(
    board: Board,
    core: int,
    settings: ProgramSettings,
    active: np.ndarray,
    flat_targets: np.ndarray,
    reads: np.ndarray,
    pulses: int,
) -> tuple[int, list[float], int]:
    """Partial pulses with proportional amplitude updates until within tolerance."""
    rows, cols, devices = (
        a.astype(np.uint8) for a in np.unravel_index(active, (ROWS, COLS, DEVICES))
    )
    target = flat_targets[active]
    read = reads[active].astype(np.float32)
    g_set = read.copy()
    low, high = settings.melt_range_ua
    slope = (high - low) / np.maximum(g_set, 1.0)  # µA per count, the device's own
    amplitude = high - np.clip(target / np.maximum(g_set, 1.0), 0.0, 1.0) * (high - low)
    # Targets at or above the SET level cannot be reached by partial pulses: keep them SET.
    todo = (np.abs(read - target) >= settings.tolerance_counts) & (
        target < g_set - settings.tolerance_counts
    )
    history = [float(1 - todo.mean())]
    iterations = 0
    while todo.any() and iterations < settings.max_iterations:
        iterations += 1
        idx = np.flatnonzero(todo)
        amp = np.rint(np.clip(amplitude[idx], settings.min_amplitude_ua, settings.max_amplitude_ua))
        pulses += board.apply_pulses(
            core, rows[idx], cols[idx], devices[idx], "partial", amp, settings.partial_width_ns
        )
        new_read = board.verify_read(core, rows[idx], cols[idx], devices[idx]).astype(np.float32)
        read[idx] = new_read
        error = new_read - target[idx]
        amplitude[idx] = amp + settings.gain_fraction * slope[idx] * error
        todo[idx[np.abs(error) < settings.tolerance_counts]] = False
        history.append(float(1 - todo.mean()))
    reads[active] = read
    return iterations, history, pulses
