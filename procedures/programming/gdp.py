"""GDP: refine programmed conductances by the MVM error alone (no single-device reads).

Gradient-descent programming ([GDP] abstracts; chip.md §2a; the update rule is UNCONFIRMED,
this is our design): minimise ‖Y_hw − s·G_T·X‖ over random int8 inputs using only
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
from dataclasses import dataclass
from typing import Any

import numpy as np

from drivers.board import Board
from procedures.programming.iterative import CoreProgram
from procedures.programming.targets import COLS, DEVICES, N_DEVICES, cell_values


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
        st.job.pulse(board, device, "partial", amplitude.astype(np.int64), st.s.pulse_width_ns)
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
    job.pulse(board, everything, "reset", job.s.reset_amplitude_ua, job.s.reset_width_ns)
    job.reads[:] = 0.0
    job.needed = job.cell_targets.reshape(-1).copy()
    program, first, second = job.pair()
    g_nom = settings.nominal_g_set_counts
    magnitude = np.abs(job.needed)
    two = program & (magnitude > g_nom) if job.mode == "tdp" else np.zeros_like(program)
    job.targets[first[program]] = np.minimum(magnitude[program], g_nom)
    job.targets[second[two]] = np.minimum(magnitude[two] - g_nom, g_nom)
    chosen = np.flatnonzero(job.targets >= tol)
    job.pulse(board, chosen, "set", job.s.set_amplitude_ua, job.s.set_width_ns)
    partial = chosen[job.targets[chosen] < g_nom - tol]
    low, high = job.s.melt_range_ua
    amp = np.rint(high - job.targets[partial] / g_nom * (high - low))
    job.pulse(board, partial, "partial", amp, job.s.partial_width_ns)
    job.reads[chosen] = job.targets[chosen]
    job.g_set[chosen] = g_nom
