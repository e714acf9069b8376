"""Lake Shore 335 cryogenic temperature controller (here: the chuck heater loop), a subset.

Command strings follow the Lake Shore Model 335 user's manual, chapter 6 "Remote operation"
(command summary §6.6): ``KRDG? <input>`` (temperature in kelvin), ``CRDG? <input>`` (in °C),
``SETP <output>,<value>`` / ``SETP? <output>`` (setpoint in the units of the loop's control
input, kelvin by default), ``RANGE <output>,<range>`` / ``RANGE? <output>`` with
0 = Off, 1 = Low, 2 = Medium, 3 = High for output 1. The 335 is not an SCPI instrument: it has no
``SYST:ERR?`` queue, so errors are read from the IEEE-488.2 standard event status register
``*ESR?`` (bit 5 command error, bit 4 execution error, bit 2 query error; manual §6.2.5) and
raised as the matching typed errors with the SCPI class codes -100, -200 and -400.

The ratings as metadata (``LakeShore335.MODEL_NAME``, ``RATED_SETPOINT_K``,
``RATED_SENSOR_K``) are what a station's temperature window is checked against.

Messages end in CR LF on the 335; replies are read up to LF and stripped, so a server that
ends replies in LF only (the simulated station) works too.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from drivers.errors import DriverError
from drivers.instruments._scpi import (
    ReplyFormatError,
    SCPIInstrument,
    control,
    instrument_error,
    parse_float,
)
from drivers.validators import strict_discrete_set, strict_range

log = logging.getLogger(__name__)

HEATER_RANGES: dict[str, str] = {"OFF": "0", "LOW": "1", "MED": "2", "HIGH": "3"}
"""Heater range names → the 335's RANGE codes for output 1 (manual §6.6, RANGE)."""

SETPOINT_RANGE_K = (0.0, 1500.0)
"""Setpoint range in K accepted here (the 335's setpoint limit for a kelvin input)."""

KELVIN_OFFSET = 273.15
"""0 °C in K."""

_ESR_ERRORS: tuple[tuple[int, int, str], ...] = (
    (1 << 5, -100, "Command error (ESR bit 5)"),
    (1 << 4, -200, "Execution error (ESR bit 4)"),
    (1 << 2, -400, "Query error (ESR bit 2)"),
)


class LakeShore335(SCPIInstrument):
    """Lake Shore 335 with the chuck sensor on input A and the chuck heater on output 1.

    Example::

        with LakeShore335("TCPIP::127.0.0.1::7777::SOCKET") as chuck:
            chuck.setpoint_k = 313.15
            chuck.heater_range = "MED"
            print(chuck.temperature_k)

    Ratings (class attributes; what a station's temperature window is checked against):

    - ``RATED_SETPOINT_K`` = (0, 1500) K: the setpoint range for a kelvin control input
      (Model 335 user's manual, ``SETP`` command and the setpoint-limit parameter; the 1500 K
      figure UNCONFIRMED for the manual revision at hand), i.e. −273.15 … 1226.85 °C.
    - ``RATED_SENSOR_K`` = (0.3, 1505) K: the widest sensor range of the 335's inputs (about
      300 mK with NTC RTDs, up to 1505 K with the thermocouple option; Model 335 brochure,
      UNCONFIRMED). The sensor actually fitted to the chuck narrows it further.
    """

    MODEL_NAME: ClassVar[str] = "Lake Shore 335"
    RATED_SETPOINT_K: ClassVar[tuple[float, float]] = SETPOINT_RANGE_K
    RATED_SENSOR_K: ClassVar[tuple[float, float]] = (0.3, 1505.0)

    READ_TERMINATION: ClassVar[str] = "\n"
    WRITE_TERMINATION: ClassVar[str] = "\r\n"
    ERROR_QUERY: ClassVar[str] = "*ESR?"

    def __init__(self, resource: str, *, input_channel: str = "A", **kwargs: Any) -> None:
        self.input_channel = strict_discrete_set(input_channel, ("A", "B"))
        super().__init__(resource, **kwargs)

    setpoint_k = control(
        "SETP? 1",
        "SETP 1,{:.3f}",
        "Control the loop 1 setpoint in K (float strictly from 0 to 1500); the control input "
        "must be configured in kelvin (the 335's default).",
        validator=strict_range,
        values=SETPOINT_RANGE_K,
        units="K",
    )
    heater_range = control(
        "RANGE? 1",
        "RANGE 1,{}",
        'Control the heater range of output 1: "OFF", "LOW", "MED" or "HIGH" (str strictly '
        "in that set).",
        validator=strict_discrete_set,
        values=tuple(HEATER_RANGES),
        map_values=HEATER_RANGES,
    )

    @property
    def temperature_k(self) -> float:
        """Get the temperature of the input in K (``KRDG? A``)."""
        return parse_float(self.query(f"KRDG? {self.input_channel}"))

    @property
    def temperature_c(self) -> float:
        """Get the temperature of the input in °C (``CRDG? A``)."""
        return parse_float(self.query(f"CRDG? {self.input_channel}"))

    @property
    def setpoint_c(self) -> float:
        """Control the loop 1 setpoint in °C (converted to and from :attr:`setpoint_k`)."""
        return float(self.setpoint_k) - KELVIN_OFFSET

    @setpoint_c.setter
    def setpoint_c(self, value: float) -> None:
        celsius = strict_range(value, (SETPOINT_RANGE_K[0] - KELVIN_OFFSET, 1500 - KELVIN_OFFSET))
        self.setpoint_k = round(celsius + KELVIN_OFFSET, 3)

    def check_errors(self) -> None:
        """Read ``*ESR?`` (which clears it) and raise the first error bit set, typed."""
        command = self._last_command
        reply = self.query(self.ERROR_QUERY)
        self._last_command = command
        try:
            register = int(reply.strip().lstrip("+"))
        except ValueError:
            raise ReplyFormatError(f"expected an integer from *ESR?, got {reply!r}") from None
        for mask, code, message in _ESR_ERRORS:
            if register & mask:
                raise instrument_error(
                    code, message, command=command, instrument=self.resource_name
                )

    def shutdown(self) -> None:
        """Turn the heater off (range OFF); errors are logged."""
        if self.closed:
            return
        try:
            self.heater_range = "OFF"
        except DriverError as exc:
            log.warning("%s: turning the heater off failed: %s", self.name, exc)
