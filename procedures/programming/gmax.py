"""Gmax from the workload: the bit-line current real inputs drive, and saturation measured on chip.

The row ADC is linear up to about 100 µA of bit-line current and saturates above it, so Gmax is
lowered per core to keep the currents below that limit [LG Methods; chip.md §1.4, §2d]. The
worst-case rule (:func:`~procedures.programming.targets.line_limited_g_max`) assumes |x| = 127
on every column at once. Real inputs are far from that: post-ReLU activations are sparse and
rarely full scale, so the worst case lowers Gmax (to ~65 counts for typical weights) and with it
the signal against read noise, which erases TDP's advantage over ODP.

**Workload rule** (:func:`workload_g_max`). For every input vector of a representative set (a
layer's int8 inputs on calibration data), the largest current of any conversion on the core at
a trial Gmax; Gmax is chosen so that the ``quantile`` of those per-input peaks stays below the
limit, and never above the mode's Gmax (80 ODP / 160 TDP [LG §IV]). Conversions, as the chip
makes them (:mod:`drivers.sim.mvm`, chip.md §1.4): four-phase converts each input/weight
polarity pair separately (x⁺·G⁺, x⁺·G⁻, x⁻·G⁺, x⁻·G⁻); one-phase converts the net current,
|G·x|. The limit is lowered by the ADC gain spread that remains after the analog trim (≤ +21 %
[KA §III-D]): a row whose CCO runs 21 % fast reaches its peak frequency at ~82 µA, not ~99 µA.
The rule never gives less than the worst-case rule (whose inputs bound every real one).

**Measured saturation** (:func:`saturated_fraction`). The same inputs run through the core; a
conversion is saturated when its count reaches the CCO's peak, f_peak·T = 3.3 GHz × 128 ns ≈
422 counts [KA; chip.md §1.4]. In four-phase mode P and N each add two conversions, so each
input is run as its positive and its negative part (then every counter holds one conversion);
a core-MVM count of that cost is returned with the result.
"""

from __future__ import annotations

import math

import numpy as np

from drivers.board import Board
from drivers.errors import LimitError
from procedures.programming.targets import US_PER_COUNT, line_limited_g_max

ADC_GAIN_SPREAD = 0.21
"""Largest relative ADC gain error left after the analog trim [KA §III-D; chip.md §2b]."""
CCO_PEAK_MHZ = 3300.0
"""Peak CCO frequency [KA; chip.md §1.4]."""
MVM_WINDOW_NS = 128.0
"""Integration window of one MVM conversion [KA; chip.md §1.4]."""
SATURATION_COUNTS = math.floor(CCO_PEAK_MHZ * MVM_WINDOW_NS * 1e-3)
"""Count of a conversion at the CCO's peak: 422; a conversion reading this much saturated."""
G_MAX_RULES = ("workload", "worst-case")


def peak_currents_per_count(weights: np.ndarray, inputs: np.ndarray, mvm_mode: int) -> np.ndarray:
    """Per input vector, the largest conversion's Σ_j G_ij·|x_j|/127 at Gmax = 1 (in counts).

    Args:
        weights: (rows, cols) weights as programmed on the core (G = W·Gmax/max|W|).
        inputs: (n, cols) int8 input codes.
        mvm_mode: 1 or 4 (module docstring: which conversions the chip makes).
    """
    w = np.asarray(weights, np.float64)
    w_max = float(np.abs(w).max()) if w.size else 0.0
    x = np.asarray(inputs, np.float64) / 127.0
    if x.ndim != 2 or x.shape[1] != w.shape[1]:
        raise LimitError(f"inputs must be (n, {w.shape[1]}), got {x.shape}")
    if w_max == 0 or x.shape[0] == 0:
        return np.zeros(x.shape[0])
    g = w / w_max
    if mvm_mode == 1:
        return np.asarray(np.abs(x @ g.T).max(axis=1))
    if mvm_mode != 4:
        raise LimitError(f"MVM mode must be 1 or 4, got {mvm_mode}")
    g_pos, g_neg = np.clip(g, 0, None), np.clip(-g, 0, None)
    x_pos, x_neg = np.clip(x, 0, None), np.clip(-x, 0, None)
    peaks = np.zeros(x.shape[0])
    for xs in (x_pos, x_neg):
        for gs in (g_pos, g_neg):
            np.maximum(peaks, (xs @ gs.T).max(axis=1), out=peaks)
    return peaks


def workload_g_max(
    weights: np.ndarray,
    inputs: np.ndarray,
    *,
    g_max_counts: float,
    mvm_mode: int,
    quantile: float,
    line_current_limit_ua: float,
    read_voltage_mv: float,
    us_per_count: float = US_PER_COUNT,
) -> float:
    """Gmax (counts) at which the ``quantile`` (%, e.g. 99.9) of the per-input peak line
    currents of ``inputs`` stays under the limit lowered by the ADC gain spread; at most
    ``g_max_counts`` and never below the worst-case rule's Gmax (module docstring).

    Args:
        weights: (rows, cols) weights as programmed on the core.
        inputs: (n, cols) int8 input codes the core will see (at least one).
        g_max_counts: the mode's Gmax (80 ODP / 160 TDP [LG §IV]).
        mvm_mode: 1 or 4.
        quantile: percentile of the inputs whose peak current must fit, in (0, 100].
        line_current_limit_ua: bit-line current limit of the ADC (100 µA [LG Methods]).
        read_voltage_mv: MVM read voltage.
        us_per_count: verify-read scale, µS per count.
    """
    if not 0 < quantile <= 100:
        raise LimitError(f"Gmax quantile must be in (0, 100] %, got {quantile}")
    if np.asarray(inputs).shape[0] == 0:
        raise LimitError("the workload Gmax rule needs at least one input vector")
    worst = line_limited_g_max(
        weights,
        g_max_counts=g_max_counts,
        mvm_mode=mvm_mode,
        line_current_limit_ua=line_current_limit_ua,
        read_voltage_mv=read_voltage_mv,
        us_per_count=us_per_count,
    )
    peak = float(np.percentile(peak_currents_per_count(weights, inputs, mvm_mode), quantile))
    if peak == 0:
        return float(g_max_counts)
    limit_ua = line_current_limit_ua / (1.0 + ADC_GAIN_SPREAD)
    fitting = limit_ua / (read_voltage_mv * 1e-3 * us_per_count * peak)
    return float(max(worst, min(g_max_counts, fitting)))


def saturated_fraction(
    board: Board,
    cores: list[int],
    inputs: np.ndarray,
    mvm_mode: int,
    *,
    lengths: list[int] | None = None,
) -> tuple[np.ndarray, int]:
    """Measured fraction of input vectors that saturate at least one conversion, per core.

    Args:
        board: the board.
        cores: C cores, run in parallel.
        inputs: (C, n, 256) int8 inputs per core.
        mvm_mode: 1 or 4.
        lengths: how many of each core's n inputs are real (the rest padding); default all.

    Returns the fractions (C,) and the core-MVMs spent.
    """
    x = np.asarray(inputs)
    if x.ndim != 3 or x.shape[0] != len(cores):
        raise LimitError(f"inputs must be ({len(cores)}, n, 256), got {x.shape}")
    parts = [x] if mvm_mode == 1 else [np.clip(x, 0, None), np.clip(x, None, 0)]
    hit = np.zeros(x.shape[:2], bool)
    per_input = len(cores) * board.geometry.rows * 4
    step = max(1, (board.identity.max_payload - 64) // per_input)
    for part in parts:
        part8 = part.astype(np.int8)
        for s in range(0, x.shape[1], step):
            counts = board.mvm(cores, part8[:, s : s + step], mode=mvm_mode, output="raw")
            top = np.maximum(counts.positive, counts.negative) >= SATURATION_COUNTS
            hit[:, s : s + step] |= top.any(axis=2)
    real = [x.shape[1]] * len(cores) if lengths is None else [int(n) for n in lengths]
    if len(real) != len(cores) or not all(0 < n <= x.shape[1] for n in real):
        raise LimitError(f"lengths must be one count in 1..{x.shape[1]} per core, got {real}")
    fractions = np.array([hit[i, :n].mean() for i, n in enumerate(real)])
    return fractions, len(parts) * x.shape[1] * len(cores)  # padding runs too
