"""Keithley 2450 source-measure unit (SMU): an SCPI subset.

Command strings follow the Keithley 2450 Reference Manual (2450-901-01), chapter "SCPI
command reference": ``:SOURce[1]:FUNCtion``, ``:SOURce[1]:<function>[:LEVel]``,
``:SOURce[1]:VOLTage:ILIMit`` and ``:SOURce[1]:CURRent:VLIMit`` (the compliance, called
"limit" by Keithley), ``:SOURce[1]:<function>:RANGe``, ``:SENSe[1]:FUNCtion "<function>"``,
``:SENSe[1]:<function>:RANGe`` and ``:RANGe:AUTO``, ``:OUTPut[1][:STATe]``,
``:MEASure:<function>?``, the trigger-model sweep
``:SOURce[1]:SWEep:VOLTage:LINear <start>, <stop>, <points>, <delay>`` run by ``:INITiate`` and
read back with ``:TRACe:DATA? 1, <n>, "defbuffer1", SOUR, READ``. Numbers are sent as
``%.6E``; the 2450 accepts any SCPI numeric form.

Ranges (2450 datasheet, "Voltage/Current specifications"): source ±210 V / ±1.05 A, voltage
ranges 20 mV … 200 V, current ranges 10 nA … 1 A, limits ≥ 20 mV / ≥ 1 nA. The rating as
metadata (class attributes ``MODEL_NAME``, ``RATED_VOLTAGE_V``, ``RATED_CURRENT_A``,
``RATED_ENVELOPE``, ``RATED_MIN_CURRENT_LIMIT_A``, ``RATED_PULSE_CURRENT_A`` and
:meth:`Keithley2450.rated_current_at`) is what a station's SMU limits are checked against.

**Station extension (not a 2450 command).** ``:SOURce:PULSe:CURRent <A>, <width s>, <fall s>``
applies one current pulse to the device under test. A real 2450 has no pulse mode (its fastest
source change is far slower than the 125 ns PCM programming pulses) and answers -113
"Undefined header", raised as :class:`~drivers.instruments._scpi.CommandError`; on a real bench
programming pulses come from a pulse generator wired in parallel (not driven by this project
yet). The simulated station implements it (see ``drivers/sim/instruments/station_server.py``).
"""

from __future__ import annotations

import logging
import math
import time
from typing import ClassVar

import numpy as np

from drivers.errors import DriverError, LimitError
from drivers.instruments._scpi import (
    ReplyFormatError,
    SCPIInstrument,
    control,
    format_bool,
    parse_bool,
    parse_float,
    parse_floats,
)
from drivers.validators import strict_discrete_set, strict_int_range, strict_range

log = logging.getLogger(__name__)

MAX_VOLTAGE_V = 210.0
"""Largest source voltage magnitude (2450 datasheet: 200 V range, 210 V max)."""
MAX_CURRENT_A = 1.05
"""Largest source current magnitude (2450 datasheet: 1 A range, 1.05 A max)."""
VOLTAGE_RANGES_V = (0.02, 0.2, 2.0, 20.0, 200.0)
"""Source and measure voltage ranges in V (2450 datasheet)."""
CURRENT_RANGES_A = (1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
"""Source and measure current ranges in A (2450 datasheet; 10 nA is measure-only there)."""
MAX_SWEEP_POINTS = 2500
"""Sweep points accepted here (the 2450 allows up to 1e6; more would overflow defbuffer1)."""
PULSE_WIDTH_RANGE_S = (1e-8, 1e-3)
"""Station-extension pulse width range, 10 ns … 1 ms."""
PULSE_FALL_RANGE_S = (0.0, 1e-6)
"""Station-extension pulse trailing-edge (fall time) range, 0 … 1 µs."""
PULSE_AMPLITUDE_RANGE_A = (0.0, 1.05e-3)
"""Station-extension pulse amplitude range, 0 … 1.05 mA."""

_NUM = "{:.6E}"


class Keithley2450(SCPIInstrument):
    """Keithley 2450 SourceMeter.

    Example::

        with Keithley2450("TCPIP::127.0.0.1::5025::SOCKET", backend="@py") as smu:
            smu.source_function = "VOLT"
            smu.current_limit_a = 1e-4
            smu.output_enabled = True
            volts, amps = smu.sweep_voltage_linear(-0.2, 0.2, 21)

    Ratings (class attributes; what a station's limits are checked against, never sent):

    - ``RATED_VOLTAGE_V`` = 210 V and ``RATED_CURRENT_A`` = 1.05 A: the largest source
      magnitudes (Keithley 2450 datasheet, "Voltage/Current specifications": 200 V and 1 A
      ranges with 5 % overrange).
    - ``RATED_ENVELOPE``: the source/sink power envelope as (|V| up to, |I| up to) corners,
      ±1.05 A up to ±21 V and ±105 mA up to ±210 V (2450 datasheet, "Maximum output power
      22 W", four-quadrant diagram; the exact corner figures UNCONFIRMED against the
      current datasheet revision).
    - ``RATED_MIN_CURRENT_LIMIT_A`` = 1 nA: the smallest current limit (compliance) the 2450
      accepts (Reference Manual 2450-901-01, ``:SOURce:VOLTage:ILIMit``).
    - ``RATED_PULSE_CURRENT_A`` = 1.05 mA: the station-extension pulse range (see the module
      docstring; not a 2450 figure).
    """

    MODEL_NAME: ClassVar[str] = "Keithley 2450"
    RATED_VOLTAGE_V: ClassVar[float] = MAX_VOLTAGE_V
    RATED_CURRENT_A: ClassVar[float] = MAX_CURRENT_A
    RATED_ENVELOPE: ClassVar[tuple[tuple[float, float], ...]] = ((21.0, 1.05), (210.0, 0.105))
    RATED_MIN_CURRENT_LIMIT_A: ClassVar[float] = 1e-9
    RATED_PULSE_CURRENT_A: ClassVar[float] = PULSE_AMPLITUDE_RANGE_A[1]

    @classmethod
    def rated_current_at(cls, volts: float) -> float:
        """The largest rated |current| in A at a source |voltage| of ``volts`` (0 beyond the
        rating), from :attr:`RATED_ENVELOPE`."""
        for max_v, max_a in cls.RATED_ENVELOPE:
            if abs(volts) <= max_v:
                return max_a
        return 0.0

    # -- source ---------------------------------------------------------------------------------

    source_function = control(
        ":SOUR:FUNC?",
        ":SOUR:FUNC {}",
        'Control the source function, "VOLT" or "CURR" (str strictly in that set).',
        validator=strict_discrete_set,
        values=("VOLT", "CURR"),
        get_process=lambda reply: reply.strip().strip('"').upper().removesuffix(":DC"),
    )
    source_voltage_v = control(
        ":SOUR:VOLT?",
        ":SOUR:VOLT " + _NUM,
        "Control the source voltage level in V (float strictly from -210 to 210).",
        validator=strict_range,
        values=(-MAX_VOLTAGE_V, MAX_VOLTAGE_V),
        units="V",
    )
    source_current_a = control(
        ":SOUR:CURR?",
        ":SOUR:CURR " + _NUM,
        "Control the source current level in A (float strictly from -1.05 to 1.05).",
        validator=strict_range,
        values=(-MAX_CURRENT_A, MAX_CURRENT_A),
        units="A",
    )
    current_limit_a = control(
        ":SOUR:VOLT:ILIM?",
        ":SOUR:VOLT:ILIM " + _NUM,
        "Control the current limit (compliance) while sourcing voltage, in A "
        "(float strictly from 1e-9 to 1.05).",
        validator=strict_range,
        values=(1e-9, MAX_CURRENT_A),
        units="A",
    )
    voltage_limit_v = control(
        ":SOUR:CURR:VLIM?",
        ":SOUR:CURR:VLIM " + _NUM,
        "Control the voltage limit (compliance) while sourcing current, in V "
        "(float strictly from 0.02 to 210).",
        validator=strict_range,
        values=(0.02, MAX_VOLTAGE_V),
        units="V",
    )
    source_voltage_range_v = control(
        ":SOUR:VOLT:RANG?",
        ":SOUR:VOLT:RANG " + _NUM,
        "Control the source voltage range in V (float strictly in 0.02, 0.2, 2, 20, 200).",
        validator=strict_discrete_set,
        values=VOLTAGE_RANGES_V,
        units="V",
    )
    source_current_range_a = control(
        ":SOUR:CURR:RANG?",
        ":SOUR:CURR:RANG " + _NUM,
        "Control the source current range in A (float strictly in 1e-8 … 1, decades).",
        validator=strict_discrete_set,
        values=CURRENT_RANGES_A,
        units="A",
    )

    # -- measure --------------------------------------------------------------------------------

    measure_function = control(
        ":SENS:FUNC?",
        ':SENS:FUNC "{}"',
        'Control the measure function, "CURR" or "VOLT" (str strictly in that set); the '
        '2450 answers "CURR:DC" / "VOLT:DC".',
        validator=strict_discrete_set,
        values=("CURR", "VOLT"),
        get_process=lambda reply: reply.strip().strip('"').upper().removesuffix(":DC"),
    )
    current_range_a = control(
        ":SENS:CURR:RANG?",
        ":SENS:CURR:RANG " + _NUM,
        "Control the current measure range in A (float strictly in 1e-8 … 1, decades); "
        "setting it turns autorange off.",
        validator=strict_discrete_set,
        values=CURRENT_RANGES_A,
        units="A",
    )
    current_autorange_enabled = control(
        ":SENS:CURR:RANG:AUTO?",
        ":SENS:CURR:RANG:AUTO {}",
        "Control whether the current measure range is chosen automatically (bool).",
        validator=strict_discrete_set,
        values=(True, False),
        get_process=parse_bool,
        set_process=format_bool,
    )
    voltage_range_v = control(
        ":SENS:VOLT:RANG?",
        ":SENS:VOLT:RANG " + _NUM,
        "Control the voltage measure range in V (float strictly in 0.02, 0.2, 2, 20, 200).",
        validator=strict_discrete_set,
        values=VOLTAGE_RANGES_V,
        units="V",
    )

    # -- output ---------------------------------------------------------------------------------

    output_enabled = control(
        ":OUTP?",
        ":OUTP {}",
        "Control whether the source output is on (bool).",
        validator=strict_discrete_set,
        values=(True, False),
        get_process=parse_bool,
        set_process=format_bool,
    )

    def measure_current_a(self) -> float:
        """Measure the current in A (``:MEAS:CURR?``; one reading, the output must be on)."""
        return parse_float(self.query(":MEAS:CURR?", check_errors=True))

    def measure_voltage_v(self) -> float:
        """Measure the voltage in V (``:MEAS:VOLT?``; one reading, the output must be on)."""
        return parse_float(self.query(":MEAS:VOLT?", check_errors=True))

    def sweep_voltage_linear(
        self, start_v: float, stop_v: float, points: int, delay_s: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Run a linear voltage sweep and return (source V, measured readings) as float64 arrays.

        The trigger model built by ``:SOUR:SWE:VOLT:LIN`` steps the source from ``start_v`` to
        ``stop_v`` in ``points`` equal steps, waits ``delay_s`` at each and measures with the
        current measure function (normally current, in A); the readings are read from
        ``defbuffer1``, cleared first. Source function VOLT, the limit and the output state are
        the caller's to set.

        Args:
            start_v, stop_v: sweep end points in V (each strictly within ±210 V).
            points: number of points (int strictly from 2 to 2500).
            delay_s: source-to-measure delay at each point in s (float strictly 0 … 10).
        """
        start = strict_range(start_v, (-MAX_VOLTAGE_V, MAX_VOLTAGE_V))
        stop = strict_range(stop_v, (-MAX_VOLTAGE_V, MAX_VOLTAGE_V))
        n = strict_int_range(points, (2, MAX_SWEEP_POINTS))
        delay = strict_range(delay_s, (0.0, 10.0))
        self.write(':TRAC:CLE "defbuffer1"')
        self.write(f":SOUR:SWE:VOLT:LIN {start:.6E}, {stop:.6E}, {n:d}, {delay:.6E}")
        self.write(":INIT")
        self.write("*WAI")
        reply = self.query(f':TRAC:DATA? 1, {n:d}, "defbuffer1", SOUR, READ', check_errors=True)
        values = parse_floats(reply)
        if len(values) != 2 * n:
            raise ReplyFormatError(f"sweep returned {len(values)} numbers, expected {2 * n}")
        pairs = np.asarray(values, dtype=np.float64).reshape(n, 2)
        return pairs[:, 0].copy(), pairs[:, 1].copy()

    def pulse_current(self, amplitude_a: float, width_s: float, fall_s: float = 0.0) -> None:
        """Apply one current pulse (station extension, see the module docstring).

        Args:
            amplitude_a: pulse amplitude in A (float strictly 0 … 1.05e-3).
            width_s: pulse width in s (float strictly 1e-8 … 1e-3).
            fall_s: trailing-edge duration in s (float strictly 0 … 1e-6); a slow trailing
                edge (≥ 50 ns) is a SET pulse in the simulated device.
        """
        amplitude = strict_range(amplitude_a, PULSE_AMPLITUDE_RANGE_A)
        width = strict_range(width_s, PULSE_WIDTH_RANGE_S)
        fall = strict_range(fall_s, PULSE_FALL_RANGE_S)
        self.write(f":SOUR:PULS:CURR {amplitude:.6E}, {width:.6E}, {fall:.6E}")

    # -- safe state -----------------------------------------------------------------------------

    def ramp_source_to_zero(self, steps: int = 10, dwell_s: float = 0.0) -> None:
        """Step the source level of the present function to 0 in ``steps`` equal steps."""
        n = strict_int_range(steps, (1, 1000))
        function = self.source_function
        attribute = "source_voltage_v" if function == "VOLT" else "source_current_a"
        level = float(getattr(self, attribute))
        if not math.isfinite(level):
            raise LimitError(f"{self.name}: source level reads {level!r}")
        for value in np.linspace(level, 0.0, n + 1)[1:]:
            setattr(self, attribute, float(value))
            if dwell_s:
                time.sleep(dwell_s)

    def shutdown(self) -> None:
        """Ramp the source to 0 and turn the output off (best effort: errors are logged)."""
        if self.closed:
            return
        try:
            self.ramp_source_to_zero()
        except DriverError as exc:
            log.warning("%s: ramping the source to 0 failed: %s", self.name, exc)
        try:
            self.output_enabled = False
        except DriverError as exc:
            log.warning("%s: turning the output off failed: %s", self.name, exc)
