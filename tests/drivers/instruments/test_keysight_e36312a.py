"""Keysight E36312A driver: protocol replay against the pyvisa-sim definitions (E36300
Programming Guide syntax, channel lists ``(@n)``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.errors import LimitError
from drivers.instruments import CommandError, KeysightE36312A
from drivers.sim.instruments import fresh_backend

RESOURCE = "USB0::0x2A8D::0x1102::MY61000123::INSTR"


def sent(supply: KeysightE36312A) -> list[str]:
    return [command for command, _ in supply.transcript if command != "SYST:ERR?"]


@pytest.fixture
def supply(tmp_path: Path) -> Iterator[KeysightE36312A]:
    with KeysightE36312A(RESOURCE, backend=fresh_backend("keysight_e36312a", tmp_path)) as psu:
        yield psu


def test_identity(supply: KeysightE36312A) -> None:
    assert supply.identity.startswith("Keysight Technologies,E36312A")


@pytest.mark.parametrize("channel", [1, 2, 3])
def test_per_channel_settings_round_trip(supply: KeysightE36312A, channel: int) -> None:
    output = supply.channel(channel)
    output.voltage_setpoint_v = 0.8
    output.current_limit_a = 0.25
    output.output_enabled = True
    assert output.voltage_setpoint_v == pytest.approx(0.8)
    assert output.current_limit_a == pytest.approx(0.25)
    assert output.output_enabled is True
    assert sent(supply) == [
        f"VOLT 8.000000E-01, (@{channel})",
        f"CURR 2.500000E-01, (@{channel})",
        f"OUTP 1, (@{channel})",
        f"VOLT? (@{channel})",
        f"CURR? (@{channel})",
        f"OUTP? (@{channel})",
    ]
    others = [n for n in (1, 2, 3) if n != channel]
    assert all(supply.channel(n).voltage_setpoint_v == 0.0 for n in others)


def test_readbacks(supply: KeysightE36312A) -> None:
    assert supply.channel(1).measured_voltage_v == pytest.approx(0.7999)
    assert supply.channel(1).measured_current_a == pytest.approx(0.4)
    assert sent(supply) == ["MEAS:VOLT? (@1)", "MEAS:CURR? (@1)"]


@pytest.mark.parametrize(
    ("channel", "attribute", "value"),
    [
        (1, "voltage_setpoint_v", 6.5),  # output 1 is rated 6 V
        (2, "voltage_setpoint_v", 25.1),
        (1, "voltage_setpoint_v", -0.1),
        (2, "current_limit_a", 1.5),  # outputs 2, 3 are rated 1 A
        (1, "current_limit_a", 5.5),
        (3, "output_enabled", "on"),
        (3, "voltage_setpoint_v", float("inf")),
    ],
)
def test_per_channel_limits_refuse_before_writing(
    supply: KeysightE36312A, channel: int, attribute: str, value: object
) -> None:
    with pytest.raises(LimitError):
        setattr(supply.channel(channel), attribute, value)
    assert list(supply.transcript) == []


def test_a_higher_rated_value_is_fine_on_the_25_volt_outputs(supply: KeysightE36312A) -> None:
    supply.channel(2).voltage_setpoint_v = 12.0
    assert supply.channel(2).voltage_setpoint_v == pytest.approx(12.0)


@pytest.mark.parametrize("channel", [0, 4, 1.0])
def test_unknown_channels_are_refused(supply: KeysightE36312A, channel: object) -> None:
    with pytest.raises(LimitError):
        supply.channel(channel)  # type: ignore[arg-type]


def test_error_queue_becomes_a_typed_error(supply: KeysightE36312A) -> None:
    with pytest.raises(CommandError) as info:
        supply.write("APPL CH1,1.0,0.1")
    assert info.value.code == -113


def test_shutdown_ramps_every_output_to_zero_and_disables_it(supply: KeysightE36312A) -> None:
    for channel, volts in ((1, 0.8), (2, 1.8), (3, 3.0)):
        supply.channel(channel).voltage_setpoint_v = volts
        supply.channel(channel).output_enabled = True
    supply.transcript.clear()
    supply.shutdown()
    commands = sent(supply)
    ramp3 = [c for c in commands if c.startswith("VOLT ") and c.endswith("(@3)")]
    assert len(ramp3) == 10 and ramp3[-1] == "VOLT 0.000000E+00, (@3)"
    assert [c for c in commands if c.startswith("OUTP ")] == [
        "OUTP 0, (@3)",
        "OUTP 0, (@2)",
        "OUTP 0, (@1)",
    ]
    # every step goes down: no setpoint above the previous one
    levels = [float(c.split()[1].rstrip(",")) for c in ramp3]
    assert levels == sorted(levels, reverse=True) and levels[0] < 3.0
    for channel in (1, 2, 3):
        assert supply.channel(channel).voltage_setpoint_v == 0.0
        assert supply.channel(channel).output_enabled is False
