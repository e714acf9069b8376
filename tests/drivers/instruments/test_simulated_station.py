"""The drivers against the simulated station (SCPI over TCP, pyvisa-py), backed by physics."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

from drivers.instruments import (
    CommandError,
    ExecutionError,
    Keithley2450,
    KeysightE36312A,
    LakeShore335,
)
from drivers.sim.instruments.station_server import (
    DEFAULT_RAIL_LOADS_OHM,
    HEATER_RATES_K_PER_MIN,
    SimulatedStation,
    normalise_header,
    spawned,
)


@pytest.fixture
def station() -> Iterator[SimulatedStation]:
    with SimulatedStation(seed=7) as simulated:
        yield simulated


@pytest.fixture
def smu(station: SimulatedStation) -> Iterator[Keithley2450]:
    with Keithley2450(station.resources["smu"]) as instrument:
        instrument.source_function = "VOLT"
        instrument.current_limit_a = 1e-4
        instrument.output_enabled = True
        yield instrument


def sweep_conductance_us(smu: Keithley2450, points: int = 41) -> float:
    volts, amps = smu.sweep_voltage_linear(-0.2, 0.2, points)
    return float(volts @ amps / (volts @ volts) * 1e6)


def expected_sweep_sigma_us(station: SimulatedStation, volts: np.ndarray) -> float:
    """σ of the through-origin slope: σ_G·√(ΣV⁴)/ΣV² with the device model's read noise."""
    return station.device.read_sigma_us() * float(np.sqrt(np.sum(volts**4)) / np.sum(volts**2))


def test_resources_are_loopback_sockets(station: SimulatedStation) -> None:
    assert set(station.resources) == {"smu", "supply", "chuck"}
    for resource in station.resources.values():
        assert resource.startswith("TCPIP::127.0.0.1::") and resource.endswith("::SOCKET")
    assert len(set(station.ports.values())) == 3


@pytest.mark.parametrize("amplitude_ua", [700.0, 450.0, 350.0])
def test_iv_sweep_recovers_the_programmed_conductance(
    station: SimulatedStation, smu: Keithley2450, amplitude_ua: float
) -> None:
    smu.pulse_current(700e-6, 125e-9)  # the published RESET
    if amplitude_ua != 700.0:
        smu.pulse_current(amplitude_ua * 1e-6, 125e-9)
    station.clock.advance(1000.0)  # past the relaxation (τ_r 1 s, complete at t0 = 200 s)
    truth = station.device.conductance_us()
    points = 41
    sigma = expected_sweep_sigma_us(station, np.linspace(-0.2, 0.2, points))
    measured = sweep_conductance_us(smu, points)
    assert abs(measured - truth) < 4 * sigma + 1e-3, (measured, truth, sigma)
    # the pulse response: RESET ~0.05 µS, higher amplitude -> lower conductance
    g_set = station.device.g_set_max_us
    expected_fraction = min(max((650.0 - amplitude_ua) / 400.0, 0.0), 1.0)
    assert truth == pytest.approx(expected_fraction * g_set, abs=0.25 * g_set + 0.3)


def test_a_set_pulse_crystallises_and_drift_lowers_the_conductance(
    station: SimulatedStation, smu: Keithley2450
) -> None:
    smu.pulse_current(700e-6, 125e-9)
    smu.pulse_current(125e-6, 250e-9, 50e-9)  # the published SET: slow trailing edge
    station.clock.advance(200.0)
    early = station.device.conductance_us()
    assert early > 0.7 * station.device.g_set_max_us
    station.clock.advance(1e5)
    late = station.device.conductance_us()
    ratio = ((1e5 + 400.0) / 400.0) ** -station.device.nu
    assert late == pytest.approx(early * ratio, rel=0.02)
    assert late < early


def test_compliance_limits_the_current(station: SimulatedStation, smu: Keithley2450) -> None:
    station.device.set_conductance_us(10.0)
    smu.current_limit_a = 1e-6  # 10 µS at 0.2 V would be 2 µA
    volts, amps = smu.sweep_voltage_linear(0.0, 0.2, 5)
    assert np.all(np.abs(amps) <= 1e-6 * (1 + 1e-9))
    assert amps[-1] == pytest.approx(1e-6)


def test_a_fixed_range_overflows_like_the_2450(
    station: SimulatedStation, smu: Keithley2450
) -> None:
    station.device.set_conductance_us(10.0)
    smu.current_range_a = 1e-7
    smu.source_voltage_v = 0.2
    assert smu.measure_current_a() == pytest.approx(9.9e37)
    smu.current_autorange_enabled = True
    assert smu.measure_current_a() == pytest.approx(2e-6, rel=0.5)


def test_instrument_errors_over_tcp(smu: Keithley2450) -> None:
    with pytest.raises(CommandError):
        smu.write(":SOUR:NOPE 1")
    smu.output_enabled = False
    with pytest.raises(ExecutionError) as info:
        smu.pulse_current(300e-6, 125e-9)  # pulses need the output on
    assert info.value.code == -221


def test_supply_readbacks_follow_settings_and_load(station: SimulatedStation) -> None:
    with KeysightE36312A(station.resources["supply"]) as supply:
        vdd = supply.channel(1)
        assert vdd.measured_voltage_v == pytest.approx(0.0, abs=1e-3)
        vdd.current_limit_a = 1.0
        vdd.voltage_setpoint_v = 0.8
        vdd.output_enabled = True
        load = DEFAULT_RAIL_LOADS_OHM[0]
        assert vdd.measured_voltage_v == pytest.approx(0.8, abs=1e-3)
        assert vdd.measured_current_a == pytest.approx(0.8 / load, abs=1e-4)
        vdd.current_limit_a = 0.2  # below 0.4 A: constant current, V = I_lim·R
        assert vdd.measured_current_a == pytest.approx(0.2, abs=1e-4)
        assert vdd.measured_voltage_v == pytest.approx(0.2 * load, abs=1e-3)
        vdd.output_enabled = False
        assert vdd.measured_voltage_v == 0.0 and vdd.measured_current_a == 0.0
        io = supply.channel(2)
        io.voltage_setpoint_v = 1.8
        io.output_enabled = True
        assert io.measured_current_a == pytest.approx(1.8 / DEFAULT_RAIL_LOADS_OHM[1], abs=1e-4)


def test_chuck_approaches_the_setpoint_at_the_set_rate(station: SimulatedStation) -> None:
    with LakeShore335(station.resources["chuck"]) as chuck:
        start = chuck.temperature_k
        assert start == pytest.approx(295.15, abs=0.05)
        chuck.setpoint_k = start + 20.0
        station.clock.advance(60.0)
        assert chuck.temperature_k == pytest.approx(start, abs=0.05)  # heater still off
        chuck.heater_range = "MED"
        station.clock.advance(60.0)
        rate = HEATER_RATES_K_PER_MIN[2]
        assert chuck.temperature_k == pytest.approx(start + rate, abs=0.05)
        chuck.heater_range = "HIGH"
        station.clock.advance(60.0)
        assert chuck.temperature_k == pytest.approx(start + rate + 10.0, abs=0.05)
        station.clock.advance(600.0)
        assert chuck.temperature_k == pytest.approx(start + 20.0, abs=0.05)  # holds there
        assert chuck.temperature_c == pytest.approx(start + 20.0 - 273.15, abs=0.05)
        chuck.shutdown()
        station.clock.advance(900.0)  # heater off: relaxes to ambient with τ = 900 s
        assert chuck.temperature_k == pytest.approx(start + 20.0 * np.exp(-1), abs=0.1)


def test_header_normalisation() -> None:
    assert normalise_header(":SOURce1:VOLTage:LEVel:IMMediate:AMPLitude") == "SOUR:VOLT"
    assert normalise_header("MEASure:SCALar:VOLTage:DC?") == "MEAS:VOLT?"
    assert normalise_header("OUTPut:STATe?") == "OUTP?"


def test_long_form_commands_work(station: SimulatedStation) -> None:
    with Keithley2450(station.resources["smu"]) as smu:
        smu.write(":SOURce:VOLTage:LEVel 1.5E-1")
        assert smu.source_voltage_v == pytest.approx(0.15)


def test_spawned_station_prints_its_resources_and_serves() -> None:
    with spawned(seed=2, time_scale=0.0) as resources:
        assert set(resources) == {"smu", "supply", "chuck"}
        with LakeShore335(resources["chuck"]) as chuck:
            assert chuck.identity.startswith("LSCI,MODEL335")


def test_module_main_announces_json() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "drivers.sim.instruments.station_server", "--time-scale", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        resources = json.loads(process.stdout.readline())
        assert all("127.0.0.1" in value for value in resources.values())
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def test_each_instrument_runs_on_its_own_clock_and_model() -> None:
    """One module per instrument, each given a clock and its model (never the station)."""
    from drivers.sim.clock import VirtualClock
    from drivers.sim.devices import PcmLike
    from drivers.sim.instruments.smu import SimulatedSmu, SimulatedTestDevice
    from drivers.sim.instruments.supply import SimulatedRail, SimulatedSupply
    from drivers.sim.instruments.temperature import SimulatedChuck, SimulatedTemperatureController

    clock = VirtualClock()
    rng = np.random.default_rng(0)
    device = SimulatedTestDevice(np.random.default_rng(1), clock, model=PcmLike())
    smu = SimulatedSmu(device, clock=clock)
    assert smu.handle_line("SOUR:VOLT 0.2;OUTP ON;SIM:CLOC:ADV 10;SIM:CLOC?") == ["1.000000E+01"]
    amps = float(smu.handle_line("MEAS:CURR?")[0])
    assert amps == pytest.approx(0.2e-6 * device.conductance_us(), rel=0.2)
    assert clock.now_s == pytest.approx(10.0 + 0.02)  # one reading: 1 PLC
    supply = SimulatedSupply([SimulatedRail(10.0, 6.0, 1.0)], clock=clock, rng=rng)
    supply.handle_line("VOLT 1.0,(@1);OUTP 1,(@1)")
    assert float(supply.handle_line("MEAS:CURR? (@1)")[0]) == pytest.approx(0.1, abs=1e-4)
    chuck = SimulatedTemperatureController(SimulatedChuck(clock), clock=clock, rng=rng)
    assert float(chuck.handle_line("KRDG? A")[0]) == pytest.approx(295.15, abs=0.05)
