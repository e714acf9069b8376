"""Program-and-verify of PCM conductances (ODP / TDP) and GDP refinement, over the board protocol.

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

GDP (gradient-descent programming, [GDP] abstracts; chip.md §2a; the update rule is
UNCONFIRMED, this is our design): minimise ‖Y_hw − s·G_T·X‖ over random int8 inputs using only
full-array MVMs (raw counts, 4-phase, identity LDPU). Per core and iteration: a per-row
least-squares gain and offset (s_i, b_i) maps target outputs to ADC counts (it absorbs the
per-ADC gain spread, which the LDPU calibrates anyway); the output error in conductance units
E = (Y − s·T − b)/s gives the per-cell conductance error by least squares,
Ê = E·Xᵀ(X·Xᵀ)⁻¹ (the gradient ∝ E·Xᵀ, whitened by the input covariance); each cell gets the
correction Δ = −η·Ê (counts) where |Ê| ≥ a dead band, applied as a crystallisation pulse below
the melt threshold on the + device (raise) or the − device (lower), the amplitude from the
crystallisation response κ(I, w) = 1 − exp(−(w/τ_c)·(I − I_th)/(I_melt − I_th)) so that
κ·(G_SET − G) ≈ |Δ|. The MVM error on a held-out batch is measured after every step; a step that
makes it worse is undone (the inverse correction on the other polarity) and η is halved, so the
state kept is the best seen up to the (small) error of the undo pulses.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from drivers.board import Board
from drivers.errors import LimitError
from procedures.base import Checkpoint, Data, Parameter, Procedure, Progress, StreamSpec
from procedures.base import declare as _p

ROWS = COLS = 256
DEVICES = 4
CELL_SHAPE = (ROWS, COLS)
DEVICE_SHAPE = (ROWS, COLS, DEVICES)
N_DEVICES = ROWS * COLS * DEVICES
G_MAX_ODP_COUNTS = 80.0
"""Gmax for one-device programming: the 10th percentile of SET states on the least conductive
core [LG §IV]."""
G_MAX_TDP_COUNTS = 160.0
"""Gmax for two-device programming [LG §IV]."""
US_PER_COUNT = 10.35 / 80.0
"""Inferred verify-read scale, µS per ADC count (80 counts ≈ 10.35 µS; UNCONFIRMED, chip.md
§1.2)."""

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


@dataclass(frozen=True)
class GdpSettings:
    """GDP hyperparameters (weight-agnostic [GDP]; values are our design, UNCONFIRMED).

    Attributes:
        iterations: gradient steps per core.
        batch: random input vectors per step (≥ 256 so the per-cell least squares is posed).
        holdout_batch: input vectors of the held-out batch that scores each step.
        learning_rate: fraction η of the estimated cell error corrected per step.
        dead_band_counts: cells whose estimated |error| is below this get no pulse (counts).
        pulse_width_ns: crystallisation pulse width (ns).
        threshold_ua, melt_ua, tau_ns: crystallisation response I_th, I_melt, τ_c of κ(I, w)
            (chip characterisation; [NK]-style gradual SET, UNCONFIRMED).
        max_amplitude_ua: cap below the melt threshold with margin for its jitter (µA).
        nominal_g_set_counts: G_SET assumed for devices never read at SET (counts).
    """

    iterations: int = 4
    batch: int = 1024
    holdout_batch: int = 512
    learning_rate: float = 0.7
    dead_band_counts: float = 1.0
    pulse_width_ns: int = 125
    threshold_ua: float = 100.0
    melt_ua: float = 250.0
    tau_ns: float = 500.0
    max_amplitude_ua: int = 200
    nominal_g_set_counts: float = 121.0


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


def cell_values(devices: np.ndarray) -> np.ndarray:
    """Signed cell conductance (g0 + g1) − (g2 + g3) of a (..., 4) device array."""
    d = np.asarray(devices, dtype=np.float32).reshape(*CELL_SHAPE, DEVICES)
    return (d[..., 0] + d[..., 1]) - (d[..., 2] + d[..., 3])


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
    if w.shape != CELL_SHAPE:
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


def line_limited_g_max(
    weights: np.ndarray,
    *,
    g_max_counts: float,
    mvm_mode: int,
    line_current_limit_ua: float,
    read_voltage_mv: float,
    us_per_count: float = US_PER_COUNT,
) -> float:
    """Gmax (counts) lowered so no bit-line current exceeds the limit at full-scale inputs.

    [LG Methods; chip.md §1.4, §2d]: the row ADC is linear up to ~100 µA. With |x| = 127 on
    every column, a row's current is V·Σ_j G_ij. Four-phase converts each input/weight polarity
    pair separately, so the worst is V·max(Σ G⁺, Σ G⁻); one-phase converts the net current,
    whose worst case (input signs matching the weights) is V·Σ|G|.

    Args:
        weights: (256, 256) weights; only |W|/max|W| matters.
        g_max_counts: the mode's Gmax before the limit (80 ODP / 160 TDP [LG §IV]).
        mvm_mode: 1 or 4.
        line_current_limit_ua: bit-line current limit in µA.
        read_voltage_mv: MVM read voltage in mV.
        us_per_count: verify-read scale in µS per count.
    """
    w = np.abs(np.asarray(weights, dtype=np.float64))
    w_max = float(w.max())
    if w_max == 0:
        return float(g_max_counts)
    norm = np.asarray(weights, dtype=np.float64) / w_max
    if mvm_mode == 1:
        row_sum = np.abs(norm).sum(axis=1)
    else:
        row_sum = np.maximum(np.clip(norm, 0, None).sum(axis=1), np.clip(-norm, 0, None).sum(1))
    worst = float(row_sum.max())
    if worst == 0:
        return float(g_max_counts)
    limit_counts = line_current_limit_ua / (read_voltage_mv * 1e-3 * us_per_count * worst)
    return float(min(g_max_counts, limit_counts))


# -- one core's program-and-verify state -------------------------------------------------------


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

    def _pulse(self, board: Board, idx: np.ndarray, kind: str, amp: Any, width: int) -> None:
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
        self._pulse(board, everything, "reset", self.s.reset_amplitude_ua, self.s.reset_width_ns)
        self.reset_reads = self._read(board, everything).copy()
        self.stuck_high = self.reset_reads >= self.s.tolerance_counts
        stuck = np.where(self.stuck_high, self.reset_reads, 0.0).reshape(-1, DEVICES)
        offset = (stuck[:, 0] + stuck[:, 1]) - (stuck[:, 2] + stuck[:, 3])
        self.needed = self.cell_targets.reshape(-1) - offset

    def _pair(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cells to program and flat indices of their polarity's first and second device."""
        program = np.abs(self.needed) >= self.s.tolerance_counts
        base = np.arange(ROWS * COLS) * DEVICES + np.where(self.needed > 0, 0, 2)
        return program, base, base + 1

    def set_polarity(self, board: Board) -> None:
        """Steps 2-3: SET the weight-polarity device(s) and read G_SET."""
        program, first, second = self._pair()
        ok_first, ok_second = ~self.stuck_high[first], ~self.stuck_high[second]
        if self.mode == "odp":
            chosen = np.where(ok_first, first, second)[program & (ok_first | ok_second)]
        else:
            chosen = np.concatenate([first[program & ok_first], second[program & ok_second]])
        chosen = np.sort(chosen)
        self._pulse(board, chosen, "set", self.s.set_amplitude_ua, self.s.set_width_ns)
        self.g_set[chosen] = self._read(board, chosen)
        self.weak[chosen] = self.g_set[chosen] <= self.s.weak_set_counts

    def select(self, board: Board) -> None:
        """Step 4-5: device targets by the ODP or TDP rule; RESET losers / SET recruits, read."""
        changed = self._select_odp() if self.mode == "odp" else self._select_tdp()
        to_reset = changed[self.targets[changed] < self.s.tolerance_counts]
        to_set = changed[self.targets[changed] >= self.s.tolerance_counts]
        self._pulse(board, to_reset, "reset", self.s.reset_amplitude_ua, self.s.reset_width_ns)
        self._pulse(board, to_set, "set", self.s.set_amplitude_ua, self.s.set_width_ns)
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
        program, first, second = self._pair()
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
        program, first, second = self._pair()
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
        self._pulse(board, idx, "partial", amp, self.s.partial_width_ns)
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


# -- GDP ----------------------------------------------------------------------------------------


class GdpState:
    """Host-side estimate of one core's devices during GDP (counts; no single-device reads).

    ``g_est`` starts from the last verify reads (or the open-loop targets for GDP-only) and
    follows the predicted effect of each crystallisation pulse.
    """

    def __init__(self, job: CoreProgram, settings: GdpSettings, seed: int) -> None:
        self.job = job
        self.s = settings
        self.g_est = job.reads.copy()
        measured = job.g_set[job.g_set > job.s.weak_set_counts]
        nominal = float(np.median(measured)) if measured.size else settings.nominal_g_set_counts
        self.g_set_est = np.where(job.g_set > 0, job.g_set, nominal).astype(np.float32)
        self.learning_rate = settings.learning_rate
        self.rng = np.random.default_rng([seed, job.core])
        self.holdout = self.inputs(settings.holdout_batch)
        self.best_error = math.inf
        self.last_step: np.ndarray | None = None
        self.errors: list[float] = []

    def inputs(self, batch: int) -> np.ndarray:
        """Uniform random int8 inputs in −127..127, (batch, 256)."""
        return self.rng.integers(-127, 128, (batch, COLS)).astype(np.int8)

    def targets_out(self, x: np.ndarray) -> np.ndarray:
        """Ideal outputs G_T·x in counts·input units, (batch, 256)."""
        return x.astype(np.float64) @ self.job.cell_targets.astype(np.float64).T


def _row_fit(y: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row least-squares gain and offset of y ≈ s·t + b (columns are rows of the core)."""
    t_mean, y_mean = t.mean(axis=0), y.mean(axis=0)
    tc, yc = t - t_mean, y - y_mean
    var = (tc * tc).sum(axis=0)
    valid = var > 1e-9 * max(float(var.max()), 1e-30)
    gain = np.where(valid, (tc * yc).sum(axis=0) / np.where(valid, var, 1.0), np.nan)
    fallback = float(np.nanmedian(gain)) if np.any(valid) else 1.0
    gain = np.where(valid & (gain > 0), gain, fallback)
    return gain, y_mean - gain * t_mean


def mvm_error(y: np.ndarray, t: np.ndarray) -> float:
    """Relative MVM error ‖Y − Ŷ‖/‖Ŷ‖ after a per-row affine fit Ŷ = s·T + b (dimensionless)."""
    gain, offset = _row_fit(y, t)
    fitted = gain * t + offset
    return float(np.linalg.norm(y - fitted)) / max(float(np.linalg.norm(fitted)), 1e-12)


def _measure(
    board: Board, states: Sequence[GdpState], xs: Sequence[np.ndarray]
) -> list[np.ndarray]:
    cores = [st.job.core for st in states]
    counts = board.mvm(cores, np.stack(xs), mode=4, output="raw")
    return list(counts.difference.astype(np.float64))


def _cell_error_estimate(st: GdpState, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-cell conductance error (counts) by least squares from one batch, (256, 256)."""
    t = st.targets_out(x)
    gain, offset = _row_fit(y, t)
    e = (y - offset) / gain - t
    xf = x.astype(np.float64)
    return np.linalg.solve(xf.T @ xf, xf.T @ e).T


def _correction_pulses(
    st: GdpState, delta: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Devices, amplitudes (µA) and predicted increments (counts) that realise cell changes Δ."""
    s = st.s
    cells = np.flatnonzero(np.abs(delta.reshape(-1)) >= s.dead_band_counts)
    step = delta.reshape(-1)[cells]
    side = np.where(step > 0, 0, 2)
    first = cells * DEVICES + side
    usable = ~st.job.stuck_high
    head_first = np.where(usable[first], st.g_set_est[first] - st.g_est[first], -np.inf)
    head_second = np.where(
        usable[first + 1], st.g_set_est[first + 1] - st.g_est[first + 1], -np.inf
    )
    device = np.where(head_first >= head_second, first, first + 1)
    headroom = np.maximum(np.maximum(head_first, head_second), 0.0)
    kappa_max = 1.0 - math.exp(-_drive(s, s.max_amplitude_ua))
    kappa = np.clip(np.abs(step) / np.maximum(headroom, 1e-6), 0.0, kappa_max)
    amplitude = np.rint(
        s.threshold_ua
        - np.log1p(-kappa) * (s.melt_ua - s.threshold_ua) * s.tau_ns / s.pulse_width_ns
    )
    amplitude = np.minimum(amplitude, s.max_amplitude_ua)
    real_kappa = 1.0 - np.exp(-_drive(s, amplitude))
    keep = (amplitude > s.threshold_ua) & (headroom > 0)
    return device[keep], amplitude[keep], (real_kappa * headroom)[keep]


def _drive(s: GdpSettings, amplitude: Any) -> Any:
    return (
        (s.pulse_width_ns / s.tau_ns)
        * (np.asarray(amplitude) - s.threshold_ua)
        / (s.melt_ua - s.threshold_ua)
    )


def _apply_delta(board: Board, st: GdpState, delta: np.ndarray) -> np.ndarray:
    """Send the crystallisation pulses for Δ; returns the predicted cell change (counts)."""
    device, amplitude, increment = _correction_pulses(st, delta)
    applied = np.zeros(N_DEVICES, np.float32)
    if device.size:
        order = np.argsort(device)
        device, amplitude, increment = device[order], amplitude[order], increment[order]
        st.job.pulses += board.apply_pulses(
            st.job.core,
            _R[device],
            _C[device],
            _D[device],
            "partial",
            amplitude.astype(np.int64),
            st.s.pulse_width_ns,
        )
        applied[device] = increment
        st.g_est += applied
    return cell_values(applied)


def gdp_refine(board: Board, states: Sequence[GdpState]) -> Iterator[int]:
    """GDP steps on the cores of ``states`` in lockstep; yields the step number after each.

    Step 0 measures the starting MVM error. Each state's ``errors`` gets the held-out MVM error
    after each step.
    """
    holdouts = [st.holdout for st in states]
    for st, y in zip(states, _measure(board, states, holdouts), strict=True):
        st.best_error = mvm_error(y, st.targets_out(st.holdout))
        st.errors.append(st.best_error)
    yield 0
    for step in range(1, states[0].s.iterations + 1):
        xs = [st.inputs(st.s.batch) for st in states]
        for st, x, y in zip(states, xs, _measure(board, states, xs), strict=True):
            delta = -st.learning_rate * _cell_error_estimate(st, x, y)
            st.last_step = _apply_delta(board, st, delta)
        for st, y in zip(states, _measure(board, states, holdouts), strict=True):
            error = mvm_error(y, st.targets_out(st.holdout))
            st.errors.append(error)
            if error > st.best_error and st.last_step is not None:
                _apply_delta(board, st, -st.last_step)  # undo: back to the best state seen
                st.learning_rate *= 0.5
            else:
                st.best_error = error
        yield step


def open_loop_program(board: Board, job: CoreProgram, settings: GdpSettings) -> None:
    """GDP-only start: RESET, SET and one partial pulse per device at the nominal amplitude.

    No verify reads: the device model is the nominal G_SET and the linear melt map.
    """
    tol = job.s.tolerance_counts
    everything = np.arange(N_DEVICES)
    job._pulse(board, everything, "reset", job.s.reset_amplitude_ua, job.s.reset_width_ns)
    job.reads[:] = 0.0
    job.needed = job.cell_targets.reshape(-1).copy()
    program, first, second = job._pair()
    g_nom = settings.nominal_g_set_counts
    magnitude = np.abs(job.needed)
    two = program & (magnitude > g_nom) if job.mode == "tdp" else np.zeros_like(program)
    job.targets[first[program]] = np.minimum(magnitude[program], g_nom)
    job.targets[second[two]] = np.minimum(magnitude[two] - g_nom, g_nom)
    chosen = np.flatnonzero(job.targets >= tol)
    job._pulse(board, chosen, "set", job.s.set_amplitude_ua, job.s.set_width_ns)
    partial = chosen[job.targets[chosen] < g_nom - tol]
    low, high = job.s.melt_range_ua
    amp = np.rint(high - job.targets[partial] / g_nom * (high - low))
    job._pulse(board, partial, "partial", amp, job.s.partial_width_ns)
    job.reads[chosen] = job.targets[chosen]
    job.g_set[chosen] = g_nom


# -- the procedure ------------------------------------------------------------------------------


class ProgramVerify(Procedure):
    """Program weight matrices onto cores by program-and-verify (ODP/TDP), optionally GDP.

    Per core: Gmax (counts) = g_max_counts, or automatically 80 (ODP) / 160 (TDP) [LG §IV]
    lowered so no bit-line current exceeds ``line_current_limit_ua`` at full-scale inputs
    [LG Methods; chip.md §2d]; Wmax = max|W| of the core's matrix; G = W·Gmax/Wmax [LG Eq 1].
    """

    name: ClassVar[str] = "program"
    title: ClassVar[str] = "Program and verify"
    parameters: ClassVar[tuple[Parameter, ...]] = (
        _p("weights", None, "array", "1", "(256, 256) for every core or (n_cores, 256, 256)"),
        _p("cores", [0], "cores", "", "cores to program", minimum=0, maximum=63),
        _p("mode", "tdp", str, "", "one- or two-device programming [LG]", choices=("odp", "tdp")),
        _p("gdp", False, bool, "", "GDP refinement after iterative programming [GDP]"),
        _p("gdp_only", False, bool, "", "GDP instead of iterative programming [GDP]"),
        _p("tolerance_counts", 5.0, float, "counts", "verify tolerance [LG]", minimum=1e-3),
        _p(
            "max_iterations", 30, int, "1", "partial-pulse iterations [LG]", minimum=1, maximum=1000
        ),
        _p("g_max_counts", 0.0, float, "counts", "Gmax; 0 = automatic", minimum=0, maximum=4095),
        _p("line_current_limit_ua", 100.0, float, "uA", "bit-line limit [KA]", minimum=1.0),
        _p("mvm_mode", 4, int, "1", "MVM mode for the line-current limit", choices=(1, 4)),
        _p("us_per_count", US_PER_COUNT, float, "uS", "µS per count (UNCONFIRMED)", minimum=1e-4),
        _p("cores_per_group", 8, int, "1", "cores in lockstep", minimum=1, maximum=64),
        _p("seed", 0, int, "1", "seed of GDP's random inputs", minimum=0),
        _p("gdp_iterations", 4, int, "1", "GDP steps", minimum=1, maximum=100),
        _p("gdp_batch", 1024, int, "1", "GDP inputs per step", minimum=256, maximum=4096),
        _p("gdp_learning_rate", 0.7, float, "1", "GDP step fraction", minimum=0.01, maximum=1.5),
        _p("gdp_dead_band_counts", 1.0, float, "counts", "GDP dead band", minimum=0.0),
    )
    default_plot: ClassVar[tuple[str, str | None]] = ("fraction_converged", "iteration")

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        cores: list[int] = self.params["cores"]
        weights = self.params["weights"]
        if weights.shape == CELL_SHAPE:
            weights = np.broadcast_to(weights, (len(cores), *CELL_SHAPE))
        if weights.shape != (len(cores), *CELL_SHAPE):
            raise LimitError(
                f"parameter weights: shape {self.params['weights'].shape} is neither (256, 256) "
                f"nor ({len(cores)}, 256, 256) for {len(cores)} core(s)"
            )
        self.weights = weights
        self.groups = [
            cores[i : i + self.params["cores_per_group"]]
            for i in range(0, len(cores), self.params["cores_per_group"])
        ]

    @property
    def uses_gdp(self) -> bool:
        """True if the run refines by GDP (``gdp`` or ``gdp_only``)."""
        return bool(self.params["gdp"] or self.params["gdp_only"])

    def settings(self) -> ProgramSettings:
        """The iterative programming settings from the parameters."""
        return ProgramSettings(
            tolerance_counts=self.params["tolerance_counts"],
            max_iterations=self.params["max_iterations"],
        )

    def gdp_settings(self) -> GdpSettings:
        """The GDP settings from the parameters."""
        return GdpSettings(
            iterations=self.params["gdp_iterations"],
            batch=self.params["gdp_batch"],
            learning_rate=self.params["gdp_learning_rate"],
            dead_band_counts=self.params["gdp_dead_band_counts"],
        )

    def streams(self) -> tuple[StreamSpec, ...]:
        per_core = (
            StreamSpec("core", (), "i2", "1", "core id of the per-core rows"),
            StreamSpec("conductance", DEVICE_SHAPE, "u2", "counts", "last read of every device"),
            StreamSpec("cell_error", CELL_SHAPE, "f4", "counts", "cell read − cell target"),
            StreamSpec(
                "yield_map", CELL_SHAPE, "u1", "1", "0 ok 1 stuck-high 2 weak 3 unconv 4 nofit"
            ),
            StreamSpec("g_max", (), "f4", "counts", "Gmax of the core"),
            StreamSpec("w_max", (), "f8", "1", "weight mapped to Gmax"),
            StreamSpec("converged_fraction", (), "f4", "1", "cells converged"),
            StreamSpec("iterations", (), "i4", "1", "iterations used"),
            StreamSpec("pulses", (), "i8", "1", "pulses sent to the core"),
        )
        live = (
            StreamSpec("group", (), "i4", "1", "group of the convergence row"),
            StreamSpec("iteration", (), "i4", "1", "iteration of the convergence row"),
            StreamSpec("fraction_converged", (), "f4", "1", "cells converged in the group"),
            StreamSpec("error_percentiles", (3,), "f4", "counts", "p50/p90/p99 of |cell error|"),
        )
        gdp = (
            StreamSpec("gdp_core", (), "i2", "1", "core of the GDP row"),
            StreamSpec("gdp_step", (), "i4", "1", "GDP step (0 = before GDP)"),
            StreamSpec("gdp_mvm_error", (), "f4", "1", "held-out ‖Y − Ŷ‖/‖Ŷ‖"),
        )
        return live + per_core + (gdp if self.uses_gdp else ())

    def _units_per_group(self) -> int:
        iterative = 0 if self.params["gdp_only"] else self.params["max_iterations"] + 1
        return iterative + (self.params["gdp_iterations"] + 1 if self.uses_gdp else 0)

    def total(self) -> int:
        return len(self.groups) * self._units_per_group()

    def g_max_for(self, weights: np.ndarray, read_voltage_mv: float) -> float:
        """Gmax of one core in counts (explicit, or automatic with the line-current limit)."""
        if self.params["g_max_counts"] > 0:
            return float(self.params["g_max_counts"])
        base = G_MAX_ODP_COUNTS if self.params["mode"] == "odp" else G_MAX_TDP_COUNTS
        return line_limited_g_max(
            weights,
            g_max_counts=base,
            mvm_mode=self.params["mvm_mode"],
            line_current_limit_ua=self.params["line_current_limit_ua"],
            read_voltage_mv=read_voltage_mv,
            us_per_count=self.params["us_per_count"],
        )

    def execute(
        self, board: Board, *, resume_from: dict[str, Any] | None = None
    ) -> Iterator[Progress | Data | Checkpoint]:
        done = int(resume_from["groups_done"]) if resume_from else 0
        self.results = dict(resume_from.get("results", {})) if resume_from else {}
        self.results.setdefault("cores", {})
        start_time = board.status().uptime_s
        read_voltage_mv = float(board.mvm_read_voltage_mv)
        index = {core: k for k, core in enumerate(self.params["cores"])}
        per_group = self._units_per_group()
        for g in range(done, len(self.groups)):
            jobs = []
            for core in self.groups[g]:
                w = self.weights[index[core]]
                g_max = self.g_max_for(w, read_voltage_mv)
                w_max = float(np.abs(w).max()) or 1.0
                targets = (w * (g_max / w_max)).astype(np.float32)
                job = CoreProgram(core, targets, self.params["mode"], self.settings())
                job.g_max, job.w_max = g_max, w_max
                jobs.append(job)
            yield from self._program(board, g, jobs, g * per_group)
            yield from self._core_records(jobs)
            chip_time = board.status().uptime_s - start_time
            self.results["chip_time_s"] = chip_time + float(self.results.get("chip_time_s", 0.0))
            yield Checkpoint(
                {
                    "groups_done": g + 1,
                    "board_time_s": board.status().uptime_s,
                    "results": self.results,
                }
            )
            start_time = board.status().uptime_s
            yield Progress((g + 1) * per_group, self.total(), f"group {g + 1}/{len(self.groups)}")

    def _program(
        self, board: Board, group: int, jobs: list[CoreProgram], progress0: int
    ) -> Iterator[Progress | Data]:
        done = progress0
        if not self.params["gdp_only"]:
            for stats in program_group(board, jobs):
                self.check_stop()
                yield Data("group", np.int32(group))
                yield Data("iteration", np.int32(stats.iteration))
                yield Data("fraction_converged", np.float32(stats.fraction_converged))
                yield Data("error_percentiles", np.asarray(stats.error_percentiles, np.float32))
                done += 1
                p50, p90, p99 = stats.error_percentiles
                yield Progress(
                    done,
                    self.total(),
                    f"group {group + 1} it {stats.iteration}: {stats.fraction_converged:.1%} "
                    f"converged, |err| p50/p90/p99 {p50:.1f}/{p90:.1f}/{p99:.1f} counts",
                )
        if self.uses_gdp:
            yield from self._gdp(board, jobs, done)

    def _gdp(self, board: Board, jobs: list[CoreProgram], done: int) -> Iterator[Progress | Data]:
        settings = self.gdp_settings()
        if self.params["gdp_only"]:
            for job in jobs:
                open_loop_program(board, job, settings)
        states = [GdpState(job, settings, self.params["seed"]) for job in jobs]
        for step in gdp_refine(board, states):
            self.check_stop()
            for st in states:
                yield Data("gdp_core", np.int16(st.job.core))
                yield Data("gdp_step", np.int32(step))
                yield Data("gdp_mvm_error", np.float32(st.errors[-1]))
            yield Progress(done + step + 1, self.total(), f"GDP step {step}")
        for st in states:
            st.job.reads[:] = st.g_est
            self.results["cores"].setdefault(str(st.job.core), {})["gdp_mvm_error"] = st.errors

    def _core_records(self, jobs: list[CoreProgram]) -> Iterator[Data]:
        for job in jobs:
            result = job.result()
            g_max, w_max = job.g_max, job.w_max
            yield Data("core", np.int16(job.core))
            yield Data("conductance", np.clip(np.rint(result.reads), 0, 65535).astype(np.uint16))
            yield Data("cell_error", job.cell_error().astype(np.float32))
            yield Data("yield_map", result.yield_map)
            yield Data("g_max", np.float32(g_max))
            yield Data("w_max", np.float64(w_max))
            yield Data("converged_fraction", np.float32(result.converged_fraction))
            yield Data("iterations", np.int32(result.iterations))
            yield Data("pulses", np.int64(result.pulses))
            summary = self.results["cores"].setdefault(str(job.core), {})
            summary.update(
                converged_fraction=result.converged_fraction,
                iterations=result.iterations,
                pulses=result.pulses,
                g_max_counts=g_max,
                w_max=w_max,
                yield_fraction=float(np.mean(result.yield_map == YIELD_OK)),
            )
