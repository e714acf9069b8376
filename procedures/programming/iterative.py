"""Iterative program-and-verify of one or more cores (ODP / TDP), over the board protocol.

The published sequence [LG Methods p.7-8; chip.md §2a]: (1) RESET all four devices of every cell
(700 µA, 125 ns); (2) SET the device(s) that carry the weight's sign (125 µA, 250 ns): G1± for
one-device programming (ODP), G1± and G2± for two-device programming (TDP); (3) read each SET
level G_SET; (4) ODP iterates 125 ns partial pulses on G1±; TDP: if |G| exceeds the G_SET of both
devices, the higher-G_SET device stays SET and the lower one is iterated to |G| − G_SET,high;
otherwise the highest-G_SET device is iterated to |G| and the other is RESET. If
G_SET,low + G_SET,high < |G| the weight does not fit and is left as is [LG ED Fig 5b]. The next
partial-pulse amplitude is updated in proportion to (read − target) (Papandreou 2011) until
|error| < 5 ADC counts or 30 iterations.

After the RESET every device is read once: a device that still conducts (≥ the tolerance) is
stuck high, and its conductance is subtracted from what the cell's programmed devices must carry
(on the opposite polarity if need be), so one stuck device does not cost a whole weight. In ODP
a stuck G1± is replaced by its partner G2±, and a weak G1± (G_SET below the target) stays SET
while its partner carries the remainder (partner recruitment).

A partial pulse melts the device and quenches it into a state whose conductance falls as the
amplitude rises, so a device that reads too high gets a larger amplitude next time. The start
amplitude interpolates between the ends of the melt range using the device's own SET level, and
the loop gain is that same slope; both ends are parameters (chip characterisation).

Vectorised: every device of a core that needs a pulse gets one per iteration, in one PULSES
frame, followed by one VERIFY_READ frame; the cores of a group advance in lockstep.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from drivers.board import Board
from drivers.errors import LimitError
from procedures.programming.targets import (
    CELL_SHAPE,
    COLS,
    DEVICE_SHAPE,
    DEVICES,
    N_DEVICES,
    ROWS,
    cell_values,
)

YIELD_OK, YIELD_STUCK_HIGH, YIELD_WEAK, YIELD_NOT_CONVERGED, YIELD_NO_FIT = 0, 1, 2, 3, 4
"""Yield-map codes per cell; the first cause found in the order 4, 1, 2, 3 is reported."""

_R, _C, _D = (a.astype(np.uint8) for a in np.indices(DEVICE_SHAPE).reshape(3, -1))


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
        weak_set_counts: a SET device reading at or below this is weak / stuck low (the yield cut
            G_SET > 50 counts [LG §IV]).
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
    weak_set_counts: float = 50.0

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
        converged: cells whose devices all ended within tolerance (and that fit), (256, 256).
        iterations: partial-pulse iterations used (the largest over devices).
        converged_per_iteration: fraction of cells converged after each read.
        pulses: number of pulses sent.
        yield_map: uint8 codes per cell (YIELD_* constants), (256, 256).
        mode: "odp" or "tdp".
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
    yield_map: np.ndarray = field(default_factory=lambda: np.zeros(CELL_SHAPE, np.uint8))
    mode: str = "odp"

    @property
    def converged_fraction(self) -> float:
        """Fraction of the cells that converged."""
        return float(self.converged.mean())

    @property
    def cell_reads(self) -> np.ndarray:
        """Read conductance per cell, (g0 + g1) − (g2 + g3), counts."""
        return cell_values(self.reads)


@dataclass
class IterationStats:
    """Convergence of a group after one iteration (counts)."""

    iteration: int
    fraction_converged: float
    error_percentiles: tuple[float, float, float]


class CoreProgram:
    """Program-and-verify state of one core; each step sends one PULSES and one VERIFY_READ.

    Conductances in ADC counts, devices indexed flat as (row·256 + col)·4 + device.
    """

    def __init__(
        self, core: int, cell_targets: np.ndarray, mode: str, settings: ProgramSettings
    ) -> None:
        self.core = core
        self.cell_targets = np.asarray(cell_targets, dtype=np.float32)
        self.mode = mode
        self.s = settings
        self.reads = np.zeros(N_DEVICES, np.float32)
        self.reset_reads = np.zeros(N_DEVICES, np.float32)
        self.g_set = np.zeros(N_DEVICES, np.float32)
        self.targets = np.zeros(N_DEVICES, np.float32)
        self.stuck_high = np.zeros(N_DEVICES, bool)
        self.weak = np.zeros(N_DEVICES, bool)
        self.no_fit = np.zeros(ROWS * COLS, bool)
        self.needed = np.zeros(ROWS * COLS, np.float32)
        self.pulses = 0
        self.iterations = 0
        self.history: list[float] = []
        self.active = np.zeros(0, np.int64)
        self.amplitude = np.zeros(0, np.float32)
        self.slope = np.zeros(0, np.float32)
        self.todo = np.zeros(0, bool)
        self.g_max = 0.0
        self.w_max = 1.0

    # ---- frames -------------------------------------------------------------------------------

    def pulse(self, board: Board, idx: np.ndarray, kind: str, amp: Any, width: int) -> None:
        """One PULSES frame: a ``kind`` pulse of ``amp`` µA and ``width`` ns on the flat device
        indices ``idx`` (nothing is sent for none); counts them in :attr:`pulses`."""
        if idx.size:
            self.pulses += board.apply_pulses(
                self.core, _R[idx], _C[idx], _D[idx], kind, amp, width
            )

    def _read(self, board: Board, idx: np.ndarray) -> np.ndarray:
        if not idx.size:
            return np.zeros(0, np.float32)
        values = board.verify_read(self.core, _R[idx], _C[idx], _D[idx]).astype(np.float32)
        self.reads[idx] = values
        return values

    # ---- steps ----------------------------------------------------------------------------------

    def reset_all(self, board: Board) -> None:
        """Step 1: RESET every device, read it, find stuck-high devices and net their current."""
        everything = np.arange(N_DEVICES)
        self.pulse(board, everything, "reset", self.s.reset_amplitude_ua, self.s.reset_width_ns)
        self.reset_reads = self._read(board, everything).copy()
        self.stuck_high = self.reset_reads >= self.s.tolerance_counts
        stuck = np.where(self.stuck_high, self.reset_reads, 0.0).reshape(-1, DEVICES)
        offset = (stuck[:, 0] + stuck[:, 1]) - (stuck[:, 2] + stuck[:, 3])
        self.needed = self.cell_targets.reshape(-1) - offset

    def pair(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cells to program and flat indices of their polarity's first and second device."""
        program = np.abs(self.needed) >= self.s.tolerance_counts
        base = np.arange(ROWS * COLS) * DEVICES + np.where(self.needed > 0, 0, 2)
        return program, base, base + 1

    def set_polarity(self, board: Board) -> None:
        """Steps 2-3: SET the weight-polarity device(s) and read G_SET."""
        program, first, second = self.pair()
        ok_first, ok_second = ~self.stuck_high[first], ~self.stuck_high[second]
        if self.mode == "odp":
            chosen = np.where(ok_first, first, second)[program & (ok_first | ok_second)]
        else:
            chosen = np.concatenate([first[program & ok_first], second[program & ok_second]])
        chosen = np.sort(chosen)
        self.pulse(board, chosen, "set", self.s.set_amplitude_ua, self.s.set_width_ns)
        self.g_set[chosen] = self._read(board, chosen)
        self.weak[chosen] = self.g_set[chosen] <= self.s.weak_set_counts

    def select(self, board: Board) -> None:
        """Step 4-5: device targets by the ODP or TDP rule; RESET losers / SET recruits, read."""
        changed = self._select_odp() if self.mode == "odp" else self._select_tdp()
        to_reset = changed[self.targets[changed] < self.s.tolerance_counts]
        to_set = changed[self.targets[changed] >= self.s.tolerance_counts]
        self.pulse(board, to_reset, "reset", self.s.reset_amplitude_ua, self.s.reset_width_ns)
        self.pulse(board, to_set, "set", self.s.set_amplitude_ua, self.s.set_width_ns)
        both = np.sort(np.concatenate([to_reset, to_set]))
        values = self._read(board, both)
        recruited = np.isin(both, to_set)
        self.g_set[both[recruited]] = values[recruited]
        self.weak[both[recruited]] = values[recruited] <= self.s.weak_set_counts
        self.g_set[to_reset] = 0.0
        if self.mode == "odp" and to_set.size:
            self._mark_odp_no_fit(to_set)
        self._start_iterations()

    def _select_odp(self) -> np.ndarray:
        """ODP: G1± (or its partner if stuck) carries |G|; a weak G1± recruits G2±."""
        tol = self.s.tolerance_counts
        program, first, second = self.pair()
        magnitude = np.abs(self.needed)
        primary = np.where(self.stuck_high[first], second, first)
        has = program & (self.g_set[primary] > 0) & ~self.stuck_high[primary]
        cells = np.flatnonzero(has)
        dev = primary[cells]
        g = self.g_set[dev]
        mag = magnitude[cells]
        remainder = mag - g
        can_recruit = (dev == first[cells]) & ~self.stuck_high[second[cells]]
        recruit = (g + tol < mag) & can_recruit & (remainder >= tol)
        self.targets[dev] = np.where(recruit, g, mag)
        helpers = second[cells[recruit]]
        self.targets[helpers] = remainder[recruit]
        self.no_fit[cells[(g + tol < mag) & ~recruit]] = True
        return helpers

    def _mark_odp_no_fit(self, helpers: np.ndarray) -> None:
        over = self.targets[helpers] > self.g_set[helpers] + self.s.tolerance_counts
        self.no_fit[helpers[over] // DEVICES] = True

    def _select_tdp(self) -> np.ndarray:
        """TDP rule [LG Methods; ED Fig 5b] on the two SET reads of each programmed cell."""
        tol = self.s.tolerance_counts
        program, first, second = self.pair()
        cells = np.flatnonzero(program)
        a, b = first[cells], second[cells]
        ga, gb = self.g_set[a], self.g_set[b]
        hi = np.where(ga >= gb, a, b)
        lo = np.where(ga >= gb, b, a)
        g_hi, g_lo = self.g_set[hi], self.g_set[lo]
        mag = np.abs(self.needed[cells])
        above_both = mag > g_hi
        remainder = mag - g_hi
        no_fit = above_both & (remainder > g_lo + tol)
        self.targets[hi] = np.where(above_both, g_hi, mag)
        lo_target = np.where(no_fit, g_lo, np.where(above_both, remainder, 0.0))
        lo_target = np.where(lo_target < tol, 0.0, lo_target)
        self.targets[lo] = lo_target
        self.no_fit[cells[no_fit]] = True
        # The lower device goes back to RESET where it is not needed and was SET.
        return np.sort(lo[(lo_target == 0.0) & (g_lo > 0)])

    def _start_iterations(self) -> None:
        tol = self.s.tolerance_counts
        t, g = self.targets, self.g_set
        self.active = np.flatnonzero((t >= tol) & (t < g - tol) & ~self.stuck_high)
        g_active = np.maximum(g[self.active], 1.0)
        low, high = self.s.melt_range_ua
        self.slope = ((high - low) / g_active).astype(np.float32)
        share = np.clip(t[self.active] / g_active, 0.0, 1.0)
        self.amplitude = (high - share * (high - low)).astype(np.float32)
        self.todo = np.abs(self.reads[self.active] - t[self.active]) >= tol
        self.history = [self.converged_fraction()]

    def iterate_once(self, board: Board) -> bool:
        """One partial pulse and verify read on every device still outside tolerance."""
        if not self.todo.any() or self.iterations >= self.s.max_iterations:
            return False
        self.iterations += 1
        pick = np.flatnonzero(self.todo)
        idx = self.active[pick]
        amp = np.rint(
            np.clip(self.amplitude[pick], self.s.min_amplitude_ua, self.s.max_amplitude_ua)
        )
        self.pulse(board, idx, "partial", amp, self.s.partial_width_ns)
        error = self._read(board, idx) - self.targets[idx]
        self.amplitude[pick] = amp + self.s.gain_fraction * self.slope[pick] * error
        self.todo[pick[np.abs(error) < self.s.tolerance_counts]] = False
        self.history.append(self.converged_fraction())
        return True

    # ---- outcome --------------------------------------------------------------------------------

    def device_ok(self) -> np.ndarray:
        """Devices that are within tolerance, kept at SET, stuck high (compensated) or RESET."""
        tol = self.s.tolerance_counts
        kept_set = (self.targets >= tol) & (self.targets >= self.g_set - tol)
        within = np.abs(self.reads - self.targets) < tol
        return self.stuck_high | kept_set | within

    def cell_converged(self) -> np.ndarray:
        """(256, 256) bool: cells whose four devices are all within tolerance (or kept)."""
        ok = self.device_ok().reshape(-1, DEVICES).all(axis=1) & ~self.no_fit
        return ok.reshape(CELL_SHAPE)

    def converged_fraction(self) -> float:
        """Fraction of the cells that converged so far."""
        return float(self.cell_converged().mean())

    def cell_error(self) -> np.ndarray:
        """Signed cell error, last reads − target, counts (256, 256)."""
        return cell_values(self.reads) - self.cell_targets

    def yield_map(self) -> np.ndarray:
        """uint8 codes (YIELD_*), first cause in the order no-fit, stuck-high, weak, unconverged."""
        codes = np.full(ROWS * COLS, YIELD_OK, np.uint8)
        codes[~self.cell_converged().reshape(-1)] = YIELD_NOT_CONVERGED
        codes[self.weak.reshape(-1, DEVICES).any(axis=1)] = YIELD_WEAK
        codes[self.stuck_high.reshape(-1, DEVICES).any(axis=1)] = YIELD_STUCK_HIGH
        codes[self.no_fit] = YIELD_NO_FIT
        return codes.reshape(CELL_SHAPE)

    def result(self) -> ProgramResult:
        """The outcome of the core's programming so far, as a :class:`ProgramResult`."""
        return ProgramResult(
            cell_targets=self.cell_targets,
            device_targets=self.targets.reshape(DEVICE_SHAPE).copy(),
            reset_reads=self.reset_reads.reshape(DEVICE_SHAPE).copy(),
            reads=self.reads.reshape(DEVICE_SHAPE).copy(),
            stuck_high=self.stuck_high.reshape(DEVICE_SHAPE).copy(),
            converged=self.cell_converged(),
            iterations=self.iterations,
            converged_per_iteration=list(self.history),
            pulses=self.pulses,
            yield_map=self.yield_map(),
            mode=self.mode,
        )


def group_stats(jobs: Sequence[CoreProgram], iteration: int) -> IterationStats:
    """Fraction of cells converged and p50/p90/p99 of |cell error| (counts) over a group."""
    errors = np.abs(np.concatenate([job.cell_error().reshape(-1) for job in jobs]))
    converged = float(np.mean([job.converged_fraction() for job in jobs]))
    p50, p90, p99 = (float(v) for v in np.percentile(errors, (50, 90, 99)))
    return IterationStats(iteration, converged, (p50, p90, p99))


def program_group(board: Board, jobs: Sequence[CoreProgram]) -> Iterator[IterationStats]:
    """Program the cores of ``jobs`` in lockstep; yields the group's stats after each iteration.

    Iteration 0 is the state after RESET, SET and device selection.
    """
    for step in (CoreProgram.reset_all, CoreProgram.set_polarity, CoreProgram.select):
        for job in jobs:
            step(job, board)
    yield group_stats(jobs, 0)
    iteration = 0
    while True:
        sent = [job.iterate_once(board) for job in jobs]
        if not any(sent):
            return
        iteration += 1
        yield group_stats(jobs, iteration)


def program_core(
    board: Board,
    core: int,
    cell_targets: np.ndarray,
    settings: ProgramSettings | None = None,
    *,
    mode: str = "odp",
) -> ProgramResult:
    """Program one core to signed per-cell targets (ADC counts) by program-and-verify."""
    settings = settings or ProgramSettings()
    targets = _checked_targets(cell_targets)
    if mode not in ("odp", "tdp"):
        raise LimitError(f"mode must be 'odp' or 'tdp', got {mode!r}")
    job = CoreProgram(core, targets, mode, settings)
    for _ in program_group(board, [job]):
        pass
    return job.result()


def _checked_targets(cell_targets: np.ndarray) -> np.ndarray:
    targets = np.asarray(cell_targets, dtype=np.float32)
    if targets.shape != CELL_SHAPE:
        raise LimitError(f"targets must have shape ({ROWS}, {COLS}), got {targets.shape}")
    if not np.all(np.isfinite(targets)) or np.abs(targets).max() > 4095:
        raise LimitError("targets must be finite ADC counts within [-4095, 4095]")
    return targets
