"""Vectorised output-referred MVM against a naive per-device noisy model; 1- vs 4-phase."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from drivers.sim.adc import NEGATIVE, POSITIVE
from drivers.sim.chip import SimulatedChip

ROWS_CHECKED = 6
TRIALS = 3000


def _programmed_chip(seed: int, g_max_us: float = 4.0) -> tuple[SimulatedChip, np.ndarray]:
    chip = SimulatedChip(rng=np.random.default_rng(seed), n_cores=1)
    rng = np.random.default_rng(seed + 1)
    w = rng.uniform(-1.0, 1.0, (256, 256))
    w[rng.random((256, 256)) < 0.3] = 0.0
    g = np.zeros((256, 256, 4), np.float32)
    g[..., 0] = np.maximum(w, 0) * g_max_us
    g[..., 2] = np.maximum(-w, 0) * g_max_us
    g[..., 1] = 0.05
    g[..., 3] = 0.05
    chip.set_conductances_us(0, g)
    chip.clock.advance(200.0)
    x = rng.integers(-127, 128, 256)
    x[rng.random(256) < 0.3] = 0
    return chip, x.astype(np.int8)


def _naive(chip: SimulatedChip, x: np.ndarray, mode: int, trials: int) -> tuple[np.ndarray, ...]:
    """Each device gets its own Gaussian read noise per MVM; then the same ADC."""
    rng = np.random.default_rng(99)
    g_d, g_p, tau = chip._device_state(0, slice(None))
    sigma = chip._read_sigma_us(g_d, g_p, tau).reshape(256, 256, 4)[:ROWS_CHECKED]
    g = g_d.reshape(256, 256, 4)[:ROWS_CHECKED]
    v = chip.mvm_read_voltage_mv * 1e-3 / 127.0
    xp = np.maximum(x, 0).astype(np.float64)
    xn = np.maximum(-x, 0).astype(np.float64)
    rows = np.arange(ROWS_CHECKED)
    pos = np.zeros((trials, ROWS_CHECKED), np.int64)
    neg = np.zeros((trials, ROWS_CHECKED), np.int64)
    delta = chip._p["one_phase_asymmetry"]
    for t in range(trials):
        gn = g + sigma * rng.standard_normal(g.shape)
        g_plus = gn[..., 0] + gn[..., 1]
        g_minus = gn[..., 2] + gn[..., 3]
        if mode == 4:
            phases = (g_plus @ xp, g_minus @ xn, g_minus @ xp, g_plus @ xn)
            c = [
                chip.adc.convert(0, POSITIVE, (v * ph).astype(np.float32), 128.0, rows=rows)[0]
                for ph in phases
            ]
            pos[t] = c[0].astype(int) + c[1]
            neg[t] = c[2].astype(int) + c[3]
        else:
            fwd = g_plus @ xp + g_minus @ xn
            rev = g_minus @ xp + g_plus @ xn
            i = (v * (fwd - (1.0 - delta) * rev)).astype(np.float32)
            cp = chip.adc.convert(0, POSITIVE, np.abs(i), 128.0, rows=rows)[0]
            cn = chip.adc.convert(0, NEGATIVE, np.abs(i), 128.0, rows=rows)[0]
            pos[t] = np.where(i >= 0, cp, 0)
            neg[t] = np.where(i < 0, cn, 0)
    return pos, neg


@pytest.mark.parametrize("mode", [4, 1])
def test_vectorised_mvm_matches_naive_per_device_noise(mode: int) -> None:
    chip, x = _programmed_chip(12)
    naive_p, naive_n = _naive(chip, x, mode, TRIALS)
    inputs = np.broadcast_to(x, (1, TRIALS, 256)).copy()
    p, n = chip.mvm_raw(np.array([0]), inputs, mode)
    fast_p = p[0, :, :ROWS_CHECKED].astype(np.int64)
    fast_n = n[0, :, :ROWS_CHECKED].astype(np.int64)
    for fast, naive in ((fast_p, naive_p), (fast_n, naive_n)):
        for r in range(ROWS_CHECKED):
            a, b = fast[:, r].astype(float), naive[:, r].astype(float)
            if a.std() == 0 and b.std() == 0:
                assert a.mean() == b.mean()
                continue
            se = np.sqrt((a.var() + b.var()) / TRIALS)
            assert abs(a.mean() - b.mean()) < 5 * se + 0.05, (r, a.mean(), b.mean())
            # variance ratio: SE of a sample variance ratio at n = 3000 is ~3.7 %
            ratio = (a.var() + 1 / 12) / (b.var() + 1 / 12)
            assert 0.85 < ratio < 1.18, (r, a.var(), b.var())
            assert stats.ks_2samp(a, b, method="asymp").pvalue > 1e-4


def _relative_error(chip: SimulatedChip, mode: int, x: np.ndarray, repeats: int) -> float:
    """Systematic MVM error: outputs averaged over repeats (read noise / √repeats), per-row
    affine calibration, residual norm relative to the fitted output norm."""
    p, n = chip.mvm_raw(np.array([0]), np.tile(x, (repeats, 1))[None], mode)
    y = (p[0].astype(np.float64) - n[0]).reshape(repeats, len(x), 256).mean(axis=0)
    g = chip.conductance_us(0).astype(np.float64)
    w = (g[..., 0] + g[..., 1]) - (g[..., 2] + g[..., 3])
    ideal = x.astype(np.float64) @ w.T
    err = fit_norm = 0.0
    for r in range(256):  # per-row least-squares gain/offset (what the LDPU calibration does)
        a = np.column_stack([ideal[:, r], np.ones(len(ideal))])
        coef, *_ = np.linalg.lstsq(a, y[:, r], rcond=None)
        err += float(np.sum((a @ coef - y[:, r]) ** 2))
        fit_norm += float(np.sum((a @ coef) ** 2))
    return float(np.sqrt(err / fit_norm))


def test_one_phase_is_less_accurate_than_four_phase() -> None:
    chip, _ = _programmed_chip(21, g_max_us=8.0)
    rng = np.random.default_rng(5)
    x = rng.integers(-127, 128, (256, 256)).astype(np.int8)
    x[rng.random(x.shape) < 0.3] = 0
    e1 = _relative_error(chip, 1, x, 25)
    e4 = _relative_error(chip, 4, x, 25)
    assert e1 > 1.3 * e4, (e1, e4)
