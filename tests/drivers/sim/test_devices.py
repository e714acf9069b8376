"""The device-model seam: both models against chip.md §3, URL selection, chip and station agree."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from scipy import stats

from drivers.board import Board
from drivers.errors import DriverError
from drivers.sim.board_model import BoardOptions
from drivers.sim.chip import SimulatedChip
from drivers.sim.clock import VirtualClock
from drivers.sim.devices import (
    DEVICE_MODELS,
    DeviceModel,
    HermesPcm,
    PcmLike,
    UnknownDeviceModelError,
    device_model,
)
from drivers.sim.instruments.station_server import SimulatedStation
from drivers.sim.mvm import NumpyMvmKernel

N = 200_000


# ---- statistics against the published numbers (chip.md §3) ------------------------------------


def test_hermes_statistics_match_chip_md() -> None:
    h = HermesPcm()
    assert (h.g_max_us, h.t0_s, h.t_read_s) == (10.35, 200.0, 512e-9)
    for x, sigma in ((0.0, 0.16), (0.5, 0.87), (1.0, 1.01)):
        assert float(h.sigma_prog_us(x * 10.35)) == pytest.approx(sigma, abs=0.01)
    for x, mu in ((0.01, 0.13), (0.2, 0.069), (0.5, 0.056), (1.0, 0.017)):
        assert float(h.mu_nu(x * 10.35)) == pytest.approx(mu, abs=0.0015)
    two = HermesPcm(num_devices=2)
    assert (two.g_max_us, two.t0_s) == (20.7, 300.0)
    for x, sigma in ((0.0, 0.17), (0.5, 0.99), (1.0, 1.09)):
        assert float(two.sigma_prog_us(x * 20.7)) == pytest.approx(sigma, abs=0.01)


def test_pcmlike_statistics_match_chip_md() -> None:
    p = PcmLike()
    assert (p.g_max_us, p.t0_s, p.t_read_s) == (25.0, 20.0, 250e-9)
    for x, sigma in ((0.0, 0.26), (0.5, 0.95), (1.0, 1.06)):
        assert float(p.sigma_prog_us(x * 25.0)) == pytest.approx(sigma, abs=0.01)
    assert float(p.mu_nu(0.1 * 25.0)) == pytest.approx(0.060, abs=0.001)
    assert float(p.sigma_nu(0.1 * 25.0)) == pytest.approx(0.023, abs=0.001)
    assert float(p.mu_nu(0.25 * 25.0)) == pytest.approx(0.049, abs=0.001)
    assert float(p.mu_nu(0.9 * 25.0)) == pytest.approx(0.049, abs=1e-9)  # clipped
    assert float(p.q_s(25.0)) == pytest.approx(0.0088)
    assert float(p.q_s(0.1 * 25.0)) == pytest.approx(0.0088 / 0.1**0.65)
    assert float(p.q_s(1e-6)) == pytest.approx(0.2)  # capped
    # aihwkit counts t from t0 after programming: the factor at t_inf = 1 s, 1 h, 1 d, 1 yr
    for t_inf, factor in ((1.0, 4.19), (3600.0, 4.77), (86400.0, 5.09), (3.15e7, 5.64)):
        assert float(p.read_noise_factor(t_inf + p.t0_s)) == pytest.approx(factor, abs=0.01)


@pytest.mark.parametrize("model", [HermesPcm(), PcmLike()], ids=["hermes", "pcmlike"])
@pytest.mark.parametrize("x", [0.05, 0.3, 0.8])
def test_sampled_nu_is_the_folded_normal_of_the_model(model: DeviceModel, x: float) -> None:
    g = np.full(N, x * model.g_max_us, np.float32)
    nu = model.sample_nu(g, np.random.default_rng(5)).astype(np.float64)
    mu, sigma = float(model.mu_nu(g[0])), float(model.sigma_nu(g[0]))
    dist = stats.foldnorm(mu / sigma, scale=sigma)
    assert nu.dtype == np.float64 and np.all(nu >= 0)
    # 6 standard errors of the mean and of the standard deviation
    assert abs(nu.mean() - dist.mean()) < 6 * dist.std() / math.sqrt(N)
    assert abs(nu.std() - dist.std()) < 6 * dist.std() / math.sqrt(2 * N) + 1e-5


@pytest.mark.parametrize("model", [HermesPcm(), PcmLike()], ids=["hermes", "pcmlike"])
def test_programming_and_read_noise_follow_the_model(model: DeviceModel) -> None:
    rng = np.random.default_rng(7)
    target = np.full(N, 0.5 * model.g_max_us, np.float32)
    g_p = model.sample_programmed_us(target, rng)
    assert g_p.dtype == np.float32
    sigma = float(model.sigma_prog_us(target[0]))
    assert g_p.mean() == pytest.approx(target[0], abs=6 * sigma / math.sqrt(N))
    assert g_p.std() == pytest.approx(sigma, rel=6 / math.sqrt(2 * N))
    # reads of one device 1000 s after programming: σ = G·Q_s(g_p)·√ln((t + t_read)/(2 t_read))
    g_d = np.full(N, target[0], np.float32)
    sigma_read = model.read_sigma_us(target[0], g_d, 1000.0)
    factor = math.sqrt(math.log((1000.0 + model.t_read_s) / (2 * model.t_read_s)))
    expected = float(target[0] * model.q_s(target[0]) * factor)
    assert float(sigma_read[0]) == pytest.approx(expected, rel=1e-5)
    reads = model.sample_read_us(g_d, sigma_read, rng).astype(np.float64)
    assert reads.std() == pytest.approx(expected, rel=6 / math.sqrt(2 * N))
    # the floor: a read right after programming sees t_obs = 1 ms, not 0
    at_zero = float(model.read_sigma_us(target[0], g_d[:1], 0.0)[0])
    at_floor = float(model.read_sigma_us(target[0], g_d[:1], model.read_noise_t_floor_s)[0])
    assert at_zero == at_floor > 0


@pytest.mark.parametrize("model", [HermesPcm(), PcmLike()], ids=["hermes", "pcmlike"])
def test_drift_is_the_power_law_with_the_model_t0(model: DeviceModel) -> None:
    nu = np.array([0.02, 0.06, 0.1], np.float64)
    g_p = np.array([2.0, 5.0, 9.0])
    for tau in (0.0, 10.0, 1e3, 1e6):
        got = model.conductance_us(g_p, np.zeros(3), nu, tau)
        expected = g_p * ((tau + model.t0_s) / model.t0_s) ** -nu
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    # the relaxation offset appears gradually and is complete at t0
    relax = np.full(3, 0.5)
    assert np.all(model.conductance_us(g_p, relax, 0 * nu, 0.0) == g_p)
    np.testing.assert_allclose(model.conductance_us(g_p, relax, 0 * nu, model.t0_s), g_p + 0.5)


# ---- the registry and the URL option --------------------------------------------------------


def test_registry_builds_each_model_by_name() -> None:
    assert set(DEVICE_MODELS) >= {"hermes", "pcmlike"}
    assert isinstance(device_model("hermes"), HermesPcm)
    assert isinstance(device_model("pcmlike"), PcmLike)
    with pytest.raises(UnknownDeviceModelError, match="known: hermes, pcmlike") as info:
        device_model("gst")
    assert isinstance(info.value, DriverError) and isinstance(info.value, ValueError)


def test_url_option_selects_the_device_model() -> None:
    assert BoardOptions.from_query("seed=1").devices == "hermes"
    assert isinstance(BoardOptions.from_query("seed=1").make_chip().devices, HermesPcm)
    options = BoardOptions.from_query("seed=1&cores=1&devices=pcmlike")
    assert isinstance(options.make_chip().devices, PcmLike)
    with pytest.raises(ValueError, match="unknown device model 'nope'; known: hermes, pcmlike"):
        BoardOptions.from_query("devices=nope")
    with pytest.raises(DriverError, match="known: hermes, pcmlike"):
        Board("mockchip://?devices=nope")


def _drift_ratio(url: str) -> float:
    """Mean verify read 1e5 s after a SET over the mean read right after it (256 devices)."""
    rows = np.arange(256)
    with Board(url) as board:
        board.apply_pulses(0, rows, rows, 0, "reset", 700, 125)
        board.apply_pulses(0, rows, rows, 0, "set", 125, 250)
        early = board.verify_read(0, rows, rows, 0).astype(np.float64)
        board.advance_clock(1e5)
        late = board.verify_read(0, rows, rows, 0).astype(np.float64)
    return float(late.mean() / early.mean())


def test_pcmlike_url_changes_the_physics() -> None:
    """SET devices (≈ 15.7 µS): HERMES ν ≈ 0.017 (x = 1), t0 200 s → 500^−0.017 ≈ 0.90;
    PCMLike ν ≈ 0.049 (x ≈ 0.63), t0 20 s → 5000^−0.049 ≈ 0.66."""
    hermes = _drift_ratio("mockchip://?seed=3&cores=1")
    pcmlike = _drift_ratio("mockchip://?seed=3&cores=1&devices=pcmlike")
    assert hermes == pytest.approx(500.0**-0.017, abs=0.03)
    assert pcmlike == pytest.approx(5000.0**-0.049, abs=0.03)


# ---- one model, one clock: the chip and the station's test device agree -------------------------


class _CountingHermes(HermesPcm):
    """HERMES statistics that count which holder called the shared equations."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def sample_nu(self, g_us: Any, rng: np.random.Generator) -> np.ndarray:
        self._count("sample_nu")
        return super().sample_nu(g_us, rng)

    def conductance_us(self, g_prog_us: Any, relax_us: Any, nu: Any, tau_s: Any) -> np.ndarray:
        self._count("conductance_us")
        return super().conductance_us(g_prog_us, relax_us, nu, tau_s)

    def read_sigma_us(self, g_prog_us: Any, g_us: Any, tau_s: Any) -> np.ndarray:
        self._count("read_sigma_us")
        return super().read_sigma_us(g_prog_us, g_us, tau_s)


def test_station_device_and_chip_share_the_model_and_the_clock() -> None:
    model = _CountingHermes()
    station = SimulatedStation(seed=4, devices=model)
    assert station.device.model is model
    chip = SimulatedChip(
        rng=np.random.default_rng(4), n_cores=1, clock=station.clock, devices=model
    )
    assert chip.devices is model and chip.pulses.device is model
    station_calls = dict(model.calls)
    assert station_calls["sample_nu"] >= 1  # the station's device sampled its ν from the model

    chip.set_conductances_us(0, np.full((256, 256, 4), 6.0, np.float32))
    i = (3 * 256 + 5) * 4 + 1
    device = station.device
    device.g_prog_us = float(chip._g_prog[0, i])
    device.nu = float(chip._nu[0, i])
    device.relax_us = float(chip._relax[0, i])
    device.t_prog_s = float(chip._t_prog[0, i])
    for step in (0.0, 1.0, 500.0, 1e5):
        station.clock.advance(step)  # one clock: the chip sees the same time
        on_chip = float(chip.conductance_us(0)[3, 5, 1])
        assert device.conductance_us() == pytest.approx(on_chip, rel=2e-6)
        g = np.float32(on_chip)
        tau = chip.clock.now_s - chip._t_prog[0, i]
        chip_sigma = float(chip._read_sigma_us(np.array([g]), chip._g_prog[0, i : i + 1], tau)[0])
        assert device.read_sigma_us() == pytest.approx(chip_sigma, rel=2e-6)
    assert model.calls["conductance_us"] > station_calls.get("conductance_us", 0)
    assert model.calls["read_sigma_us"] > station_calls.get("read_sigma_us", 0)


def test_station_reads_scatter_with_the_model_read_noise() -> None:
    station = SimulatedStation(seed=9, devices="pcmlike")
    assert isinstance(station.device.model, PcmLike)
    station.device.set_conductance_us(8.0)
    station.clock.advance(100.0)
    reads = np.array([station.device.read_conductance_us() for _ in range(4000)])
    sigma = station.device.read_sigma_us()  # 4000 reads take 0 s of virtual time
    assert reads.std(ddof=1) == pytest.approx(sigma, rel=6 / math.sqrt(2 * reads.size))
    assert reads.mean() == pytest.approx(station.device.conductance_us(), abs=6 * sigma / 63)


# ---- the MVM kernel seam ----------------------------------------------------------------------


class _RecordingKernel(NumpyMvmKernel):
    """The reference kernel, recording what the chip hands it."""

    def __init__(self) -> None:
        super().__init__(threads=2)
        self.runs: list[tuple[int, int]] = []

    def run(
        self,
        operands: Sequence[Any],
        adc: Any,
        cores: np.ndarray,
        x: np.ndarray,
        mode: int,
        rngs: Sequence[np.random.Generator],
        *,
        window_ns: float,
    ) -> tuple[np.ndarray, np.ndarray, int]:
        assert len(operands) == len(rngs) == cores.size == x.shape[0]
        self.runs.append((cores.size, mode))
        return super().run(operands, adc, cores, x, mode, rngs, window_ns=window_ns)


def test_chip_delegates_mvms_to_the_injected_kernel() -> None:
    x = np.random.default_rng(2).integers(-127, 128, (2, 8, 256)).astype(np.int8)
    results = []
    for kernel in ("numpy", _RecordingKernel()):
        chip = SimulatedChip(rng=np.random.default_rng(12), n_cores=2, kernel=kernel)
        chip.set_conductances_us(1, np.full((256, 256, 4), 2.0, np.float32))
        results.append(chip.mvm_raw(np.array([0, 1]), x, 4) + chip.mvm_raw(np.array([1]), x[:1], 1))
        if isinstance(kernel, _RecordingKernel):
            assert kernel.runs == [(2, 4), (1, 1)]
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


def test_virtual_clock_can_follow_wall_time() -> None:
    clock = VirtualClock(time_scale=1000.0)
    first = clock.now_s
    assert clock.advance(5.0) >= first + 5.0
    assert VirtualClock().now_s == 0.0


def test_documented_example_model_plugs_in() -> None:
    """The worked example of docs/simulator.md ("Adding a device model") runs as written."""
    from pathlib import Path

    page = Path(__file__).resolve().parents[3] / "docs" / "simulator.md"
    section = page.read_text(encoding="utf-8").split("## Adding a device model", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    try:
        exec(compile(code, str(page), "exec"), namespace)
        flat = namespace["FlatPcm"](nu_mean=0.08)
        g = np.full(N, 6.0, np.float32)
        nu = flat.sample_nu(g, np.random.default_rng(1))
        assert nu.dtype == np.float32 and nu.mean() == pytest.approx(0.08, abs=1e-3)
        with Board("mockchip://?seed=1&cores=1&devices=flat") as board:
            assert board.identify().board_id
        chip = BoardOptions.from_query("cores=1&devices=flat").make_chip()
        assert type(chip.devices).__name__ == "FlatPcm"
    finally:
        DEVICE_MODELS.pop("flat", None)
    with pytest.raises(UnknownDeviceModelError):
        device_model("flat")
