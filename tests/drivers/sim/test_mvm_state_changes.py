"""What the simulated chip keeps between MVMs (core operands, LDPU row slices, ADC constants)
never outlives a change of state: after an LDPU load, programming pulses, a read-voltage change,
a clock advance or a board reset, an MVM on a core that ran MVMs before the change equals the
same MVM on a board where that core ran none (the same seed, steps and clock)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from drivers.board import Board
from drivers.ldpu import LdpuCoefficients
from drivers.sim.adc import AdcBank


def _coefficients(seed: int, relu: bool) -> LdpuCoefficients:
    rng = np.random.default_rng(seed)
    return LdpuCoefficients(
        gain_pos=rng.uniform(0.5, 1.5, 256),
        offset_pos=rng.uniform(-2, 2, 256),
        gain_neg=rng.uniform(0.5, 1.5, 256),
        offset_neg=rng.uniform(-2, 2, 256),
        affine_scale=rng.uniform(0.5, 1.5, 256),
        affine_offset=rng.uniform(-3, 3, 256),
        relu=relu,
    )


STEPS: dict[str, Callable[[Board], object]] = {
    "ldpu-load": lambda b: b.load_ldpu(0, _coefficients(2, relu=True)),
    "program": lambda b: b.apply_pulses(0, [3, 40, 90], [5, 6, 7], [0, 2, 1], "set", 300, 100),
    "read-voltage": lambda b: setattr(b, "mvm_read_voltage_mv", 260),
    "clock": lambda b: b.advance_clock(3600.0),
    "reset": lambda b: b.reset(),
}


def _inputs() -> np.ndarray:
    x = np.random.default_rng(4).integers(-127, 128, (3, 256)).astype(np.int8)
    x[:, 200:] = 0
    return x


@pytest.mark.parametrize("kernel", ["numba", "numpy"])
@pytest.mark.parametrize("step", sorted(STEPS))
def test_an_mvm_after_a_change_equals_one_on_a_board_without_earlier_mvms(
    step: str, kernel: str
) -> None:
    url = f"mockchip://?seed=5&cores=2&kernel={kernel}"
    x = _inputs()
    with Board(url) as warm, Board(url) as cold:
        for board in (warm, cold):
            board.apply_pulses(0, np.arange(256), np.arange(256) % 200, 0, "set", 250, 200)
            board.load_ldpu(0, _coefficients(1, relu=False))
            board.mvm_read_voltage_mv = 300
            board.advance_clock(1000.0)  # core operands now kept for ~1 s of MVMs
        for mode in (1, 4):
            # the same latencies on both boards; only ``warm`` runs core 0 (its operands, the
            # row slices of its LDPU table, its ADC constants), ``cold`` runs core 1
            warm.mvm(0, x, mode=mode, output="ldpu", rows=(0, 128))
            cold.mvm(1, x, mode=mode, output="raw")
        STEPS[step](warm)
        STEPS[step](cold)
        for mode in (1, 4):
            for rows in ((0, 128), (64, 256)):
                expected = cold.mvm(0, x, mode=mode, output="ldpu", rows=rows)
                got = warm.mvm(0, x, mode=mode, output="ldpu", rows=rows)
                assert np.array_equal(got, expected), (mode, rows)
            counts, expected_counts = warm.mvm(0, x, mode=mode), cold.mvm(0, x, mode=mode)
            assert np.array_equal(counts.positive, expected_counts.positive), mode
            assert np.array_equal(counts.negative, expected_counts.negative), mode


def test_adc_constants_are_kept_and_their_parameters_cannot_change() -> None:
    bank = AdcBank(rng=np.random.default_rng(3), n_cores=2)
    a, b, c = bank.row_constants(1, 0, 128.0)
    t = np.float32(0.128)
    assert np.array_equal(a, bank.gain_mhz_per_ua[1, 0] * t)
    assert np.array_equal(b, bank.b_nl_per_ua[1, 0])
    assert np.array_equal(c, bank.offset_mhz[1] * t)
    assert all(x is y for x, y in zip(bank.row_constants(1, 0, 128.0), (a, b, c), strict=True))
    assert bank.row_constants(1, 1, 128.0)[0] is not a
    assert not np.array_equal(bank.row_constants(1, 0, 256.0)[0], a)
    signed = bank.signed_constants(0, 128.0)
    g = bank.gain_mhz_per_ua[0] * t
    assert np.array_equal(signed[1], (g[0] - g[1]) * np.float32(0.5))
    assert all(x is y for x, y in zip(bank.signed_constants(0, 128.0), signed, strict=True))
    # the constants are kept because the parameters they come from are fixed
    for parameters in (bank.gain_mhz_per_ua, bank.b_nl_per_ua, bank.offset_mhz):
        with pytest.raises(ValueError, match="read-only"):
            parameters[0, ...] = 1.0
