"""Lake Shore 335 driver: protocol replay against the pyvisa-sim definitions (manual ch. 6
syntax; errors from the standard event status register, ``*ESR?``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.errors import LimitError
from drivers.instruments import CommandError, LakeShore335
from drivers.sim.instruments import fresh_backend

RESOURCE = "GPIB0::12::INSTR"


def sent(controller: LakeShore335) -> list[str]:
    return [command for command, _ in controller.transcript if command != "*ESR?"]


@pytest.fixture
def chuck(tmp_path: Path) -> Iterator[LakeShore335]:
    with LakeShore335(RESOURCE, backend=fresh_backend("lakeshore335", tmp_path)) as controller:
        yield controller


def test_identity_and_readback(chuck: LakeShore335) -> None:
    assert chuck.identity.startswith("LSCI,MODEL335")
    assert chuck.temperature_k == pytest.approx(298.15)
    assert chuck.temperature_c == pytest.approx(25.0)
    assert sent(chuck) == ["*IDN?", "KRDG? A", "CRDG? A"]


def test_setpoint_round_trip(chuck: LakeShore335) -> None:
    chuck.setpoint_k = 313.15
    assert chuck.setpoint_k == pytest.approx(313.15)
    chuck.setpoint_c = 50.0
    assert chuck.setpoint_k == pytest.approx(323.15)
    assert chuck.setpoint_c == pytest.approx(50.0)
    assert sent(chuck)[:3] == ["SETP 1,313.150", "SETP? 1", "SETP 1,323.150"]
    assert [c for c, _ in chuck.transcript][:2] == ["SETP 1,313.150", "*ESR?"]


@pytest.mark.parametrize(("name", "code"), [("OFF", 0), ("LOW", 1), ("MED", 2), ("HIGH", 3)])
def test_heater_range(chuck: LakeShore335, name: str, code: int) -> None:
    chuck.heater_range = name
    assert chuck.heater_range == name
    assert sent(chuck) == [f"RANGE 1,{code}", "RANGE? 1"]


@pytest.mark.parametrize(
    ("attribute", "value"),
    [("setpoint_k", -1.0), ("setpoint_k", 1600.0), ("heater_range", "MAX"), ("setpoint_c", -300)],
)
def test_validators_refuse_before_writing(
    chuck: LakeShore335, attribute: str, value: object
) -> None:
    with pytest.raises(LimitError):
        setattr(chuck, attribute, value)
    assert list(chuck.transcript) == []


def test_a_command_error_is_read_from_the_status_register(chuck: LakeShore335) -> None:
    with pytest.raises(CommandError) as info:
        chuck.write("RAMP 1,1,5")  # not in the simulated subset
    assert info.value.code == -100
    chuck.check_errors()  # *ESR? clears on read


def test_shutdown_turns_the_heater_off(chuck: LakeShore335) -> None:
    chuck.heater_range = "HIGH"
    chuck.shutdown()
    assert chuck.heater_range == "OFF"
    assert "RANGE 1,0" in sent(chuck)


def test_unknown_input_is_refused() -> None:
    with pytest.raises(LimitError):
        LakeShore335("GPIB0::12::INSTR", backend="@sim", input_channel="C")
