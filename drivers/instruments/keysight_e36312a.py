"""Keysight E36312A triple-output programmable DC power supply: an SCPI subset.

Command strings follow the Keysight E36300 Series Programming Guide (E36311-90010), with the
channel given as a channel list ``(@n)`` on every command: ``[SOURce:]VOLTage[:LEVel]
[:IMMediate][:AMPLitude] <V>, (@n)`` and ``VOLTage? (@n)``, ``[SOURce:]CURRent … <A>, (@n)``
(the current limit in constant-voltage operation), ``OUTPut[:STATe] ON|OFF, (@n)`` and
``OUTPut? (@n)``, ``MEASure[:SCALar]:VOLTage[:DC]? (@n)`` and ``MEASure…:CURRent? (@n)``.

Channel ratings (E36312A datasheet, "Specifications": output 1 0–6 V, 0–5 A; outputs 2 and 3
0–25 V, 0–1 A). Values beyond the ratings are refused here (the supply's ~3 % programming
overrange is not used). The ratings as metadata (``KeysightE36312A.MODEL_NAME``,
``KeysightE36312A.CHANNEL_RATINGS``) are what a station's rails are checked against.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from drivers.errors import DriverError
from drivers.instruments._scpi import (
    Channel,
    SCPIInstrument,
    control,
    format_bool,
    measurement,
    parse_bool,
)
from drivers.validators import strict_discrete_set, strict_int_range, strict_range

log = logging.getLogger(__name__)

CHANNEL_RATINGS: dict[int, tuple[float, float]] = {1: (6.0, 5.0), 2: (25.0, 1.0), 3: (25.0, 1.0)}
"""Channel → (maximum voltage in V, maximum current in A) (E36312A datasheet)."""

_NUM = "{:.6E}"


def _voltage_range(channel: SupplyChannel) -> tuple[float, float]:
    return (0.0, CHANNEL_RATINGS[channel.id][0])


def _current_range(channel: SupplyChannel) -> tuple[float, float]:
    return (0.0, CHANNEL_RATINGS[channel.id][1])


class SupplyChannel(Channel):
    """One output of the E36312A (1, 2 or 3); limits per channel from :data:`CHANNEL_RATINGS`."""

    voltage_setpoint_v = control(
        "VOLT? (@{ch})",
        "VOLT " + _NUM + ", (@{ch})",
        "Control the output voltage setpoint in V (float strictly from 0 to 6 on output 1, "
        "0 to 25 on outputs 2 and 3).",
        validator=strict_range,
        values=_voltage_range,
        units="V",
    )
    current_limit_a = control(
        "CURR? (@{ch})",
        "CURR " + _NUM + ", (@{ch})",
        "Control the current limit in A (float strictly from 0 to 5 on output 1, 0 to 1 on "
        "outputs 2 and 3).",
        validator=strict_range,
        values=_current_range,
        units="A",
    )
    output_enabled = control(
        "OUTP? (@{ch})",
        "OUTP {}, (@{ch})",
        "Control whether the output is on (bool).",
        validator=strict_discrete_set,
        values=(True, False),
        get_process=parse_bool,
        set_process=format_bool,
    )
    measured_voltage_v = measurement(
        "MEAS:VOLT? (@{ch})", "Measure the output voltage in V.", units="V"
    )
    measured_current_a = measurement(
        "MEAS:CURR? (@{ch})", "Measure the output current in A.", units="A"
    )

    @property
    def max_voltage_v(self) -> float:
        """The channel's rated maximum voltage in V."""
        return CHANNEL_RATINGS[self.id][0]

    @property
    def max_current_a(self) -> float:
        """The channel's rated maximum current in A."""
        return CHANNEL_RATINGS[self.id][1]


class KeysightE36312A(SCPIInstrument):
    """Keysight E36312A: three outputs, ``supply.channel(1)`` … ``supply.channel(3)``.

    Example::

        with KeysightE36312A("TCPIP::127.0.0.1::5026::SOCKET") as supply:
            vdd = supply.channel(1)
            vdd.current_limit_a = 0.5
            vdd.voltage_setpoint_v = 0.8
            vdd.output_enabled = True
            print(vdd.measured_voltage_v, vdd.measured_current_a)

    Ratings (class attributes; what a station's rails are checked against, never sent):
    ``CHANNEL_RATINGS`` maps output → (maximum voltage in V, maximum current in A): output 1
    6 V / 5 A, outputs 2 and 3 25 V / 1 A (Keysight E36300 Series datasheet, E36312A
    "Specifications"; also the programming guide's "Programming Ranges and Output
    Identifiers").
    """

    MODEL_NAME: ClassVar[str] = "Keysight E36312A"
    CHANNEL_IDS = (1, 2, 3)
    CHANNEL_RATINGS: ClassVar[Mapping[int, tuple[float, float]]] = CHANNEL_RATINGS

    def __init__(self, resource: str, **kwargs: Any) -> None:
        super().__init__(resource, **kwargs)
        self.channels: dict[int, SupplyChannel] = {
            n: SupplyChannel(self, n) for n in self.CHANNEL_IDS
        }

    def channel(self, channel_id: int) -> SupplyChannel:
        """Output ``channel_id`` (int strictly 1, 2 or 3)."""
        return self.channels[strict_int_range(channel_id, (1, 3))]

    def ramp_channel_to_zero(self, channel_id: int, steps: int = 10, dwell_s: float = 0.0) -> None:
        """Step the voltage setpoint of one output to 0 V in ``steps`` equal steps."""
        channel = self.channel(channel_id)
        n = strict_int_range(steps, (1, 1000))
        level = channel.voltage_setpoint_v
        for value in np.linspace(level, 0.0, n + 1)[1:]:
            channel.voltage_setpoint_v = float(value)
            if dwell_s:
                time.sleep(dwell_s)

    def shutdown(self) -> None:
        """Ramp every output to 0 V (outputs 3, 2, 1) and disable it; errors are logged."""
        if self.closed:
            return
        for channel_id in reversed(self.CHANNEL_IDS):
            try:
                self.ramp_channel_to_zero(channel_id)
            except DriverError as exc:
                log.warning("%s: ramping output %d to 0 V failed: %s", self.name, channel_id, exc)
            try:
                self.channels[channel_id].output_enabled = False
            except DriverError as exc:
                log.warning("%s: disabling output %d failed: %s", self.name, channel_id, exc)
