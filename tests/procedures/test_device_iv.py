"""Single-device I–V and R-vs-pulse on the simulated station's SMU and test device."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from chipctl.station import OpenStation, default_station
from procedures.base import Data, Stop
from procedures.device_iv import DeviceIV, IVStation, fit_conductance
from procedures.power import PowerUp


@pytest.fixture
def station() -> Iterator[OpenStation]:
    with default_station(board_url="mockchip://?seed=2&cores=1", time_scale=0.0).open() as opened:
        opened.sleep = lambda seconds: None
        yield opened


def data(records: list) -> dict[str, list[np.ndarray]]:
    out: dict[str, list[np.ndarray]] = {}
    for record in records:
        if isinstance(record, Data):
            out.setdefault(record.stream, []).append(record.values)
    return out


def test_fit_conductance() -> None:
    volts = np.linspace(-0.2, 0.2, 5)
    g_us, offset = fit_conductance(volts, 5e-6 * volts + 1e-9)
    assert g_us == pytest.approx(5.0) and offset == pytest.approx(1e-9)


def test_iv_sweep_streams_with_units_and_recovers_the_conductance(station: OpenStation) -> None:
    protocol_view: IVStation = station
    assert station.simulator is not None
    station.simulator.device.set_conductance_us(6.0)
    station.simulator.clock.advance(1000.0)
    truth = station.simulator.device.conductance_us()
    procedure = DeviceIV(station=protocol_view, points=41)
    units = {spec.name: spec.units for spec in procedure.streams()}
    assert units["iv_voltage"] == "V" and units["iv_current"] == "A"
    assert units["iv_conductance"] == "uS" and units["resistance"] == "ohm"
    records = list(procedure.run(station.board))
    stop = records[-1]
    assert isinstance(stop, Stop) and stop.status == "success", stop
    streams = data(records)
    assert streams["iv_voltage"][0].shape == (41,)
    assert stop.results["conductance_us"] == pytest.approx(truth, rel=0.06)
    assert stop.results["points_in_compliance"] == 0
    assert not station.smu.output_enabled  # cleanup: SMU off


def test_compliance_is_reported(station: OpenStation) -> None:
    assert station.simulator is not None
    station.simulator.device.set_conductance_us(10.0)
    records = list(DeviceIV(station=station, compliance_a=1e-6).run(station.board))
    stop = records[-1]
    assert isinstance(stop, Stop) and stop.status == "success"
    assert stop.results["points_in_compliance"] > 0
    assert np.max(np.abs(data(records)["iv_current"][0])) <= 1e-6 * (1 + 1e-9)


def test_resistance_rises_with_pulse_amplitude(station: OpenStation) -> None:
    list(PowerUp(station=station).run(station.board))
    records = list(
        DeviceIV(station=station, pulse_count=5, pulse_start_ua=300, pulse_stop_ua=600).run(
            station.board
        )
    )
    stop = records[-1]
    assert isinstance(stop, Stop) and stop.status == "success", stop
    streams = data(records)
    amplitudes = [float(a) for a in streams["pulse_amplitude"]]
    assert amplitudes == pytest.approx([300, 375, 450, 525, 600])
    conductance = np.array([float(g) for g in streams["conductance"]])
    assert np.all(np.diff(conductance) < 0), conductance  # melt-quench: more amplitude, lower G


def test_programming_is_refused_with_the_rails_off(station: OpenStation) -> None:
    assert station.simulator is not None
    pulses_before = station.simulator.device.pulses_applied
    records = list(DeviceIV(station=station, pulse_count=2).run(station.board))
    stop = records[-1]
    assert isinstance(stop, Stop) and stop.status == "failed"
    assert "limit rails" in stop.reason
    assert station.simulator.device.pulses_applied == pulses_before


def test_programming_is_refused_outside_the_temperature_window(station: OpenStation) -> None:
    list(PowerUp(station=station).run(station.board))
    assert station.simulator is not None
    station.chuck.setpoint_c = 70.0
    station.chuck.heater_range = "HIGH"
    station.simulator.clock.advance(600.0)
    records = list(DeviceIV(station=station, pulse_count=2).run(station.board))
    stop = records[-1]
    assert isinstance(stop, Stop) and stop.status == "failed"
    assert "temperature_window_c" in stop.reason


def test_sweep_beyond_the_smu_limit_is_refused_before_anything_is_set(
    station: OpenStation,
) -> None:
    station.smu.transcript.clear()
    records = list(DeviceIV(station=station, v_stop_v=1.5).run(station.board))
    stop = records[-1]
    assert isinstance(stop, Stop) and stop.status == "failed"
    assert "smu_max_voltage_v" in stop.reason
    assert not any(c.startswith(":SOUR:SWE") for c, _ in station.smu.transcript)


def test_pulse_amplitude_above_the_limit_is_refused(station: OpenStation) -> None:
    list(PowerUp(station=station).run(station.board))
    records = list(DeviceIV(station=station, pulse_count=1, reset_ua=800.0).run(station.board))
    stop = records[-1]
    assert isinstance(stop, Stop) and stop.status == "failed"
    assert "max_programming_ua" in stop.reason
