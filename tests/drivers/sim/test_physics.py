"""HERMES statistics, drift and read noise of the simulated chip against chip.md §3."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from drivers.errors import LimitError
from drivers.sim.chip import SimulatedChip
from drivers.sim.clock import ClockNotAdvanceableError, RealTimeClock, VirtualClock
from drivers.sim.physics import HermesStatistics


def test_hermes_reference_values() -> None:
    h = HermesStatistics(1)
    assert float(h.sigma_prog_us(0.0)) == pytest.approx(0.15782, abs=1e-4)
    assert float(h.sigma_prog_us(5.175)) == pytest.approx(0.87, abs=0.01)
    assert float(h.sigma_prog_us(10.35)) == pytest.approx(1.01, abs=0.01)
    assert float(h.mu_nu(0.01 * 10.35)) == pytest.approx(0.13, abs=0.002)
    assert float(h.mu_nu(0.5 * 10.35)) == pytest.approx(0.056, abs=0.001)
    assert float(h.mu_nu(10.35)) == pytest.approx(0.017, abs=0.001)
    assert float(h.read_noise_factor(1.0 + 20.0)) > 4.0
    h2 = HermesStatistics(2)
    assert h2.g_max_us == 20.7 and h2.t0_s == 300.0
    assert float(h2.sigma_prog_us(10.35)) == pytest.approx(0.99, abs=0.01)


@pytest.mark.parametrize("x", [0.05, 0.2, 0.5, 0.9])
def test_nu_of_programmed_devices_follows_hermes(x: float) -> None:
    chip = SimulatedChip(rng=np.random.default_rng(31), n_cores=1)
    g = np.full((256, 256, 4), x * 10.35, np.float32)
    chip.set_conductances_us(0, g)
    # stuck devices keep their state; targets above a device's SET maximum are clipped to it
    free = (chip._stuck[0] == 0) & (chip._g_set_max[0] >= x * 10.35)
    nu = chip._nu[0][free].astype(np.float64)
    h = HermesStatistics(1)
    mu, sigma = float(h.mu_nu(x * 10.35)), float(h.sigma_nu(x * 10.35))
    # ν = |N(μ, σ)|: a folded normal; compare with its exact mean and std.
    dist = stats.foldnorm(mu / sigma, scale=sigma)
    n = nu.size
    # ~230k samples: standard errors σ/√n ≈ 2e-5 (mean) and ~σ/√(2n) (std); 6 standard errors.
    assert abs(nu.mean() - dist.mean()) < 6 * dist.std() / math.sqrt(n)
    assert abs(nu.std() - dist.std()) < 6 * dist.std() / math.sqrt(2 * n) + 1e-4


def test_read_noise_of_repeated_verify_reads_matches_qs() -> None:
    chip = SimulatedChip(rng=np.random.default_rng(3), n_cores=1, offset_sigma_mhz=0.0)
    g_us = 6.0
    chip.set_conductances_us(0, np.full((256, 256, 4), g_us, np.float32))
    chip.clock.advance(1000.0)
    row = np.zeros(20000, np.uint8)
    col = np.full(20000, 7, np.uint8)
    dev = np.zeros(20000, np.uint8)
    g_true = float(chip.conductance_us(0)[0, 7, 0])
    g_prog = float(chip._g_prog[0, (0 * 256 + 7) * 4])
    counts = chip.verify_read(0, row, col, dev).astype(np.float64)
    h = HermesStatistics(1)
    scale = (
        chip.adc.gain_mhz_per_ua[0, 0, 0] * 0.2 * chip._verify_t_eff_ns * 1e-3
    )  # counts per µS of this row (B_NL negligible at 1.2 µA)
    sigma_counts = float(h.read_noise_sigma_us(g_prog, g_true, 1000.0)) * scale
    measured = counts.std(ddof=1)
    # σ from 20k reads: relative standard error 0.5 %; flooring adds 1/12 count² of variance.
    expected = math.sqrt(sigma_counts**2 + 1.0 / 12.0)
    assert measured == pytest.approx(expected, rel=0.04)


def test_drift_follows_power_law_on_virtual_clock() -> None:
    chip = SimulatedChip(rng=np.random.default_rng(4), n_cores=1)
    chip.set_conductances_us(0, np.full((256, 256, 4), 5.0, np.float32))
    g0 = chip._g_prog[0].copy()
    nu = chip._nu[0].copy()
    for dt in (0.0, 10.0, 1e3, 1e6):
        chip.clock.advance(dt)
        t = chip.clock.now_s - chip._t_prog[0]
        expected = g0 * ((t + 200.0) / 200.0) ** (-nu.astype(np.float64))
        got = chip.conductance_us(0).reshape(-1)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # one decade of time at t >> t0 lowers G by 10^-ν
    assert float(np.median(chip.conductance_us(0))) < 5.0 * 0.8


def test_virtual_clock_validation() -> None:
    clock = VirtualClock()
    assert clock.advance(1.5) == 1.5
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(LimitError):
            clock.advance(bad)
    assert clock.now_s == 1.5
    with pytest.raises(LimitError):
        VirtualClock(-2.0)
    real = RealTimeClock()
    assert real.now_s >= 0.0
    with pytest.raises(ClockNotAdvanceableError):
        real.advance(1.0)
