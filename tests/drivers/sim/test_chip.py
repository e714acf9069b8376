"""SimulatedChip contract: determinism, clock latencies, periphery state, back doors."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.errors import LimitError
from drivers.ldpu import LdpuCoefficients
from drivers.sim.chip import PULSE_PARTIAL, PULSE_SET, SimulatedChip
from drivers.sim.clock import RealTimeClock
from drivers.sim.fastnormal import standard_normal
from drivers.sim.mvm_numba import NumbaMvmKernel


def _session(seed: int) -> list[np.ndarray]:
    chip = SimulatedChip(rng=np.random.default_rng(seed), n_cores=2)
    rng = np.random.default_rng(0)
    chip.set_conductances_us(1, rng.uniform(0, 8, (256, 256, 4)).astype(np.float32))
    r = rng.integers(0, 256, 50).astype(np.uint8)
    c = rng.integers(0, 256, 50).astype(np.uint8)
    d = rng.integers(0, 4, 50).astype(np.uint8)
    chip.apply_pulses(
        0,
        r,
        c,
        d,
        np.full(50, PULSE_PARTIAL, np.uint8),
        np.full(50, 400, np.uint16),
        np.full(50, 125, np.uint16),
    )
    out = [chip.verify_read(0, r, c, d)]
    x = rng.integers(-127, 128, (2, 8, 256)).astype(np.int8)
    out += list(chip.mvm_raw(np.array([0, 1]), x, 1))
    out += list(chip.mvm_raw(np.array([1, 0]), x, 4))
    out.append(chip.mvm_ldpu(np.array([1]), x[:1], 4))
    out.append(chip.conductance_us(0))
    return out


def test_determinism_for_a_seed() -> None:
    a, b, c = _session(1), _session(1), _session(2)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    assert any(not np.array_equal(u, v) for u, v in zip(a, c, strict=True))


def test_clock_advances_by_modelled_latencies() -> None:
    chip = SimulatedChip(rng=np.random.default_rng(1), n_cores=2)
    t = chip.clock.now_s
    chip.mvm_raw(np.array([0, 1]), np.zeros((2, 10, 256), np.int8), 4)
    assert chip.clock.now_s - t == pytest.approx(10 * 520e-9)
    t = chip.clock.now_s
    chip.mvm_raw(np.array([0]), np.zeros((1, 3, 256), np.int8), 1)
    assert chip.clock.now_s - t == pytest.approx(3 * 133e-9)
    t = chip.clock.now_s
    rows = np.arange(256, dtype=np.uint8)
    chip.verify_read(0, rows, rows, np.zeros(256, np.uint8))  # one diagonal: 256 rows at once
    assert chip.clock.now_s - t == pytest.approx(768e-9)
    t = chip.clock.now_s
    cols = np.arange(256, dtype=np.uint8)
    n = 256
    chip.apply_pulses(
        0,
        cols,
        cols,
        np.zeros(n, np.uint8),
        np.zeros(n, np.uint8),
        np.full(n, 700, np.uint16),
        np.full(n, 125, np.uint16),
    )
    assert chip.clock.now_s - t == pytest.approx(8 * 225e-9)  # 8 columns per write head


def test_reset_periphery_keeps_devices_and_clock() -> None:
    chip = SimulatedChip(rng=np.random.default_rng(1), n_cores=1)
    chip.set_conductances_us(0, np.full((256, 256, 4), 3.0, np.float32))
    g = chip.conductance_us(0).copy()
    chip.mvm_read_voltage_mv = 300
    chip.set_ldpu(0, LdpuCoefficients(relu=True))
    chip.adc_saturation_count = 5
    now = chip.clock.now_s
    chip.reset_periphery()
    assert chip.get_ldpu(0) == LdpuCoefficients.identity()
    assert chip.mvm_read_voltage_mv == 200.0 and chip.adc_saturation_count == 0
    assert chip.clock.now_s == now
    np.testing.assert_array_equal(chip.conductance_us(0), g)
    with pytest.raises(LimitError):
        chip.mvm_read_voltage_mv = 450


def test_saturation_is_counted_and_clipped() -> None:
    chip = SimulatedChip(rng=np.random.default_rng(1), n_cores=1)
    chip.set_conductances_us(0, np.full((256, 256, 4), 8.0, np.float32))
    p, n = chip.mvm_raw(np.array([0]), np.full((1, 2, 256), 127, np.int8), 4)
    assert chip.adc_saturation_count > 0
    assert p.max() <= 2 * 422 and p.dtype == np.uint16


def test_mvm_ldpu_applies_coefficients() -> None:
    chip = SimulatedChip(rng=np.random.default_rng(1), n_cores=1)
    chip.set_conductances_us(0, np.full((256, 256, 4), 0.0, np.float32))
    chip.set_ldpu(0, LdpuCoefficients(affine_offset=np.full(256, -7.0)))
    out = chip.mvm_ldpu(np.array([0]), np.zeros((1, 2, 256), np.int8), 4)
    assert out.dtype == np.int8 and np.all(out == -7)


def test_set_conductances_validation_and_real_time_clock() -> None:
    chip = SimulatedChip(rng=np.random.default_rng(1), n_cores=1, clock=RealTimeClock())
    with pytest.raises(LimitError):
        chip.set_conductances_us(0, np.full((256, 256, 3), 1.0))
    with pytest.raises(LimitError):
        chip.set_conductances_us(0, np.full((256, 256, 4), np.nan))
    with pytest.raises(LimitError):
        chip.conductance_us(1)
    chip.mvm_raw(np.array([0]), np.zeros((1, 1, 256), np.int8), 1)  # no advance on real time
    with pytest.raises(TypeError):
        SimulatedChip(rng=np.random.default_rng(1), n_cores=1, no_such_parameter=1.0)


def test_fast_normal_is_standard_normal() -> None:
    from scipy import stats

    z = standard_normal(np.random.default_rng(3), 200_001).astype(np.float64)
    assert abs(z.mean()) < 5 / np.sqrt(z.size)
    assert abs(z.std() - 1.0) < 5 / np.sqrt(2 * z.size)
    assert stats.kstest(z, "norm").pvalue > 1e-3


def test_cores_draw_from_independent_random_streams() -> None:
    """Work on one core never shifts another core's random numbers (resume relies on it)."""

    def core0_results(touch_core1: bool) -> tuple[np.ndarray, ...]:
        chip = SimulatedChip(rng=np.random.default_rng(21), n_cores=2)
        idx = np.arange(16, dtype=np.uint8)
        ones = np.ones(16, np.uint8)
        if touch_core1:
            chip.apply_pulses(
                1,
                idx,
                idx,
                0 * ones,
                ones,
                125 * ones.astype(np.uint16),
                250 * ones.astype(np.uint16),
            )
            chip.verify_read(1, idx, idx, 0 * ones)
            chip.mvm_raw(np.array([1]), np.ones((1, 8, 256), np.int8), 4)
        chip.apply_pulses(
            0, idx, idx, 0 * ones, ones, 125 * ones.astype(np.uint16), 250 * ones.astype(np.uint16)
        )
        reads = chip.verify_read(0, idx, idx, 0 * ones)
        pos, neg = chip.mvm_raw(np.array([0]), np.ones((1, 8, 256), np.int8), 4)
        return reads, pos, neg

    for clean, touched in zip(core0_results(False), core0_results(True), strict=True):
        np.testing.assert_array_equal(clean, touched)


def test_overlapping_blas_thread_limits_restore_the_original_count() -> None:
    from drivers.sim.threads import BlasThreads

    lib = BlasThreads._find()
    if lib is None:
        pytest.skip("OpenBLAS not found through ctypes")
    before = int(lib[0]())
    first, second = BlasThreads(1), BlasThreads(1)
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the first leaves before the second
    assert int(lib[0]()) == 1
    second.__exit__(None, None, None)
    assert int(lib[0]()) == before


def test_kept_read_noise_amplitudes_follow_reprogramming() -> None:
    """The operand rebuild keeps Q_s(g_prog) per core; after the core is programmed again
    (statistically and by pulses) the variances equal a rebuild that computes Q_s afresh."""
    chip = SimulatedChip(rng=np.random.default_rng(3), n_cores=1, kernel="numpy")
    x = np.random.default_rng(4).integers(-127, 128, (1, 8, 256)).astype(np.int8)
    chip.set_conductances_us(0, np.full((256, 256, 4), 4.0))
    chip.mvm_raw(np.array([0]), x, 4)  # builds the operands and keeps Q_s
    for reprogram in (
        lambda: chip.set_conductances_us(0, np.full((256, 256, 4), 20.0)),
        lambda: chip.apply_pulses(0, np.arange(64), np.arange(64), np.zeros(64, int),
                                  np.full(64, PULSE_SET), np.full(64, 300.0), np.full(64, 500.0)),
    ):  # fmt: skip
        reprogram()
        chip.mvm_raw(np.array([0]), x, 4)
        kept = chip._core_cache(0).operands
        chip._cache[0], chip._q_s[0] = None, None
        fresh = chip._core_cache(0).operands
        np.testing.assert_array_equal(kept.v_sum, fresh.v_sum)
        np.testing.assert_array_equal(kept.v_diff, fresh.v_diff)


class _KernelWithoutRunLdpu:
    """A kernel as written before ``run_ldpu`` existed: prepare, run and ldpu only."""

    def __init__(self) -> None:
        self._inner = NumbaMvmKernel()
        self.prepare = self._inner.prepare
        self.run = self._inner.run
        self.ldpu = self._inner.ldpu


def test_mvm_ldpu_with_a_kernel_without_run_ldpu() -> None:
    """The chip falls back on run, then ldpu, and the outputs are those of the fused path."""
    outputs = []
    for kernel in (NumbaMvmKernel(), _KernelWithoutRunLdpu()):
        chip = SimulatedChip(rng=np.random.default_rng(3), n_cores=2, kernel=kernel)  # type: ignore[arg-type]
        rng = np.random.default_rng(4)
        for core in (0, 1):
            chip.set_conductances_us(core, rng.uniform(0, 8, (256, 256, 4)).astype(np.float32))
            chip.set_ldpu(core, LdpuCoefficients(affine_scale=np.full(256, 0.05 * (core + 1))))
        x = rng.integers(-127, 128, (2, 40, 256)).astype(np.int8)
        outputs.append(chip.mvm_ldpu(np.array([1, 0]), x, 4, rows=(10, 90)))
        assert chip.clock.now_s > 0 and chip.adc_saturation_count >= 0
    assert outputs[0].shape == (2, 40, 80) and len(np.unique(outputs[0])) > 10
    np.testing.assert_array_equal(outputs[0], outputs[1])
