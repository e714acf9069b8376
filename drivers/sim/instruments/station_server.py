"""The simulated station: the bench instruments served as SCPI over TCP, backed by physics.

pyvisa-sim can only give fixed or stored replies, so an I–V sweep on it would measure nothing.
This module serves the same command subsets as the drivers in ``drivers/instruments`` on one TCP
port per instrument, bound to 127.0.0.1 (the protocols have no authentication), reached through
pyvisa-py as ``TCPIP::127.0.0.1::PORT::SOCKET``. Messages end in ``"\\n"`` (a ``"\\r"`` before it
is ignored); replies end in ``"\\n"``. Several commands may share a line, separated by ``;``.

Physics behind the instruments (all on one shared :class:`StationClock`):

**SMU (Keithley 2450) → one PCM test device.** The device is the chip's device model applied to
a single device: :class:`~drivers.sim.pulses.PulseModel` for programming and
:class:`~drivers.sim.physics.HermesStatistics` (1 device) for drift and read noise, with the same
equations as :class:`drivers.sim.chip.SimulatedChip`::

    G(t) = (g_p + relax·r(τ)) · ((τ + t0)/t0)^−ν,      τ = t − t_p,  t0 = 200 s
    read:  G_read = G(t) + N(0, σ_read),  σ_read = |G(t)|·Q_s(g_p)·√ln((τ' + t_read)/(2 t_read))

with τ' = max(τ, 1 ms) and ν ~ |N(μ_ν(g_p), σ_ν(g_p))| drawn at each programming. The device is
ohmic: sourcing V gives I = G_read·V (µS·V = µA), limited by the current limit (compliance;
in compliance the reading is the limit); sourcing I gives V = I/G limited by the voltage limit.
A current reading beyond 1.05× the measure range with autorange off reads +9.9E+37 (the 2450's
overflow value). Each reading advances the clock by 1 PLC at 50 Hz (20 ms, the 2450's default
NPLC = 1). A new device starts crystalline (its SET maximum, drawn from the PulseModel).

**Pulse mapping (station extension).** ``:SOUR:PULS:CURR <amplitude A>, <width s>, <fall s>``
drives one current pulse through the device (the output must be on, else -221 "Settings
conflict"). It maps onto the pulse model as amplitude µA = 1e6·A, width ns = 1e9·s, and the pulse
kind by the trailing edge: fall ≥ 50 ns is a SET pulse (slow quench: the published SET pulse,
250 ns at 125 µA with a 50 ns trailing edge [LG Methods]); a square pulse (fall < 50 ns) is a
PARTIAL pulse, which melt-quenches at ≥ 250 µA (≥ 650 µA: full RESET) and crystallises
partially below. So ``(700e-6, 125e-9, 0)`` is the published RESET, ``(125e-6, 250e-9, 50e-9)``
the SET, ``(450e-6, 125e-9, 0)`` an iterative partial pulse. DC sourcing does not program the
device (the model has no threshold switching; keep read voltages ≤ 0.5 V as on the chip, 0.2 V).

**Supply (Keysight E36312A) → resistive rails.** Each output drives a resistor (defaults
2 Ω, 36 Ω, 150 Ω: a 0.8 V core rail at 0.4 A, a 1.8 V I/O rail at 50 mA, a 3 V programming
rail at 20 mA; UNCONFIRMED, chosen to look like a test chip). Enabled output in constant
voltage: V = V_set, I = V/R; when V_set/R exceeds the current limit the output goes constant
current: I = I_limit, V = I_limit·R. Disabled: 0 V, 0 A. Readbacks carry Gaussian noise of
0.1 mV and 10 µA (about the E36312A readback resolution).

**Temperature controller (Lake Shore 335) → the chuck.** With the heater on (range LOW / MED /
HIGH) the chuck temperature moves toward the setpoint at 1 / 3 / 10 K/min (UNCONFIRMED, a
typical thermal chuck) and stays there; above the setpoint it cools passively (never below the
setpoint). Heater off: it relaxes to the ambient 22 °C with τ = 900 s. Readings carry 5 mK noise.

**Clock.** Virtual time advances by modelled operation times and by ``SIM:CLOCk:ADVance <s>``
(a simulator-only command every instrument here accepts; real instruments reject it), plus
``time_scale`` × wall-clock time (0 = purely virtual, the test default; 1 = real time).

Run it as ``python -m drivers.sim.instruments.station_server``: it prints one JSON line with the
VISA resources (``{"smu": "TCPIP::127.0.0.1::PORT::SOCKET", ...}``) and serves until stopped.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import numpy as np

from drivers.sim.child import announced_child
from drivers.sim.physics import HermesStatistics
from drivers.sim.pulses import PULSE_PARTIAL, PULSE_SET, PulseModel

log = logging.getLogger(__name__)

_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)

INSTRUMENT_NAMES = ("smu", "supply", "chuck")
"""Instruments of the station, in the order their ports are opened."""

KELVIN_OFFSET = 273.15
OVERFLOW_READING = 9.9e37
"""What a 2450 returns for an over-range reading."""
SET_FALL_THRESHOLD_S = 50e-9
"""Trailing edge at or above which a pulse counts as a SET pulse (the published 50 ns)."""
PLC_S = 0.02
"""Integration time of one reading: 1 power-line cycle at 50 Hz (2450 default NPLC = 1)."""
HEATER_RATES_K_PER_MIN = {0: 0.0, 1: 1.0, 2: 3.0, 3: 10.0}
"""Heater range code → heating rate of the chuck in K/min (UNCONFIRMED, typical chuck)."""
DEFAULT_RAIL_LOADS_OHM = (2.0, 36.0, 150.0)
"""Load resistance on supply outputs 1, 2, 3 in Ω (UNCONFIRMED, see the module docstring)."""


class StationClock:
    """Station time in s: explicit advances plus ``time_scale`` × wall-clock time."""

    def __init__(self, time_scale: float = 0.0) -> None:
        if not math.isfinite(time_scale) or time_scale < 0:
            raise ValueError(f"time_scale must be finite and >= 0, got {time_scale!r}")
        self.time_scale = float(time_scale)
        self._offset_s = 0.0
        self._wall_start = time.monotonic()
        self._lock = threading.Lock()  # server threads and the procedure both advance it

    @property
    def now_s(self) -> float:
        """Simulated time in s: the explicit advances plus scaled wall time."""
        return self._offset_s + self.time_scale * (time.monotonic() - self._wall_start)

    def advance(self, seconds: float) -> float:
        """Advance the clock by ``seconds`` (finite, ≥ 0); returns the new time in s."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"cannot advance the clock by {seconds!r} s")
        with self._lock:
            self._offset_s += seconds
        return self.now_s


# -- physics ----------------------------------------------------------------------------------


class SimulatedTestDevice:
    """One PCM device on the SMU (equations in the module docstring).

    Args:
        rng: all randomness of the device.
        clock: the station clock.
        t0_s: drift reference time, 200 s (HERMES 1 device [AK; chip.md §3]).
        t_floor_s: read-noise age floor, 1 ms (as the chip, UNCONFIRMED).
    """

    def __init__(
        self,
        rng: np.random.Generator,
        clock: StationClock,
        *,
        t0_s: float = 200.0,
        t_floor_s: float = 1e-3,
    ) -> None:
        self.rng = rng
        self.clock = clock
        self.hermes = HermesStatistics(num_devices=1)
        self.pulses = PulseModel(rng=rng, hermes=self.hermes, t_verify_s=t_floor_s, t0_s=t0_s)
        self.t0_s = t0_s
        self.t_floor_s = t_floor_s
        self.g_set_max_us = float(self.pulses.sample_set_max_us(1, 1)[0, 0])
        self.pulses_applied = 0
        self._program(self.g_set_max_us, 0.0)

    def _program(self, g_us: float, relax_us: float) -> None:
        self.g_prog_us = float(g_us)
        self.relax_us = float(relax_us)
        g = np.float64(self.g_prog_us)
        nu = self.hermes.mu_nu(g) + self.hermes.sigma_nu(g) * self.rng.standard_normal()
        self.nu = float(abs(nu))
        self.t_prog_s = self.clock.now_s

    def conductance_us(self) -> float:
        """Noiseless drifted conductance now, in µS (the ground truth tests compare with)."""
        tau = max(self.clock.now_s - self.t_prog_s, 0.0)
        relax = self.relax_us * float(self.pulses.relaxation_progress(np.array(tau)))
        drift = ((tau + self.t0_s) / self.t0_s) ** (-self.nu)
        return max((self.g_prog_us + relax) * drift, 0.0)

    def read_conductance_us(self) -> float:
        """One noisy read of the conductance in µS (HERMES read noise)."""
        g_d = self.conductance_us()
        tau = max(self.clock.now_s - self.t_prog_s, self.t_floor_s)
        sigma = float(self.hermes.read_noise_sigma_us(self.g_prog_us, g_d, tau))
        return g_d + sigma * float(self.rng.standard_normal())

    def set_conductance_us(self, g_us: float) -> None:
        """Simulator-side: program the device to exactly ``g_us`` now (no relaxation)."""
        self._program(g_us, 0.0)

    def apply_pulse(self, amplitude_ua: float, width_ns: float, fall_ns: float) -> None:
        """One programming pulse (the mapping onto the pulse model is in the module docstring)."""
        kind = PULSE_SET if fall_ns >= SET_FALL_THRESHOLD_S * 1e9 else PULSE_PARTIAL
        g_new, relax = self.pulses.apply(
            np.array([self.conductance_us()]),
            np.array([self.g_set_max_us]),
            np.array([kind]),
            np.array([amplitude_ua]),
            np.array([width_ns]),
        )
        self.clock.advance((width_ns + fall_ns) * 1e-9)
        self.pulses_applied += 1
        self._program(float(g_new[0]), float(relax[0]))


class SimulatedRail:
    """One supply output driving a resistor ``load_ohm``."""

    def __init__(self, load_ohm: float, max_voltage_v: float, max_current_a: float) -> None:
        self.load_ohm = load_ohm
        self.max_voltage_v = max_voltage_v
        self.max_current_a = max_current_a
        self.voltage_setpoint_v = 0.0
        self.current_limit_a = max_current_a
        self.output_enabled = False

    def operating_point(self) -> tuple[float, float]:
        """(output V, output A) without noise."""
        if not self.output_enabled:
            return 0.0, 0.0
        current = self.voltage_setpoint_v / self.load_ohm
        if current > self.current_limit_a:  # constant-current operation
            return self.current_limit_a * self.load_ohm, self.current_limit_a
        return self.voltage_setpoint_v, current


class SimulatedChuck:
    """The chuck's temperature in K, advanced lazily on the station clock."""

    def __init__(self, clock: StationClock, *, ambient_k: float = 295.15, tau_s: float = 900.0):
        self.clock = clock
        self.ambient_k = ambient_k
        self.tau_s = tau_s
        self.temperature_k = ambient_k
        self.setpoint_k = ambient_k
        self.heater_range = 0
        self._t_s = clock.now_s

    def update(self) -> float:
        """Bring the chuck temperature up to the clock's time; returns it in K."""
        now = self.clock.now_s
        dt = max(now - self._t_s, 0.0)
        self._t_s = now
        rate_k_per_s = HEATER_RATES_K_PER_MIN[self.heater_range] / 60.0
        t = self.temperature_k
        if self.heater_range and t < self.setpoint_k:
            t = min(t + rate_k_per_s * dt, self.setpoint_k)
        else:
            floor = self.setpoint_k if self.heater_range else -math.inf
            relaxed = self.ambient_k + (t - self.ambient_k) * math.exp(-dt / self.tau_s)
            t = max(relaxed, floor) if t > floor else t
        self.temperature_k = t
        return t


# -- SCPI handling ----------------------------------------------------------------------------

_LONG_FORMS = {
    "SOURCE": "SOUR",
    "FUNCTION": "FUNC",
    "VOLTAGE": "VOLT",
    "CURRENT": "CURR",
    "SENSE": "SENS",
    "RANGE": "RANG",
    "OUTPUT": "OUTP",
    "MEASURE": "MEAS",
    "SWEEP": "SWE",
    "LINEAR": "LIN",
    "INITIATE": "INIT",
    "TRACE": "TRAC",
    "CLEAR": "CLE",
    "SYSTEM": "SYST",
    "ERROR": "ERR",
    "PULSE": "PULS",
    "CLOCK": "CLOC",
    "ADVANCE": "ADV",
    "ILIMIT": "ILIM",
    "VLIMIT": "VLIM",
    "ACTUAL": "ACT",
}
_OPTIONAL_NODES = {"LEV", "LEVEL", "IMM", "IMMEDIATE", "AMPL", "AMPLITUDE", "STAT", "STATE"}
_OPTIONAL_NODES |= {"SCAL", "SCALAR", "DC", "NEXT"}
_HEADER = re.compile(r"^\s*(\*?[A-Za-z0-9:]+\??)\s*(.*)$")


def normalise_header(header: str) -> str:
    """Canonical short form of an SCPI header: ``:SOURce1:VOLTage:LEVel`` → ``SOUR:VOLT``."""
    query = header.endswith("?")
    nodes = []
    for node in header.rstrip("?").lstrip(":").upper().split(":"):
        node = re.sub(r"(?<=[A-Z])\d+$", "", node)
        node = _LONG_FORMS.get(node, node)
        if node and node not in _OPTIONAL_NODES:
            nodes.append(node)
    return ":".join(nodes) + ("?" if query else "")


class ScpiError(Exception):
    """An SCPI error to queue: code and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _number(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ScpiError(-104, "Data type error") from None
    if not math.isfinite(value):
        raise ScpiError(-104, "Data type error")
    return value


def _boolean(text: str) -> bool:
    token = text.strip().upper()
    if token in ("1", "ON"):
        return True
    if token in ("0", "OFF"):
        return False
    raise ScpiError(-104, "Data type error")


def _in_range(value: float, low: float, high: float) -> float:
    if not low <= value <= high:
        raise ScpiError(-222, "Parameter, out of range")
    return value


def _fmt(value: float) -> str:
    return f"{value:.6E}"


Handler = Callable[[str], str | None]


class ScpiInstrument:
    """Command table + SCPI error queue; subclasses register handlers by canonical header."""

    identity = "SIM,INSTRUMENT,0,0"

    def __init__(self, station: SimulatedStation) -> None:
        self.station = station
        self.errors: list[tuple[int, str]] = []
        self.handlers: dict[str, Handler] = {
            "*IDN?": lambda _: self.identity,
            "*CLS": self._clear,
            "*WAI": lambda _: None,
            "*OPC?": lambda _: "1",
            "*RST": lambda _: None,
            "SYST:ERR?": self._next_error,
            "SIM:CLOC:ADV": self._advance,
            "SIM:CLOC?": lambda _: _fmt(self.station.clock.now_s),
        }

    def _clear(self, _: str) -> None:
        self.errors.clear()

    def _next_error(self, _: str) -> str:
        if not self.errors:
            return '0,"No error"'
        code, message = self.errors.pop(0)
        return f'{code},"{message}"'

    def _advance(self, args: str) -> None:
        seconds = _number(args)
        _in_range(seconds, 0.0, 1e10)
        self.station.clock.advance(seconds)

    def queue_error(self, code: int, message: str) -> None:
        """Add an entry to the SCPI error queue (read by ``SYST:ERR?``)."""
        self.errors.append((code, message))

    def handle_line(self, line: str) -> list[str]:
        """Execute one received line (``;``-separated commands); return the replies."""
        replies: list[str] = []
        for command in line.split(";"):
            if not command.strip():
                continue
            match = _HEADER.match(command)
            if match is None:
                self.queue_error(-102, "Syntax error")
                continue
            header, args = normalise_header(match.group(1)), match.group(2)
            handler = self.handlers.get(header)
            if handler is None:
                self.queue_error(-113, "Undefined header")
                continue
            try:
                with self.station.lock:
                    reply = handler(args)
            except ScpiError as exc:
                self.queue_error(exc.code, exc.message)
                continue
            if reply is not None:
                replies.append(reply)
        return replies


class SimulatedSmu(ScpiInstrument):
    """Keithley 2450 command subset wired to :class:`SimulatedTestDevice`."""

    identity = "KEITHLEY INSTRUMENTS,MODEL 2450,SIM0001,1.7.12b"

    def __init__(self, station: SimulatedStation) -> None:
        super().__init__(station)
        self.device = station.device
        self.source_function = "VOLT"
        self.source_voltage_v = 0.0
        self.source_current_a = 0.0
        self.current_limit_a = 1.05e-4
        self.voltage_limit_v = 21.0
        self.source_voltage_range_v = 2.0
        self.source_current_range_a = 1e-4
        self.measure_function = "CURR"
        self.current_range_a = 1e-4
        self.current_autorange = True
        self.voltage_range_v = 2.0
        self.output_enabled = False
        self.buffer: list[tuple[float, float]] = []
        self.sweep_points: list[float] = []
        self.sweep_delay_s = 0.0
        h = self.handlers
        h["SOUR:FUNC"] = self._set_source_function
        h["SOUR:FUNC?"] = lambda _: self.source_function
        h["SOUR:VOLT"] = lambda a: self._set("source_voltage_v", a, -210.0, 210.0)
        h["SOUR:VOLT?"] = lambda _: _fmt(self.source_voltage_v)
        h["SOUR:CURR"] = lambda a: self._set("source_current_a", a, -1.05, 1.05)
        h["SOUR:CURR?"] = lambda _: _fmt(self.source_current_a)
        h["SOUR:VOLT:ILIM"] = lambda a: self._set("current_limit_a", a, 1e-9, 1.05)
        h["SOUR:VOLT:ILIM?"] = lambda _: _fmt(self.current_limit_a)
        h["SOUR:CURR:VLIM"] = lambda a: self._set("voltage_limit_v", a, 0.02, 210.0)
        h["SOUR:CURR:VLIM?"] = lambda _: _fmt(self.voltage_limit_v)
        h["SOUR:VOLT:RANG"] = lambda a: self._set("source_voltage_range_v", a, 0.02, 200.0)
        h["SOUR:VOLT:RANG?"] = lambda _: _fmt(self.source_voltage_range_v)
        h["SOUR:CURR:RANG"] = lambda a: self._set("source_current_range_a", a, 1e-8, 1.0)
        h["SOUR:CURR:RANG?"] = lambda _: _fmt(self.source_current_range_a)
        h["SENS:FUNC"] = self._set_measure_function
        h["SENS:FUNC?"] = lambda _: f'"{self.measure_function}:DC"'
        h["SENS:CURR:RANG"] = self._set_current_range
        h["SENS:CURR:RANG?"] = lambda _: _fmt(self.current_range_a)
        h["SENS:CURR:RANG:AUTO"] = self._set_autorange
        h["SENS:CURR:RANG:AUTO?"] = lambda _: str(int(self.current_autorange))
        h["SENS:VOLT:RANG"] = lambda a: self._set("voltage_range_v", a, 0.02, 200.0)
        h["SENS:VOLT:RANG?"] = lambda _: _fmt(self.voltage_range_v)
        h["OUTP"] = self._set_output
        h["OUTP?"] = lambda _: str(int(self.output_enabled))
        h["MEAS:CURR?"] = lambda _: _fmt(self._reading("CURR")[1])
        h["MEAS:VOLT?"] = lambda _: _fmt(self._reading("VOLT")[1])
        h["READ?"] = lambda _: _fmt(self._reading(self.measure_function)[1])
        h["TRAC:CLE"] = self._trace_clear
        h["TRAC:ACT?"] = lambda _: str(len(self.buffer))
        h["TRAC:DATA?"] = self._trace_data
        h["SOUR:SWE:VOLT:LIN"] = self._configure_sweep
        h["INIT"] = self._run_sweep
        h["SOUR:PULS:CURR"] = self._pulse

    def _set(self, attribute: str, args: str, low: float, high: float) -> None:
        setattr(self, attribute, _in_range(_number(args), low, high))

    def _set_source_function(self, args: str) -> None:
        function = normalise_header(args.strip().strip('"'))
        if function not in ("VOLT", "CURR"):
            raise ScpiError(-224, "Illegal parameter value")
        self.source_function = function

    def _set_measure_function(self, args: str) -> None:
        function = normalise_header(args.strip().strip('"')).removesuffix(":DC")
        if function not in ("VOLT", "CURR"):
            raise ScpiError(-224, "Illegal parameter value")
        self.measure_function = function

    def _set_current_range(self, args: str) -> None:
        self.current_range_a = _in_range(_number(args), 1e-8, 1.0)
        self.current_autorange = False

    def _set_autorange(self, args: str) -> None:
        self.current_autorange = _boolean(args)

    def _set_output(self, args: str) -> None:
        self.output_enabled = _boolean(args)

    def _operating_point(self) -> tuple[float, float]:
        """(V across the device, I through it) for one reading, with read noise."""
        if not self.output_enabled:
            return 0.0, 0.0
        g_s = self.device.read_conductance_us() * 1e-6
        if self.source_function == "VOLT":
            volts = self.source_voltage_v
            amps = g_s * volts
            if abs(amps) > self.current_limit_a:  # in compliance: current limited
                amps = math.copysign(self.current_limit_a, amps)
                volts = amps / g_s if g_s > 0 else volts
            return volts, amps
        amps = self.source_current_a
        volts = amps / g_s if g_s > 0 else math.copysign(math.inf, amps or 1.0)
        if abs(volts) > self.voltage_limit_v:  # in compliance: voltage limited
            volts = math.copysign(self.voltage_limit_v, volts)
            amps = volts * g_s
        return volts, amps

    def _reading(self, function: str) -> tuple[float, float]:
        """(source level, reading) for one measurement; advances the clock by 1 PLC."""
        volts, amps = self._operating_point()
        self.station.clock.advance(PLC_S)
        source = self.source_voltage_v if self.source_function == "VOLT" else self.source_current_a
        if function == "CURR":
            overflow = not self.current_autorange and abs(amps) > 1.05 * self.current_range_a
            return source, OVERFLOW_READING if overflow else amps
        return source, volts

    def _trace_clear(self, _: str) -> None:
        self.buffer.clear()

    def _trace_data(self, args: str) -> str:
        parts = [part.strip().strip('"').upper() for part in args.split(",")]
        if len(parts) < 3:
            raise ScpiError(-109, "Missing parameter")
        start, end = int(_number(parts[0])), int(_number(parts[1]))
        if parts[2] != "DEFBUFFER1" or not 1 <= start <= end <= len(self.buffer):
            raise ScpiError(-222, "Parameter, out of range")
        elements = parts[3:] or ["READ"]
        values: list[str] = []
        for source, reading in self.buffer[start - 1 : end]:
            for element in elements:
                if element == "SOUR":
                    values.append(_fmt(source))
                elif element == "READ":
                    values.append(_fmt(reading))
                else:
                    raise ScpiError(-224, "Illegal parameter value")
        return ",".join(values)

    def _configure_sweep(self, args: str) -> None:
        parts = [part.strip() for part in args.split(",")]
        if len(parts) < 3:
            raise ScpiError(-109, "Missing parameter")
        start = _in_range(_number(parts[0]), -210.0, 210.0)
        stop = _in_range(_number(parts[1]), -210.0, 210.0)
        points = int(_in_range(_number(parts[2]), 2, 1e6))
        self.sweep_delay_s = _in_range(_number(parts[3]), 0.0, 1e4) if len(parts) > 3 else 0.0
        self.sweep_points = list(np.linspace(start, stop, points))
        self.source_function = "VOLT"

    def _run_sweep(self, _: str) -> None:
        """The trigger model of the sweep: output on, step, delay, measure, store."""
        if not self.sweep_points:
            raise ScpiError(-221, "Settings conflict")
        level = self.source_voltage_v
        self.output_enabled = True
        for volts in self.sweep_points:
            self.source_voltage_v = float(volts)
            self.station.clock.advance(self.sweep_delay_s)
            self.buffer.append(self._reading(self.measure_function))
        self.source_voltage_v = level

    def _pulse(self, args: str) -> None:
        parts = [part.strip() for part in args.split(",")]
        if len(parts) != 3:
            raise ScpiError(-109, "Missing parameter")
        amplitude = _in_range(_number(parts[0]), 0.0, 1.05e-3)
        width = _in_range(_number(parts[1]), 1e-8, 1e-3)
        fall = _in_range(_number(parts[2]), 0.0, 1e-6)
        if not self.output_enabled:
            raise ScpiError(-221, "Settings conflict")
        self.device.apply_pulse(amplitude * 1e6, width * 1e9, fall * 1e9)


class SimulatedSupply(ScpiInstrument):
    """Keysight E36312A command subset wired to three resistive rails."""

    identity = "Keysight Technologies,E36312A,SIM0001,2.1.2-1.0.4-1.12"
    _CHANNEL = re.compile(r"\(@\s*(\d)\s*\)")

    def __init__(self, station: SimulatedStation) -> None:
        super().__init__(station)
        self.rails = station.rails
        h = self.handlers
        h["VOLT"] = lambda a: self._set(a, "voltage_setpoint_v", 0)
        h["CURR"] = lambda a: self._set(a, "current_limit_a", 1)
        h["OUTP"] = self._set_output
        h["VOLT?"] = lambda a: f"{self._rail(a).voltage_setpoint_v:+.6E}"
        h["CURR?"] = lambda a: f"{self._rail(a).current_limit_a:+.6E}"
        h["OUTP?"] = lambda a: str(int(self._rail(a).output_enabled))
        h["MEAS:VOLT?"] = lambda a: self._measure(a, 0, 1e-4)
        h["MEAS:CURR?"] = lambda a: self._measure(a, 1, 1e-5)

    def _split(self, args: str) -> tuple[str, SimulatedRail]:
        match = self._CHANNEL.search(args)
        if match is None:
            raise ScpiError(-109, "Missing parameter")
        channel = int(match.group(1))
        if not 1 <= channel <= len(self.rails):
            raise ScpiError(-222, "Parameter, out of range")
        return args[: match.start()].strip().rstrip(","), self.rails[channel - 1]

    def _rail(self, args: str) -> SimulatedRail:
        return self._split(args)[1]

    def _set(self, args: str, attribute: str, which: int) -> None:
        value_text, rail = self._split(args)
        high = (rail.max_voltage_v, rail.max_current_a)[which]
        setattr(rail, attribute, _in_range(_number(value_text), 0.0, high))

    def _set_output(self, args: str) -> None:
        value_text, rail = self._split(args)
        rail.output_enabled = _boolean(value_text)

    def _measure(self, args: str, which: int, sigma: float) -> str:
        rail = self._rail(args)
        value = rail.operating_point()[which]
        if rail.output_enabled:
            value += sigma * float(self.station.rng.standard_normal())
        self.station.clock.advance(PLC_S)
        return f"{value:+.6E}"


class SimulatedTemperatureController(ScpiInstrument):
    """Lake Shore 335 command subset wired to :class:`SimulatedChuck`; errors set ``*ESR?``."""

    identity = "LSCI,MODEL335,SIM0001,2.4"

    def __init__(self, station: SimulatedStation) -> None:
        super().__init__(station)
        self.chuck = station.chuck
        self.esr = 0
        h = self.handlers
        del h["SYST:ERR?"]
        h["*ESR?"] = self._read_esr
        h["KRDG?"] = lambda a: f"{self._temperature_k(a):+.3f}"
        h["CRDG?"] = lambda a: f"{self._temperature_k(a) - KELVIN_OFFSET:+.3f}"
        h["SETP"] = self._set_setpoint
        h["SETP?"] = self._setpoint
        h["RANG"] = self._set_range
        h["RANG?"] = self._range

    def queue_error(self, code: int, message: str) -> None:
        """The 335 has no error queue: command errors set ESR bit 5, execution errors bit 4."""
        self.esr |= 1 << 4 if -299 <= code <= -200 else 1 << 5

    def _clear(self, _: str) -> None:
        self.esr = 0

    def _read_esr(self, _: str) -> str:
        value, self.esr = self.esr, 0
        return str(value)

    @staticmethod
    def _loop(args: str) -> int:
        if args.strip().split(",")[0].strip() not in ("1",):
            raise ScpiError(-222, "Parameter, out of range")
        return 1

    def _setpoint(self, args: str) -> str:
        self._loop(args)
        return f"{self.chuck.setpoint_k:+.3f}"

    def _range(self, args: str) -> str:
        self._loop(args)
        return str(self.chuck.heater_range)

    def _temperature_k(self, args: str) -> float:
        if args.strip().upper() not in ("A", "B"):
            raise ScpiError(-222, "Parameter, out of range")
        return self.chuck.update() + 0.005 * float(self.station.rng.standard_normal())

    def _set_setpoint(self, args: str) -> None:
        parts = args.split(",")
        if len(parts) != 2:
            raise ScpiError(-109, "Missing parameter")
        self._loop(parts[0])
        self.chuck.update()
        self.chuck.setpoint_k = _in_range(_number(parts[1]), 0.0, 1500.0)

    def _set_range(self, args: str) -> None:
        parts = args.split(",")
        if len(parts) != 2:
            raise ScpiError(-109, "Missing parameter")
        self._loop(parts[0])
        code = int(_in_range(_number(parts[1]), 0, 3))
        self.chuck.update()
        self.chuck.heater_range = code


# -- the station --------------------------------------------------------------------------------


class SimulatedStation:
    """SMU, supply and temperature controller served on 127.0.0.1, one TCP port each.

    Args:
        seed: seed of all randomness (device sampling, read noise, readback noise).
        time_scale: virtual seconds per wall-clock second on top of explicit advances
            (0: purely virtual, deterministic; 1: real time).
        host: address to bind; 127.0.0.1 (no authentication: never expose it).
        ports: instrument name → TCP port (0 or missing: a free port).
        rail_loads_ohm: load resistors on supply outputs 1, 2, 3 in Ω.
        ambient_c: ambient temperature in °C.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        time_scale: float = 0.0,
        host: str = "127.0.0.1",
        ports: dict[str, int] | None = None,
        rail_loads_ohm: tuple[float, float, float] = DEFAULT_RAIL_LOADS_OHM,
        ambient_c: float = 22.0,
    ) -> None:
        self.host = host
        self.lock = threading.RLock()
        self.rng = np.random.default_rng(seed)
        self.clock = StationClock(time_scale)
        self.device = SimulatedTestDevice(np.random.default_rng([seed, 1]), self.clock)
        ratings = ((6.0, 5.0), (25.0, 1.0), (25.0, 1.0))
        self.rails = [
            SimulatedRail(load, volts, amps)
            for load, (volts, amps) in zip(rail_loads_ohm, ratings, strict=True)
        ]
        self.chuck = SimulatedChuck(self.clock, ambient_k=ambient_c + KELVIN_OFFSET)
        self.instruments: dict[str, ScpiInstrument] = {
            "smu": SimulatedSmu(self),
            "supply": SimulatedSupply(self),
            "chuck": SimulatedTemperatureController(self),
        }
        self._ports = dict(ports or {})
        self._listeners: dict[str, socket.socket] = {}
        self._threads: list[threading.Thread] = []
        self._connections: set[socket.socket] = set()
        self._stop = threading.Event()

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> SimulatedStation:
        """Open the listening ports and serve in background threads; returns self."""
        if self._listeners:
            return self
        try:
            for name in INSTRUMENT_NAMES:
                listener = socket.create_server((self.host, self._ports.get(name, 0)))
                listener.settimeout(0.2)
                self._listeners[name] = listener
        except OSError:
            self.stop()
            raise
        for name, listener in self._listeners.items():
            thread = threading.Thread(
                target=self._accept_loop, args=(name, listener), name=f"station-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Close the ports and connections and wait for the threads."""
        self._stop.set()
        for listener in self._listeners.values():
            listener.close()
        with self.lock:
            connections = list(self._connections)
        for connection in connections:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def __enter__(self) -> SimulatedStation:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def ports(self) -> dict[str, int]:
        """Instrument name → bound TCP port (after :meth:`start`)."""
        return {name: listener.getsockname()[1] for name, listener in self._listeners.items()}

    @property
    def resources(self) -> dict[str, str]:
        """Instrument name → VISA resource string for pyvisa-py (``@py``)."""
        return {name: f"TCPIP::{self.host}::{port}::SOCKET" for name, port in self.ports.items()}

    # -- serving ------------------------------------------------------------------------------

    def _accept_loop(self, name: str, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            thread = threading.Thread(
                target=self._serve, args=(name, connection), name=f"station-{name}-client"
            )
            thread.daemon = True
            thread.start()
            self._threads.append(thread)

    def _serve(self, name: str, connection: socket.socket) -> None:
        instrument = self.instruments[name]
        with self.lock:
            self._connections.add(connection)
        buffer = b""
        try:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection.settimeout(0.2)
            while not self._stop.is_set():
                try:
                    data = connection.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                if _QUICKACK is not None:
                    # Acknowledge at once: pyvisa-py leaves Nagle on, so a command that gets
                    # no reply would otherwise hold the next one for the delayed-ACK time.
                    connection.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
                buffer += data
                while b"\n" in buffer:
                    raw, buffer = buffer.split(b"\n", 1)
                    line = raw.decode("ascii", errors="replace").rstrip("\r")
                    replies = instrument.handle_line(line)
                    if replies:
                        connection.sendall((";".join(replies) + "\n").encode("ascii"))
                if len(buffer) > 1 << 20:
                    log.warning("%s: dropping a client that sent 1 MiB without a newline", name)
                    break
        except OSError as exc:
            log.info("%s client dropped: %s", name, exc)
        finally:
            with self.lock:
                self._connections.discard(connection)
            connection.close()


@contextmanager
def spawned(
    *, seed: int = 0, time_scale: float = 0.0, host: str = "127.0.0.1"
) -> Iterator[dict[str, str]]:
    """A simulated station in a child process for the ``with`` block; yields its resources."""
    command = [sys.executable, "-m", "drivers.sim.instruments.station_server"]
    command += ["--seed", str(seed), "--time-scale", str(time_scale), "--host", host]
    with announced_child(command) as (line, errors):
        try:
            resources = json.loads(line)
        except json.JSONDecodeError:
            raise RuntimeError(f"simulated station did not start: {line}{errors}") from None
        yield {str(key): str(value) for key, value in resources.items()}


def main(argv: list[str] | None = None) -> int:
    """Serve the simulated instruments until interrupted (``python -m`` this module)."""
    parser = argparse.ArgumentParser(
        prog="python -m drivers.sim.instruments.station_server",
        description="Serve the simulated bench instruments (SCPI over TCP on 127.0.0.1).",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--host", default="127.0.0.1")
    for name in INSTRUMENT_NAMES:
        parser.add_argument(f"--{name}-port", type=int, default=0, help=f"TCP port of the {name}")
    args = parser.parse_args(argv)
    ports = {name: getattr(args, f"{name}_port") for name in INSTRUMENT_NAMES}
    station = SimulatedStation(
        seed=args.seed, time_scale=args.time_scale, host=args.host, ports=ports
    )
    station.start()
    print(json.dumps(station.resources), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        station.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
