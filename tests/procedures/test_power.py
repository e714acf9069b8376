"""Power sequencing on the simulated station: order, ramps, readback checks, abort."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import pytest

from chipctl.station import OpenStation, default_station
from procedures.base import Data, Stop
from procedures.power import PowerDown, PowerStation, PowerUp, descending_steps


@pytest.fixture
def station() -> Iterator[OpenStation]:
    with default_station(board_url="mockchip://?seed=1&cores=1", time_scale=0.0).open() as opened:
        opened.sleep = lambda seconds: None  # the ramp rate is checked on the dwell requests
        yield opened


def rows(records: list, stream: str) -> list[float]:
    return [float(r.values) for r in records if isinstance(r, Data) and r.stream == stream]


def outputs(station: OpenStation) -> list[tuple[bool, float]]:
    return [
        (station.supply.channel(n).output_enabled, station.supply.channel(n).measured_voltage_v)
        for n in (1, 2, 3)
    ]


def test_open_station_satisfies_the_protocol(station: OpenStation) -> None:
    protocol_view: PowerStation = station
    assert protocol_view.limits is station.limits


def test_power_up_sequences_in_order_with_bounded_ramps(station: OpenStation) -> None:
    dwell: list[float] = []
    station.sleep = dwell.append
    records = list(PowerUp(station=station).run(station.board))
    stop = records[-1]
    assert isinstance(stop, Stop) and stop.status == "success", stop
    assert stop.results["sequence"] == ["vdd", "vddio", "vpcm"]
    channels = rows(records, "rail")
    # each rail is complete before the next starts: the channel column only ever increases
    assert channels == sorted(channels) and set(channels) == {1, 2, 3}
    setpoints = np.array(rows(records, "setpoint"))
    for channel, target in ((1, 0.8), (2, 1.8), (3, 3.0)):
        ramp = setpoints[np.array(channels) == channel]
        assert ramp[-1] == pytest.approx(target)
        steps = np.diff(np.concatenate([[0.0], ramp]))
        assert np.all(steps <= station.limits.ramp_step_v + 1e-9)
    # one dwell per step at step/rate seconds: the slew never exceeds the ramp rate
    assert len(dwell) == len(setpoints)
    assert dwell == pytest.approx([station.limits.step_dwell_s] * len(dwell))
    readbacks = np.array(rows(records, "voltage"))
    assert np.allclose(readbacks, setpoints, atol=0.002)
    assert station.rails_ok()
    assert all(on for on, _ in outputs(station))


def test_power_down_reverses_the_order(station: OpenStation) -> None:
    list(PowerUp(station=station).run(station.board))
    records = list(PowerDown(station=station).run(station.board))
    stop = records[-1]
    assert isinstance(stop, Stop) and stop.status == "success", stop
    assert stop.results["sequence"] == ["vpcm", "vddio", "vdd"]
    channels = rows(records, "rail")
    assert channels == sorted(channels, reverse=True)
    assert all(not on and abs(v) < 1e-3 for on, v in outputs(station))


def test_abort_mid_ramp_leaves_the_chip_powered_down(station: OpenStation) -> None:
    calls = 0

    def stop_after_a_while() -> bool:
        nonlocal calls
        calls += 1
        return calls > 12  # inside the second rail's ramp

    records = list(PowerUp(station=station).run(station.board, should_stop=stop_after_a_while))
    stop = records[-1]
    assert isinstance(stop, Stop) and stop.status == "aborted"
    assert stop.results["sequence"] == ["vdd"]
    assert stop.results["powered_down_by_cleanup"] == ["vddio", "vdd"]
    assert all(not on and abs(v) < 1e-3 for on, v in outputs(station))
    assert all(station.supply.channel(n).voltage_setpoint_v == 0.0 for n in (1, 2, 3))


def test_a_readback_failure_fails_and_powers_down(station: OpenStation) -> None:
    # a fault on the I/O rail: its load is far heavier than expected, the supply goes into
    # constant current and the rail never reaches 1.8 V
    assert station.simulator is not None
    station.simulator.rails[1].load_ohm = 0.5
    records = list(PowerUp(station=station).run(station.board))
    stop = records[-1]
    assert isinstance(stop, Stop) and stop.status == "failed"
    assert "vddio" in stop.reason and "ReadbackError" in stop.reason
    assert all(not on for on, _ in outputs(station))


def test_a_rail_above_its_limit_refuses_power_down_but_cleanup_brings_it_down(
    station: OpenStation,
) -> None:
    list(PowerUp(station=station).run(station.board))
    station.supply.channel(1).voltage_setpoint_v = 1.2  # behind the station's back
    records = list(PowerDown(station=station).run(station.board))
    stop = records[-1]
    assert isinstance(stop, Stop) and stop.status == "failed"
    assert "rails.vdd.max_voltage_v" in stop.reason
    assert all(not on and abs(v) < 1e-3 for on, v in outputs(station))


def test_ramps_are_lazy_iterators(station: OpenStation) -> None:
    """The limits hand power sequencing a generator, not a list: any step count costs no
    memory (issue 18: a 1 nV step used to build the whole list and die in MemoryError)."""
    steps = station.limits.ramp_steps(3, 0.0, 3.0)
    assert isinstance(steps, Iterator) and not isinstance(steps, list | tuple)
    down = descending_steps(3.0, 1e-9)
    assert isinstance(down, Iterator)
    assert next(down) == pytest.approx(3.0 - 1e-9)
    assert list(descending_steps(0.3, 0.1)) == pytest.approx([0.2, 0.1, 0.0])
    assert list(descending_steps(0.0, 0.1)) == [0.0]


def test_power_up_and_down_with_a_fine_step(station: OpenStation) -> None:
    """A fine (5 mV) step: hundreds of setpoints per rail, consumed one at a time."""
    station.limits = dataclasses.replace(station.limits, ramp_step_v=0.005)
    records = list(PowerUp(station=station).run(station.board))
    stop = records[-1]
    assert isinstance(stop, Stop) and stop.status == "success", stop
    assert len(rows(records, "setpoint")) == 160 + 360 + 600
    assert station.rails_ok()
    stop = list(PowerDown(station=station).run(station.board))[-1]
    assert isinstance(stop, Stop) and stop.status == "success", stop
    assert all(not on and abs(v) < 1e-3 for on, v in outputs(station))
