"""Fidelity of program-and-verify on the simulated chip against the published statistics.

Targets (chip.md §2a, §3): after P&V at the published settings (5 counts, 30 iterations) the
programming error of the *true* conductance at t0 (200 s for one device, 300 s for a TDP pair
[AK hermes]) matches the HERMES σ_prog fit for one device (ODP, g_max 10.35 µS = 80 counts) and
for two devices (TDP, the pair's sum, g_max 20.7 µS = 160 counts) within ±20 % at several G
levels; TDP has the smaller weight error at every nonzero weight [LG Fig 2c]; the equivalent
weight precision is ≈ 3 bit for ODP and 3-4 bit for TDP [LG §IV]; GDP lowers the MVM error.

"True" conductance = the mean of 16 verify reads at t0, in the read's own ADC counts (the read
noise averages out, and the targets are in those counts: the row ADC's gain is part of the scale
P&V programs to). Equivalent precision: the bits b of a uniform quantiser over [−Wmax, Wmax]
with the same rms error, b = log2(2·Wmax/(rms_w·√12)), rms over the nonzero weight levels.
"""

from __future__ import annotations

import numpy as np
import pytest

from drivers.board import Board
from drivers.sim.physics import HermesStatistics
from procedures.base import Data, Stop
from procedures.program_verify import ProgramVerify
from procedures.programming.gdp import mvm_error

COUNTS_PER_US = 80.0 / 10.35
LEVELS = (0.1, 0.25, 0.5, 0.75, 1.0)
SETTINGS = {"odp": (80.0, 200.0, 1), "tdp": (160.0, 300.0, 2)}  # Gmax counts, t0 s, devices
READS_AVERAGED = 16


def level_weights(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Weights at ±LEVELS (and zeros), random signs; the level index per cell (0 = zero)."""
    rng = np.random.default_rng(seed)
    level = rng.integers(0, len(LEVELS) + 1, (256, 256))
    sign = np.where(rng.random((256, 256)) < 0.5, -1.0, 1.0)
    return np.array((0.0, *LEVELS))[level] * sign, level


def averaged_cells(board: Board) -> np.ndarray:
    rows, cols, devices = np.indices((256, 256, 4)).reshape(3, -1)
    reads = [board.verify_read(0, rows, cols, devices) for _ in range(READS_AVERAGED)]
    g = np.mean(np.asarray(reads, np.float64), axis=0).reshape(256, 256, 4)
    return (g[..., 0] + g[..., 1]) - (g[..., 2] + g[..., 3])


@pytest.fixture(scope="module")
def programmed() -> dict[str, dict[str, np.ndarray]]:
    weights, level = level_weights()
    out = {}
    for mode, (g_max, t0, _) in SETTINGS.items():
        procedure = ProgramVerify(weights=weights, cores=[0], mode=mode, g_max_counts=g_max)
        with Board("mockchip://?seed=5&cores=1") as board:
            records = list(procedure.run(board))
            assert isinstance(records[-1], Stop) and records[-1].status == "success"
            yield_map = next(
                r.values for r in records if isinstance(r, Data) and r.stream == "yield_map"
            )
            board.advance_clock(t0)
            cells = averaged_cells(board)
        ok = yield_map == 0
        error = np.abs(cells) - np.abs(weights) * g_max  # error of the programmed polarity
        out[mode] = {"error": error, "ok": ok, "level": level}
    return out


def sigma_ratio(data: dict[str, np.ndarray], mode: str, k: int) -> float:
    g_max, _, devices = SETTINGS[mode]
    x = LEVELS[k - 1]
    mask = (data["level"] == k) & data["ok"]
    expected = float(HermesStatistics(devices).sigma_prog_us(x * g_max / COUNTS_PER_US))
    return float(data["error"][mask].std()) / (expected * COUNTS_PER_US)


@pytest.mark.parametrize("mode", ["odp", "tdp"])
@pytest.mark.parametrize("k", range(1, len(LEVELS) + 1))
def test_programming_sigma_matches_hermes(programmed: dict, mode: str, k: int) -> None:
    ratio = sigma_ratio(programmed[mode], mode, k)
    assert 0.8 <= ratio <= 1.2, f"{mode} x={LEVELS[k - 1]}: σ ratio {ratio:.3f}"


def weight_error(data: dict[str, np.ndarray], mode: str, k: int) -> float:
    """std(W − Ŵ)/Wmax at level k (dimensionless) [LG Fig 2c]."""
    mask = (data["level"] == k) & data["ok"]
    return float(data["error"][mask].std()) / SETTINGS[mode][0]


def equivalent_bits(data: dict[str, np.ndarray], mode: str) -> float:
    mask = (data["level"] > 0) & data["ok"]
    rms = float(np.sqrt(np.mean(data["error"][mask] ** 2))) / SETTINGS[mode][0]
    return float(np.log2(2.0 / (rms * np.sqrt(12.0))))


def test_tdp_weight_error_is_below_odp_at_every_level(programmed: dict) -> None:
    for k in range(1, len(LEVELS) + 1):
        odp, tdp = (
            weight_error(programmed["odp"], "odp", k),
            weight_error(programmed["tdp"], "tdp", k),
        )
        assert tdp < odp, f"x={LEVELS[k - 1]}: TDP {tdp:.3%} ≥ ODP {odp:.3%}"


def test_equivalent_weight_precision(programmed: dict) -> None:
    odp, tdp = equivalent_bits(programmed["odp"], "odp"), equivalent_bits(programmed["tdp"], "tdp")
    assert 2.5 <= odp <= 3.5, f"ODP {odp:.2f} bit"
    assert 3.0 <= tdp <= 4.5, f"TDP {tdp:.2f} bit"
    assert tdp > odp


def mvm_error_at_t0(gdp: bool) -> float:
    rng = np.random.default_rng(1)
    weights = rng.uniform(-1, 1, (256, 256))
    weights[rng.random(weights.shape) < 0.3] = 0
    procedure = ProgramVerify(weights=weights, cores=[0], mode="tdp", gdp=gdp, seed=2)
    with Board("mockchip://?seed=4&cores=1") as board:
        stop = list(procedure.run(board))[-1]
        assert isinstance(stop, Stop) and stop.status == "success", stop
        g_max = stop.results["cores"]["0"]["g_max_counts"]
        board.advance_clock(300.0)
        x = np.random.default_rng(9).integers(-127, 128, (2048, 256)).astype(np.int8)
        y = board.mvm(0, x).difference.astype(np.float64)
    ideal = x.astype(np.float64) @ (weights * g_max / np.abs(weights).max()).T
    return mvm_error(y, ideal)


def test_gdp_lowers_the_mvm_error() -> None:
    iterative, refined = mvm_error_at_t0(False), mvm_error_at_t0(True)
    assert refined < 0.97 * iterative, f"GDP {refined:.4f} vs iterative {iterative:.4f}"
