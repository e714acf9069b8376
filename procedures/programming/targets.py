"""Weights to conductance targets: the cell layout, Gmax and G = W·Gmax/Wmax.

A weight is stored on four PCM devices as (g0 + g1) − (g2 + g3) [LG Methods p.7-8; chip.md §2a];
all conductances are in verify-read ADC counts. The signed cell target is G = W·Gmax/Wmax
[LG Eq 1] with Gmax = 80 counts for one-device and 160 for two-device programming [LG §IV],
lowered where a row's bit-line current at full-scale inputs would exceed the row ADC's linear
range (~100 µA) [LG Methods; chip.md §1.4, §2d].
"""

from __future__ import annotations

import numpy as np

from drivers.errors import LimitError

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
