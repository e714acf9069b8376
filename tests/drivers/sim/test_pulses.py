"""Pulse-level programming: the published program-and-verify loop against the device model.

The loop is the one of [LG Methods] (chip.md §2a): RESET, SET, read G_SET, then 125 ns partial
pulses whose amplitude is updated in proportion to the error (Papandreou 2011), stopping at
|error| < 5 counts or after 30 iterations. Its result, read once t0 = 200 s after programming
(read noise included), must have the HERMES 1-device σ_prog(G) [AK; chip.md §3] within ±20 %.
"""

from __future__ import annotations

import numpy as np
import pytest

from drivers.sim.chip import PULSE_PARTIAL, PULSE_RESET, PULSE_SET, SimulatedChip
from drivers.sim.physics import HermesStatistics
from drivers.sim.pulses import STUCK_NONE

COUNTS_PER_US = 80.0 / 10.35
GMAX_COUNTS = 80.0
LEVELS = (0.1, 0.25, 0.5, 0.75, 1.0)
PER_LEVEL = 800
TOL_COUNTS = 5.0
I_LOW_UA, I_HIGH_UA = 250.0, 650.0  # controller's initial linear map (not the model's truth)


def _pulse(
    chip: SimulatedChip,
    r: np.ndarray,
    c: np.ndarray,
    kind: int,
    amp: np.ndarray | float,
    width: float,
) -> None:
    n = r.size
    chip.apply_pulses(
        0,
        r.astype(np.uint8),
        c.astype(np.uint8),
        np.zeros(n, np.uint8),
        np.full(n, kind, np.uint8),
        np.broadcast_to(np.asarray(amp), (n,)).round().astype(np.uint16),
        np.full(n, width, np.uint16),
    )


def _read(chip: SimulatedChip, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    return chip.verify_read(0, r.astype(np.uint8), c.astype(np.uint8), np.zeros(r.size, np.uint8))


def program_and_verify(
    chip: SimulatedChip, r: np.ndarray, c: np.ndarray, target: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised ODP program-and-verify on device 0; returns (converged, iterations)."""
    n = r.size
    _pulse(chip, r, c, PULSE_RESET, 700.0, 125)
    _pulse(chip, r, c, PULSE_SET, 125.0, 250)
    g_set = np.maximum(_read(chip, r, c).astype(np.float64), 1.0)
    gain = (I_HIGH_UA - I_LOW_UA) / g_set  # µA per count of error
    amp = np.clip(I_LOW_UA + (1.0 - target / g_set) * (I_HIGH_UA - I_LOW_UA), 125.0, 700.0)
    active = np.ones(n, bool)
    iterations = np.zeros(n, int)
    for _ in range(30):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        _pulse(chip, r[idx], c[idx], PULSE_PARTIAL, amp[idx], 125)
        err = _read(chip, r[idx], c[idx]).astype(np.float64) - target[idx]
        iterations[idx] += 1
        done = np.abs(err) < TOL_COUNTS
        active[idx[done]] = False
        amp[idx] = np.clip(amp[idx] + gain[idx] * err, 125.0, 700.0)
    return ~active, iterations


@pytest.fixture(scope="module")
def pv_result() -> dict[float, tuple[float, float, float, float]]:
    chip = SimulatedChip(rng=np.random.default_rng(2024), n_cores=1)
    stuck = chip._stuck[0].reshape(256, 256, 4)[..., 0]
    flat = np.flatnonzero(stuck.reshape(-1) == STUCK_NONE)
    flat = np.random.default_rng(7).permutation(flat)[: len(LEVELS) * PER_LEVEL]
    r, c = np.divmod(flat, 256)
    target = np.repeat(np.array(LEVELS) * GMAX_COUNTS, PER_LEVEL)
    converged, _ = program_and_verify(chip, r, c, target)
    chip.clock.advance(200.0)  # ~t0 after programming
    err = _read(chip, r, c).astype(np.float64) - target
    hermes = HermesStatistics(1)
    out = {}
    for k, x in enumerate(LEVELS):
        sl = slice(k * PER_LEVEL, (k + 1) * PER_LEVEL)
        ok = converged[sl]
        expected = float(hermes.sigma_prog_us(x * GMAX_COUNTS / COUNTS_PER_US)) * COUNTS_PER_US
        e = err[sl][ok]
        out[x] = (float(e.std(ddof=1)) / expected, float(ok.mean()), float(e.mean()), expected)
    return out


@pytest.mark.parametrize("level", LEVELS)
def test_pv_sigma_matches_hermes(
    pv_result: dict[float, tuple[float, float, float, float]], level: float
) -> None:
    ratio, converged, bias, expected = pv_result[level]
    # The σ estimate from ~750 devices has a relative standard error of ~3 %; ±20 % is the
    # design goal, so a miss is a model error, not sampling noise.
    assert 0.8 <= ratio <= 1.2, f"σ ratio {ratio:.3f} at x={level} (σ_HERMES {expected:.2f})"
    assert converged >= (0.9 if level >= 1.0 else 0.97), f"converged {converged:.3f}"
    assert abs(bias) < expected, f"mean error {bias:.2f} counts"


def test_pulse_order_and_duplicates() -> None:
    """A later pulse on the same device in one batch sees the earlier one's result."""
    chip = SimulatedChip(rng=np.random.default_rng(5), n_cores=1)
    stuck = chip._stuck[0].reshape(256, 256, 4)
    r, c = (int(v) for v in np.argwhere(stuck[..., 0] == STUCK_NONE)[0])
    rows = np.array([r, r, r], np.uint8)
    cols = np.array([c, c, c], np.uint8)
    dev = np.zeros(3, np.uint8)
    # SET then RESET: the device must end RESET; RESET then SET: it must end SET.
    chip.apply_pulses(
        0,
        rows[:2],
        cols[:2],
        dev[:2],
        np.array([1, 0], np.uint8),
        np.array([125, 700], np.uint16),
        np.array([250, 125], np.uint16),
    )
    assert chip.conductance_us(0)[r, c, 0] < 0.65
    chip.apply_pulses(
        0,
        rows[:2],
        cols[:2],
        dev[:2],
        np.array([0, 1], np.uint8),
        np.array([700, 125], np.uint16),
        np.array([125, 250], np.uint16),
    )
    assert chip.conductance_us(0)[r, c, 0] > 5.0


def test_partial_pulse_response_is_monotone_in_amplitude() -> None:
    chip = SimulatedChip(rng=np.random.default_rng(9), n_cores=1)
    rng = np.random.default_rng(1)
    g_set = np.full(4000, 12.0, np.float32)
    means = []
    for amp in (300.0, 400.0, 500.0, 600.0):
        g, _ = chip.pulses.apply(
            np.full(4000, 12.0, np.float32),
            g_set,
            np.full(4000, PULSE_PARTIAL),
            np.full(4000, amp),
            np.full(4000, 125.0),
        )
        means.append(float(g.mean()))
    del rng
    assert all(a > b for a, b in zip(means[:-1], means[1:], strict=True))


def test_set_maximum_distribution_matches_gmax_80_counts() -> None:
    """10th percentile of SET states on the least conductive of 64 cores ≈ 80 counts [LG §IV]."""
    from drivers.sim.pulses import PulseModel

    model = PulseModel(rng=np.random.default_rng(3), device=HermesStatistics(1))
    g = model.sample_set_max_us(64, 65536)
    p10 = np.percentile(g, 10, axis=1).min() * COUNTS_PER_US
    assert 70.0 < p10 < 90.0


def test_yield_cut_fails_about_one_percent() -> None:
    chip = SimulatedChip(rng=np.random.default_rng(11), n_cores=2)
    r, c, d = (
        a.reshape(-1).astype(np.uint8)
        for a in np.meshgrid(np.arange(256), np.arange(256), np.arange(4), indexing="ij")
    )
    n = r.size
    fails = []
    for core in range(2):
        chip.apply_pulses(
            core,
            r,
            c,
            d,
            np.zeros(n, np.uint8),
            np.full(n, 700, np.uint16),
            np.full(n, 125, np.uint16),
        )
        g_reset = chip.verify_read(core, r, c, d)
        chip.apply_pulses(
            core,
            r,
            c,
            d,
            np.ones(n, np.uint8),
            np.full(n, 125, np.uint16),
            np.full(n, 250, np.uint16),
        )
        g_set = chip.verify_read(core, r, c, d)
        fails.append(float(np.mean((g_reset >= 5) | (g_set <= 50))))
    normal = fails[1 - int(chip.outlier_core or 0)]
    outlier = fails[int(chip.outlier_core or 0)]
    assert 0.004 < normal < 0.01
    assert 0.012 < outlier < 0.022
