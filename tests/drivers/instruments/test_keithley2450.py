"""Keithley 2450 driver: protocol replay against the pyvisa-sim definitions.

Expected command strings are written from the 2450 Reference Manual's SCPI syntax; the YAML only
answers the exact strings, so a wrong command reaches the error queue and fails the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from drivers.errors import DriverError, LimitError
from drivers.instruments import (
    CommandError,
    DataOutOfRangeError,
    InstrumentConnectionError,
    Keithley2450,
    ReplyFormatError,
)
from drivers.sim.instruments import fresh_backend

RESOURCE = "USB0::0x05E6::0x2450::04096331::INSTR"


def sent(smu: Keithley2450) -> list[str]:
    """Commands written, without the error-queue reads."""
    return [command for command, _ in smu.transcript if command != "SYST:ERR?"]


@pytest.fixture
def backend(tmp_path: Path) -> str:
    return fresh_backend("keithley2450", tmp_path)


@pytest.fixture
def smu(backend: str) -> Iterator[Keithley2450]:
    with Keithley2450(RESOURCE, backend=backend) as instrument:
        yield instrument


def test_identity(smu: Keithley2450) -> None:
    assert smu.identity.startswith("KEITHLEY INSTRUMENTS,MODEL 2450")
    assert list(smu.transcript) == [("*IDN?", smu.identity)]


@pytest.mark.parametrize(
    ("attribute", "value", "command", "query"),
    [
        ("source_voltage_v", 0.2, ":SOUR:VOLT 2.000000E-01", ":SOUR:VOLT?"),
        ("source_voltage_v", -1.5, ":SOUR:VOLT -1.500000E+00", ":SOUR:VOLT?"),
        ("source_current_a", 1e-6, ":SOUR:CURR 1.000000E-06", ":SOUR:CURR?"),
        ("current_limit_a", 1e-4, ":SOUR:VOLT:ILIM 1.000000E-04", ":SOUR:VOLT:ILIM?"),
        ("voltage_limit_v", 2.0, ":SOUR:CURR:VLIM 2.000000E+00", ":SOUR:CURR:VLIM?"),
        ("source_voltage_range_v", 0.2, ":SOUR:VOLT:RANG 2.000000E-01", ":SOUR:VOLT:RANG?"),
        ("source_current_range_a", 1e-6, ":SOUR:CURR:RANG 1.000000E-06", ":SOUR:CURR:RANG?"),
        ("current_range_a", 1e-5, ":SENS:CURR:RANG 1.000000E-05", ":SENS:CURR:RANG?"),
        ("voltage_range_v", 20.0, ":SENS:VOLT:RANG 2.000000E+01", ":SENS:VOLT:RANG?"),
    ],
)
def test_numeric_controls_round_trip(
    smu: Keithley2450, attribute: str, value: float, command: str, query: str
) -> None:
    setattr(smu, attribute, value)
    assert getattr(smu, attribute) == pytest.approx(value)
    assert sent(smu) == [command, query]
    # every write is followed by an error-queue read
    assert [c for c, _ in smu.transcript][:2] == [command, "SYST:ERR?"]


def test_functions_and_switches(smu: Keithley2450) -> None:
    smu.source_function = "CURR"
    assert smu.source_function == "CURR"
    smu.measure_function = "VOLT"
    assert smu.measure_function == "VOLT"
    smu.current_autorange_enabled = False
    assert smu.current_autorange_enabled is False
    smu.output_enabled = True
    assert smu.output_enabled is True
    assert sent(smu) == [
        ":SOUR:FUNC CURR",
        ":SOUR:FUNC?",
        ':SENS:FUNC "VOLT"',
        ":SENS:FUNC?",
        ":SENS:CURR:RANG:AUTO 0",
        ":SENS:CURR:RANG:AUTO?",
        ":OUTP 1",
        ":OUTP?",
    ]


def test_measurements(smu: Keithley2450) -> None:
    assert smu.measure_current_a() == pytest.approx(2e-6)
    assert smu.measure_voltage_v() == pytest.approx(0.2)
    assert sent(smu) == [":MEAS:CURR?", ":MEAS:VOLT?"]


def test_linear_sweep(smu: Keithley2450) -> None:
    volts, amps = smu.sweep_voltage_linear(-0.2, 0.2, 5)
    np.testing.assert_allclose(volts, [-0.2, -0.1, 0.0, 0.1, 0.2])
    np.testing.assert_allclose(amps, 1e-5 * volts)
    assert sent(smu) == [
        ':TRAC:CLE "defbuffer1"',
        ":SOUR:SWE:VOLT:LIN -2.000000E-01, 2.000000E-01, 5, 0.000000E+00",
        ":INIT",
        "*WAI",
        ':TRAC:DATA? 1, 5, "defbuffer1", SOUR, READ',
    ]


def test_a_short_sweep_buffer_is_a_reply_error(smu: Keithley2450) -> None:
    with pytest.raises(ReplyFormatError, match="expected 6"):
        smu.sweep_voltage_linear(0.0, 0.2, 3)


def test_pulse_extension(smu: Keithley2450) -> None:
    smu.pulse_current(300e-6, 125e-9)
    assert sent(smu) == [":SOUR:PULS:CURR 3.000000E-04, 1.250000E-07, 0.000000E+00"]


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("source_voltage_v", 210.5),
        ("source_voltage_v", float("nan")),
        ("source_current_a", -1.2),
        ("current_limit_a", 0.0),
        ("voltage_limit_v", 0.01),
        ("source_voltage_range_v", 1.0),
        ("current_range_a", 3e-5),
        ("source_function", "RES"),
        ("measure_function", "current"),
        ("output_enabled", "yes"),
        ("current_autorange_enabled", 2),
    ],
)
def test_validators_refuse_before_writing(smu: Keithley2450, attribute: str, value: object) -> None:
    with pytest.raises(LimitError):
        setattr(smu, attribute, value)
    assert list(smu.transcript) == []


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((-0.2, 250.0, 5), {}),
        ((-0.2, 0.2, 1), {}),
        ((-0.2, 0.2, 5.0), {}),
        ((-0.2, 0.2, 5), {"delay_s": -1.0}),
    ],
)
def test_sweep_arguments_refused_before_writing(
    smu: Keithley2450, args: tuple[float, float, int], kwargs: dict[str, float]
) -> None:
    with pytest.raises(LimitError):
        smu.sweep_voltage_linear(*args, **kwargs)
    assert list(smu.transcript) == []


@pytest.mark.parametrize(
    "args", [(2e-3, 125e-9, 0.0), (300e-6, 1e-9, 0.0), (300e-6, 125e-9, 2e-6), (-1e-6, 1e-7, 0)]
)
def test_pulse_arguments_refused_before_writing(
    smu: Keithley2450, args: tuple[float, float, float]
) -> None:
    with pytest.raises(LimitError):
        smu.pulse_current(*args)
    assert list(smu.transcript) == []


def test_an_unknown_command_raises_the_instruments_error(smu: Keithley2450) -> None:
    with pytest.raises(CommandError) as info:
        smu.write(":SOUR:BOGUS 1")
    assert info.value.code == -113
    assert info.value.message == "Undefined header"
    assert info.value.command == ":SOUR:BOGUS 1"
    assert isinstance(info.value, DriverError)
    smu.check_errors()  # the queue was drained


def test_an_instrument_refusal_is_a_typed_value_error(backend: str) -> None:
    # closed without shutdown(): this definition only knows the limit command
    refusing = Keithley2450("USB0::0x05E6::0x2450::04096332::INSTR", backend=backend)
    try:
        refusing.current_limit_a = 5e-5
        with pytest.raises(DataOutOfRangeError) as info:
            refusing.current_limit_a = 1e-3
        assert isinstance(info.value, ValueError)
        assert info.value.code == -222
        assert refusing.current_limit_a == pytest.approx(5e-5)
    finally:
        refusing.close()


def test_shutdown_ramps_to_zero_and_turns_the_output_off(smu: Keithley2450) -> None:
    smu.source_voltage_v = 1.0
    smu.output_enabled = True
    smu.transcript.clear()
    smu.shutdown()
    commands = sent(smu)
    levels = [float(c.split()[1]) for c in commands if c.startswith(":SOUR:VOLT ")]
    assert levels == pytest.approx(list(np.linspace(1.0, 0.0, 11)[1:]))
    assert commands[-1] == ":OUTP 0"
    assert smu.source_voltage_v == 0.0 and smu.output_enabled is False


def test_context_manager_shuts_down_and_closes(backend: str) -> None:
    with Keithley2450(RESOURCE, backend=backend) as smu:
        smu.output_enabled = True
    assert smu.closed
    assert sent(smu)[-1] == ":OUTP 0"
    with pytest.raises(InstrumentConnectionError):
        smu.query("*IDN?")


def test_an_unreachable_instrument_is_a_connection_error() -> None:
    """pyvisa-py may connect lazily: opening or the first exchange fails, as a DriverError."""
    with pytest.raises(InstrumentConnectionError):
        smu = Keithley2450("TCPIP::127.0.0.1::1::SOCKET", backend="@py", timeout_ms=500)
        try:
            smu.query("*IDN?")
        finally:
            smu.close()
