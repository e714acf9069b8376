"""Drift monitoring: conductances, GDC readout, output scale and ν over time [LG §IV; §2c].

PCM conductance drifts as G(t) = G(t_p)·((τ + t0)/t0)^−ν, τ the time since programming, ν per
device and state dependent (HERMES fits: t0 = 200 s for one device, μ_ν(G), σ_ν(G) [AK hermes];
chip.md §3).

**DriftMonitor** follows programmed cores on a log-spaced schedule (``start`` to ``until`` s
after the run starts, taken as the end of programming; ``points`` points). On the simulator it
advances the virtual clock (``Board.advance_clock``); a real board refuses CLOCK, and the run
then either fails with a clear error or, with ``real_time``, waits in real time. Each point:

- ``verify_reads`` averaged verify reads of ``sample`` devices per core (chosen at the first
  point among devices that conduct ≥ ``min_counts``), +0.5 count for the floor of the counter;
- the GDC readout (``readout``): ``correlation`` (default): ``n_readout`` = 64 fixed random
  inputs through the raw MVM, P − N per row, the baseline R₀ kept from the first point (as
  [AK] GlobalDriftCompensation takes its baseline through the noisy forward path right after
  programming) and α̂ = ⟨R, R₀⟩/⟨R₀, R₀⟩; or ``sum`` ([JO Methods E]: "apply V_cal to all
  rows"): ``readout_level`` on every column, P and N per row = Σ G⁺, Σ G⁻ in counts,
  α̂ = Σ R/Σ R₀. The ``sum`` readout weighs every device by its conductance, the nearly
  RESET devices (ν ≈ 0.1, [AK hermes]) included, while the signed outputs weigh cells by their
  weight and cancel the opposite-polarity devices, so it over-estimates the output drift
  (measured: ~3 % residual scale error after a day, see the tests); the correlation readout
  weighs cells as the outputs do (a documented deviation from [JO], UNCONFIRMED on chip);
- ``n_test`` fixed random test inputs through the raw MVM: the true output scale of the core
  against the first point, s = Σ y·y₀/Σ y₀² (least squares), and per row s_r.

GDC: outputs rescaled by 1/α̂ (merged into the LDPU affine scale,
[JO; LG p.5]); per-column (here per output row) α̂_r = (P_r + N_r)(t)/(P_r + N_r)(t₀). The scale
error of a core is |s/α̂ − 1| with GDC, |s − 1| without, and for per-column compensation
|s_pc − 1| where s_pc is the least-squares scale of y_r/α̂_r against y₀ (rms over rows of
s_r/α̂_r − 1 also reported). These are evaluated on the raw counts on the host (the float16
affine scale quantises 1/α̂ to 5e-4, negligible).

ν fits: per device, least squares of ln G on −ln((τ + t0)/t0) over the points with
τ ≥ ``fit_from_s`` (default t0: the post-programming relaxation is over [sim: drivers/sim/pulses])
giving ν̂ and G(τ=0) = exp(intercept), with the standard error of ν̂ from the residuals; per
core, the same fit on the GDC α̂.

**Time is what was measured.** Every row's ``time`` is the board clock (s since the run's
start) when the point's measurement began, never the plan: on schedule it is the scheduled time
(the virtual clock is advanced to it, or the host waits in real time), but a point whose time
has already passed (a run resumed hours later, the board's clock moved on; a slow real-time
point) is measured *now* and recorded at that true time, with ``moved`` = 1 in its row. It is
*moved* when it is late by more than ``MOVED_TOLERANCE`` (1 % of its scheduled time, at least
1 s); a point a little late within that is recorded at its true time too, unflagged. When
several schedule points have all passed, only the latest of them is measured (once, at the
true time) and the earlier ones are skipped, rather than measuring the same moment many times:
so a run has one row per measured point, up to ``points`` rows; ``scheduled_time`` says which
schedule point a row stands for. The results count ``moved_points`` (rows measured late) and
``skipped_points`` (schedule points never measured); the ν fits use the recorded times. A run
file written before these two streams existed resumes too: its earlier rows get
``scheduled_time`` = ``time`` and ``moved`` = 0 (what that code recorded) so the rows line up.

GDC itself (the readout, α̂, applying it) is :mod:`procedures.gdc`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from drivers.board import Board
from drivers.errors import LimitError, NotSupportedError
from procedures.base import Checkpoint, Data, Parameter, Progress, StreamSpec
from procedures.characterize import random_inputs
from procedures.gdc import READOUT_PARAMETERS, GdcReadout, gdc_alpha, gdc_alpha_rows
from procedures.programming.targets import N_DEVICES, ROWS, US_PER_COUNT

KEEP_ALIVE_S = 30.0
"""Longest time in s a real-time wait leaves the link silent (a STATUS request then)."""
DRIFT_T0_S = 200.0
"""t0 of the HERMES one-device drift fit [AK hermes; chip.md §3]."""
MOVED_TOLERANCE = 0.01
"""A point measured later than its scheduled time t by more than this fraction of t (and by
more than ``MOVED_MIN_S``) is *moved* (module docstring): 1 % of t shifts ln(1 + t/t0), the ν
fit's abscissa, by < 0.01."""
MOVED_MIN_S = 1.0
"""The least lateness in s that makes a point moved (a real-time wait overshoots by ms)."""


def moved_tolerance_s(scheduled_s: float | np.ndarray) -> float | np.ndarray:
    """How late in s a point scheduled at ``scheduled_s`` may be measured and not be moved."""
    return np.maximum(MOVED_TOLERANCE * np.asarray(scheduled_s, np.float64), MOVED_MIN_S)


def schedule(start_s: float, until_s: float, points: int) -> np.ndarray:
    """Log-spaced times in s from ``start_s`` to ``until_s`` (``points`` ≥ 2)."""
    if not 0 < start_s < until_s:
        raise LimitError(f"drift schedule needs 0 < start < until, got {start_s}, {until_s}")
    return np.geomspace(start_s, until_s, points)


def fit_nu(
    times_s: np.ndarray, g: np.ndarray, t0_s: float = DRIFT_T0_S
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-series ν̂, G(τ=0) and SE(ν̂) from ln G = a − ν·ln((τ + t0)/t0).

    Args:
        times_s: τ per point (n,).
        g: conductances (n, m), > 0.
    """
    if np.any(g <= 0):
        raise LimitError("drift fit: conductances must be positive")
    lx = np.log1p(np.asarray(times_s, np.float64) / t0_s)
    ly = np.log(g)
    xm = lx.mean()
    sxx = float(np.sum((lx - xm) ** 2))
    slope = ((lx - xm)[:, None] * (ly - ly.mean(axis=0))).sum(axis=0) / sxx
    intercept = ly.mean(axis=0) - slope * xm
    resid = ly - (intercept + slope * lx[:, None])
    dof = max(lx.size - 2, 1)
    se = np.sqrt((resid**2).sum(axis=0) / dof / sxx)
    return -slope, np.exp(intercept), se


class DriftMonitor(GdcReadout):
    """Conductance drift, ν fits and GDC on a log-spaced schedule [LG §IV; JO; §2c].

    Resumable: a checkpoint follows every point. A resumed run keeps the schedule of the first
    start (board time of the start in the state; in real time, the wall-clock start) and takes
    the sample, the times, conductances and α̂ series so far and the first point's readout and
    test outputs back from the run file (``resume_streams``), so it continues with the next
    point on the same (non-volatile) programmed cores. Points whose time passed while the run was
    stopped are measured once, now, and flagged ``moved`` (module docstring).
    """

    resumable: ClassVar[bool] = True
    resume_streams: ClassVar[tuple[str, ...]] = (
        "time",
        "sample_index",
        "conductance",
        "alpha",
        "readout_reference",
        "output_reference",
    )
    name: ClassVar[str] = "drift"
    title: ClassVar[str] = "Drift monitor"
    parameters: ClassVar[tuple[Parameter, ...]] = (
        Parameter(
            "cores", [0], kind="cores", description="cores to follow", minimum=0, maximum=63
        ),  # fmt: skip
        Parameter(
            "until",
            86400.0,
            kind="duration",
            units="s",
            description="last point after the start",
            minimum=1e-3,
            maximum=3.2e9,
        ),  # fmt: skip
        Parameter(
            "points", 20, kind=int, description="points of the schedule", minimum=2, maximum=10000
        ),  # fmt: skip
        Parameter(
            "start",
            25.0,
            kind="duration",
            units="s",
            description="first point after the start",
            minimum=1e-3,
        ),  # fmt: skip
        Parameter(
            "sample",
            1024,
            kind=int,
            description="devices sampled per core",
            minimum=1,
            maximum=N_DEVICES,
        ),  # fmt: skip
        Parameter(
            "min_counts", 5.0, units="counts", description="sampled devices conduct ≥", minimum=0.0
        ),  # fmt: skip
        Parameter(
            "verify_reads",
            8,
            kind=int,
            description="verify reads averaged per point",
            minimum=1,
            maximum=64,
        ),  # fmt: skip
        Parameter(
            "n_test",
            256,
            kind=int,
            description="test inputs for the output scale",
            minimum=16,
            maximum=4096,
        ),  # fmt: skip
        Parameter("mode", 4, kind=int, description="MVM mode", choices=(1, 4)),
        Parameter(
            "t0", DRIFT_T0_S, units="s", description="drift reference time [AK]", minimum=1e-3
        ),  # fmt: skip
        Parameter(
            "fit_from", DRIFT_T0_S, units="s", description="ν fits use τ ≥ this", minimum=0.0
        ),  # fmt: skip
        Parameter(
            "real_time",
            False,
            kind=bool,
            description="wait in real time where the board has no virtual clock",
        ),  # fmt: skip
        Parameter("seed", 0, kind=int, description="seed of sample and test inputs", minimum=0),
        *READOUT_PARAMETERS,
    )
    default_plot: ClassVar[tuple[str, str | None]] = ("scale_error_gdc", "time")

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        p = self.params
        self.times = schedule(p["start"], p["until"], p["points"])
        if p["sample"] > 65536:
            raise LimitError("parameter sample: at most 65536 devices per core (one frame)")

    def streams(self) -> tuple[StreamSpec, ...]:
        n = len(self.params["cores"])
        s = self.params["sample"]
        return (
            StreamSpec("time", (), "f8", "s", "board time of the measurement since the start"),
            StreamSpec("scheduled_time", (), "f8", "s", "scheduled time of the point"),
            StreamSpec("moved", (), "u1", "1", "1: measured late (its time had passed)"),
            StreamSpec("sample_index", (n, s), "i4", "1", "flat device index of the sample"),
            StreamSpec("conductance", (n, s), "f4", "counts", "sampled devices, mean of reads"),
            StreamSpec("scale", (n,), "f8", "1", "true output scale vs the first point"),
            StreamSpec("alpha", (n,), "f8", "1", "GDC α̂ = readout/readout(t0)"),
            StreamSpec("scale_error", (n,), "f8", "1", "|s − 1| without compensation"),
            StreamSpec("scale_error_gdc", (n,), "f8", "1", "|s/α̂ − 1| with GDC"),
            StreamSpec("scale_error_column", (n,), "f8", "1", "per-column GDC: |s_pc − 1|"),
            StreamSpec("row_error_column", (n,), "f8", "1", "per-column GDC: rms(s_r/α̂_r − 1)"),
            StreamSpec(
                "readout_reference",
                (n, self._levels(), ROWS),
                "f8",
                "counts",
                "GDC readout R₀ at the first point (one row)",
            ),
            StreamSpec(
                "output_reference",
                (n, self.params["n_test"], ROWS),
                "i4",
                "counts",
                "test outputs y₀ = P − N at the first point (one row)",
            ),
            StreamSpec("nu_device", (n, s), "f4", "1", "fitted ν per sampled device"),
            StreamSpec("nu_se", (n, s), "f4", "1", "standard error of ν per device"),
            StreamSpec("g0_device", (n, s), "f4", "uS", "fitted G(τ=0) per device"),
            StreamSpec("nu_core", (n,), "f8", "1", "fitted ν of the GDC α̂ per core"),
        )

    def total(self) -> int:
        return int(self.params["points"])

    def _now(self, board: Board, t_start: float, wall0: float) -> float:
        """Time since the run's start in s: the board clock, or the host's in real time."""
        if self._virtual:
            return board.board_time_s() - t_start
        return time.monotonic() - wall0

    def _wait_until(self, board: Board, target_s: float, now_s: float, wall0: float) -> float:
        """Wait from ``now_s`` until ``target_s`` (s since the start); the time it is then.

        The virtual clock is advanced to exactly the target (returned as such); in real time
        the host sleeps and returns the time it woke (never before the target).
        """
        if self._virtual:
            if target_s > now_s:
                board.advance_clock(target_s - now_s)
                return target_s
            return now_s
        last_call = time.monotonic()
        while True:
            now_s = time.monotonic() - wall0
            remaining = target_s - now_s
            if remaining <= 0:
                return now_s
            self.check_stop()
            if time.monotonic() - last_call >= KEEP_ALIVE_S:
                # A link that carries nothing for long is dropped by some boards and by the
                # simulator server's idle timeout (docs/protocol.md): ask for the status.
                board.status()
                last_call = time.monotonic()
            time.sleep(min(remaining, 1.0, KEEP_ALIVE_S))

    def execute(
        self, board: Board, *, resume_from: dict[str, Any] | None = None
    ) -> Iterator[Progress | Data | Checkpoint]:
        p = self.params
        cores: list[int] = p["cores"]
        try:
            t_start = board.board_time_s()
            self._virtual = True
        except NotSupportedError:
            if not p["real_time"]:
                raise LimitError(
                    "this board has no virtual clock (CLOCK not supported): run the drift "
                    "monitor with real_time=true to wait in real time"
                ) from None
            self._virtual = False
            t_start = 0.0
        wall0 = time.monotonic()
        wall_start = time.time()
        rng = np.random.default_rng([p["seed"], 0xD1F7])
        x_test = random_inputs(rng, p["n_test"], 0.3, board.geometry.cols)
        n, s = len(cores), p["sample"]
        index = np.zeros((n, s), np.int64)
        # one entry per measured point (row): true time, conductances, α̂
        t_rows: list[float] = []
        g_rows: list[np.ndarray] = []
        alpha_rows: list[np.ndarray] = []
        moved_points = skipped_points = 0
        r0: np.ndarray | None = None
        y0: np.ndarray | None = None
        first = 0
        if resume_from is not None:
            first = int(resume_from["points_done"])
            t_start = float(resume_from["t_start_s"])
            wall_start = float(resume_from["wall_start"])
            wall0 = time.monotonic() - (time.time() - wall_start)
            self.results = dict(resume_from.get("results", {}))
            moved_points = int(self.results.get("moved_points", 0))
            skipped_points = int(self.results.get("skipped_points", 0))
            if first:
                streams = resume_from.get("streams", {})
                try:
                    t_rows = [float(t) for t in np.asarray(streams["time"], np.float64)]
                    index[:] = streams["sample_index"][-1]
                    g_rows = [np.asarray(g, np.float64) for g in streams["conductance"]]
                    alpha_rows = [np.asarray(a, np.float64) for a in streams["alpha"]]
                    r0 = np.asarray(streams["readout_reference"][0], np.float64)
                    y0 = np.asarray(streams["output_reference"][0], np.float64)
                    if not 0 < len(t_rows) == len(g_rows) == len(alpha_rows) <= first:
                        raise ValueError(
                            f"{len(t_rows)} times, {len(g_rows)} conductance and "
                            f"{len(alpha_rows)} α̂ rows for {first} points"
                        )
                    g_shape = g_rows[-1].shape
                    if g_shape != (n, s) or alpha_rows[-1].shape != (n,):
                        raise ValueError(f"conductance rows {g_shape}, expected {(n, s)}")
                except (KeyError, IndexError, ValueError) as exc:
                    raise LimitError(
                        f"drift: cannot resume at point {first}: the run file's streams do "
                        f"not match its checkpoint ({exc})"
                    ) from None
                if not resume_from.get("schedule_streams"):
                    # written before the scheduled_time and moved streams: what it recorded as
                    # the time was the schedule, every point measured; line their rows up
                    yield Data("scheduled_time", np.asarray(t_rows), rows=True)
                    yield Data("moved", np.zeros(len(t_rows), np.uint8), rows=True)
        rows_i, cols_i, dev_i = (a.reshape(-1) for a in np.indices(board.geometry.device_shape))
        k = first
        while k < p["points"]:
            self.check_stop()
            now = self._now(board, t_start, wall0)
            passed = np.flatnonzero(now - self.times > moved_tolerance_s(self.times))
            moved = bool(passed.size) and int(passed[-1]) >= k
            if moved:
                # its time (and maybe that of the next ones) has passed: measure once, now
                skipped_points += int(passed[-1]) - k
                k = int(passed[-1])
                t = now
                moved_points += 1
            else:
                t = self._wait_until(board, float(self.times[k]), now, wall0)
            if k == 0:
                for j, core in enumerate(cores):
                    reads = board.verify_read(core, rows_i, cols_i, dev_i).astype(np.float64)
                    eligible = np.flatnonzero(reads >= p["min_counts"])
                    if eligible.size < s:
                        raise LimitError(
                            f"core {core}: only {eligible.size} devices conduct ≥ "
                            f"{p['min_counts']} counts, sample {s} asked (is it programmed?)"
                        )
                    index[j] = np.sort(rng.choice(eligible, size=s, replace=False))
            g_now = np.zeros((n, s))
            for j, core in enumerate(cores):
                idx = index[j]
                total = np.zeros(s)
                for _ in range(p["verify_reads"]):
                    total += board.verify_read(core, rows_i[idx], cols_i[idx], dev_i[idx])
                # as stored (float32: exact for averages of up to 2**8 reads of 16-bit counts)
                g_now[j] = (total / p["verify_reads"] + 0.5).astype(np.float32)
            readout = self._readout(board, cores)
            silent = [c for c, r in zip(cores, readout, strict=True) if not np.any(r)]
            if silent:
                raise LimitError(f"cores {silent}: the GDC readout is all zero (programmed?)")
            y = board.mvm(cores, np.broadcast_to(x_test, (n, *x_test.shape)), mode=p["mode"])
            y_now = y.positive.astype(np.float64) - y.negative
            if r0 is None or y0 is None:
                r0, y0 = readout, y_now
                yield Data("readout_reference", r0)
                yield Data("output_reference", y0.astype(np.int32))
            scale = (y_now * y0).sum(axis=(1, 2)) / (y0 * y0).sum(axis=(1, 2))
            alpha = gdc_alpha(readout, r0, p["readout"])[:, 0]
            t_rows.append(t)
            g_rows.append(g_now)
            alpha_rows.append(alpha)
            alpha_r = gdc_alpha_rows(readout, r0, p["readout"])
            y_pc = y_now / alpha_r[:, None, :]
            scale_pc = (y_pc * y0).sum(axis=(1, 2)) / (y0 * y0).sum(axis=(1, 2))
            s_r = (y_now * y0).sum(axis=1) / (y0 * y0).sum(axis=1)
            row_err = np.sqrt(np.mean((s_r / alpha_r - 1.0) ** 2, axis=1))
            yield Data("time", t)
            yield Data("scheduled_time", float(self.times[k]))
            yield Data("moved", np.uint8(moved))
            yield Data("sample_index", index.astype(np.int32))
            yield Data("conductance", g_now.astype(np.float32))
            yield Data("scale", scale)
            yield Data("alpha", alpha)
            yield Data("scale_error", np.abs(scale - 1.0))
            yield Data("scale_error_gdc", np.abs(scale / alpha - 1.0))
            yield Data("scale_error_column", np.abs(scale_pc - 1.0))
            yield Data("row_error_column", row_err)
            self.results = {
                "time_s": t,
                "scale_error": np.abs(scale - 1.0).tolist(),
                "scale_error_gdc": np.abs(scale / alpha - 1.0).tolist(),
                "scale_error_column": np.abs(scale_pc - 1.0).tolist(),
                "row_error_column": row_err.tolist(),
                "moved_points": moved_points,
                "skipped_points": skipped_points,
            }
            yield Checkpoint(
                {
                    "points_done": k + 1,
                    "t_start_s": t_start,
                    "wall_start": wall_start,
                    "results": self.results,
                    "schedule_streams": True,
                }
            )
            late = f" (moved from {self.times[k]:.4g} s)" if moved else ""
            yield Progress(
                k + 1,
                p["points"],
                f"t = {t:.4g} s{late}: scale error {np.max(np.abs(scale - 1)):.2%}, "
                f"with GDC {np.max(np.abs(scale / alpha - 1)):.2%}",
            )
            k += 1
        times = np.asarray(t_rows, np.float64)
        use = times >= p["fit_from"]
        if use.sum() < 2:
            raise LimitError(
                f"fewer than 2 measured points at τ ≥ fit_from = {p['fit_from']} s "
                f"({skipped_points} schedule points skipped: their time had passed)"
            )
        t_fit = times[use]
        g_series = np.asarray(g_rows, np.float64)[use]
        nu, g0, se = fit_nu(t_fit, g_series.reshape(int(use.sum()), -1), p["t0"])
        core_nu, _, _ = fit_nu(t_fit, np.asarray(alpha_rows, np.float64)[use], p["t0"])
        yield Data("nu_device", nu.reshape(n, s).astype(np.float32))
        yield Data("nu_se", se.reshape(n, s).astype(np.float32))
        yield Data("g0_device", (g0 * US_PER_COUNT).reshape(n, s).astype(np.float32))
        yield Data("nu_core", core_nu)
        self.results.update(
            nu_core=core_nu.tolist(),
            nu_device_mean=float(nu.mean()),
            nu_device_std=float(nu.std()),
            nu_device_std_noise_corrected=float(
                math.sqrt(max(float(nu.var() - np.mean(se**2)), 0.0))
            ),
        )
