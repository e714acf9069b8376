"""The simulated Keithley 2450 SMU and the PCM test device between its terminals.

**SMU (Keithley 2450) → one PCM test device.** The device is the chip's device model applied to
a single device: :class:`~drivers.sim.pulses.PulseModel` for programming and a
:class:`~drivers.sim.devices.DeviceModel` (by default the HERMES 1-device fits) for ν, drift,
relaxation and read noise: the same model object and equations as
:class:`drivers.sim.chip.SimulatedChip` (:mod:`drivers.sim.devices`)::

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
"""

from __future__ import annotations

import math
import threading

import numpy as np

from drivers.instruments.keithley2450 import (
    CURRENT_RANGES_A,
    PULSE_AMPLITUDE_RANGE_A,
    PULSE_FALL_RANGE_S,
    PULSE_WIDTH_RANGE_S,
    VOLTAGE_RANGES_V,
)
from drivers.sim.clock import Clock
from drivers.sim.devices import DeviceModel, HermesPcm
from drivers.sim.instruments.scpi import (
    PLC_S,
    ScpiError,
    ScpiInstrument,
    boolean,
    fmt,
    in_range,
    normalise_header,
    number,
)
from drivers.sim.pulses import PULSE_PARTIAL, PULSE_SET, PulseModel

VOLTAGE_SPAN_V = (VOLTAGE_RANGES_V[0], VOLTAGE_RANGES_V[-1])
CURRENT_SPAN_A = (CURRENT_RANGES_A[0], CURRENT_RANGES_A[-1])
# The ranges and pulse limits are the driver's: the simulated instrument accepts what the
# real one does, and the two cannot drift apart.
OVERFLOW_READING = 9.9e37
"""What a 2450 returns for an over-range reading."""
SET_FALL_THRESHOLD_S = 50e-9
"""Trailing edge at or above which a pulse counts as a SET pulse (the published 50 ns)."""


class SimulatedTestDevice:
    """One PCM device on the SMU: its state, with the physics of a device model.

    The equations (ν at programming, drift, relaxation, read noise) are those of ``model``,
    the same :class:`~drivers.sim.devices.DeviceModel` the simulated chip uses; the pulse
    response is a :class:`~drivers.sim.pulses.PulseModel` on that model. A new device starts
    crystalline (its SET maximum, drawn from the pulse model).

    Args:
        rng: all randomness of the device.
        clock: the simulation clock (τ = now − programming time).
        model: the device model; default :class:`~drivers.sim.devices.HermesPcm` (1 device).
    """

    def __init__(
        self,
        rng: np.random.Generator,
        clock: Clock,
        *,
        model: DeviceModel | None = None,
    ) -> None:
        self.rng = rng
        self.clock = clock
        self.model: DeviceModel = model if model is not None else HermesPcm(num_devices=1)
        self.pulses = PulseModel(rng=rng, device=self.model)
        self.g_set_max_us = float(self.pulses.sample_set_max_us(1, 1)[0, 0])
        self.pulses_applied = 0
        self._program(self.g_set_max_us, 0.0)

    def _program(self, g_us: float, relax_us: float) -> None:
        self.g_prog_us = float(g_us)
        self.relax_us = float(relax_us)
        self.nu = float(self.model.sample_nu(np.float64(self.g_prog_us), self.rng))
        self.t_prog_s = self.clock.now_s

    def age_s(self) -> float:
        """Time since the device was last programmed, in s (>= 0)."""
        return max(self.clock.now_s - self.t_prog_s, 0.0)

    def conductance_us(self) -> float:
        """Noiseless drifted conductance now, in µS (the ground truth tests compare with)."""
        g = self.model.conductance_us(
            np.float64(self.g_prog_us), np.float64(self.relax_us), np.float64(self.nu), self.age_s()
        )
        return float(g)

    def read_sigma_us(self) -> float:
        """σ of a read now, in µS (the device model's read noise at the current age)."""
        g_d = np.float64(self.conductance_us())
        return float(self.model.read_sigma_us(self.g_prog_us, g_d, self.age_s()))

    def read_conductance_us(self) -> float:
        """One noisy read of the conductance in µS (the device model's read noise)."""
        g_d = np.float64(self.conductance_us())
        sigma = self.model.read_sigma_us(self.g_prog_us, g_d, self.age_s())
        return float(self.model.sample_read_us(g_d, sigma, self.rng))

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


class SimulatedSmu(ScpiInstrument):
    """Keithley 2450 command subset wired to a :class:`SimulatedTestDevice`.

    Args:
        device: the PCM device between the SMU's terminals.
        clock: the simulation clock (each reading takes 1 PLC).
        lock: see :class:`~drivers.sim.instruments.scpi.ScpiInstrument`.
    """

    identity = "KEITHLEY INSTRUMENTS,MODEL 2450,SIM0001,1.7.12b"

    def __init__(
        self,
        device: SimulatedTestDevice,
        *,
        clock: Clock,
        lock: threading.RLock | None = None,
    ) -> None:
        super().__init__(clock=clock, lock=lock)
        self.device = device
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
        h["SOUR:VOLT?"] = lambda _: fmt(self.source_voltage_v)
        h["SOUR:CURR"] = lambda a: self._set("source_current_a", a, -1.05, 1.05)
        h["SOUR:CURR?"] = lambda _: fmt(self.source_current_a)
        h["SOUR:VOLT:ILIM"] = lambda a: self._set("current_limit_a", a, 1e-9, 1.05)
        h["SOUR:VOLT:ILIM?"] = lambda _: fmt(self.current_limit_a)
        h["SOUR:CURR:VLIM"] = lambda a: self._set("voltage_limit_v", a, 0.02, 210.0)
        h["SOUR:CURR:VLIM?"] = lambda _: fmt(self.voltage_limit_v)
        h["SOUR:VOLT:RANG"] = lambda a: self._set("source_voltage_range_v", a, *VOLTAGE_SPAN_V)
        h["SOUR:VOLT:RANG?"] = lambda _: fmt(self.source_voltage_range_v)
        h["SOUR:CURR:RANG"] = lambda a: self._set("source_current_range_a", a, *CURRENT_SPAN_A)
        h["SOUR:CURR:RANG?"] = lambda _: fmt(self.source_current_range_a)
        h["SENS:FUNC"] = self._set_measure_function
        h["SENS:FUNC?"] = lambda _: f'"{self.measure_function}:DC"'
        h["SENS:CURR:RANG"] = self._set_current_range
        h["SENS:CURR:RANG?"] = lambda _: fmt(self.current_range_a)
        h["SENS:CURR:RANG:AUTO"] = self._set_autorange
        h["SENS:CURR:RANG:AUTO?"] = lambda _: str(int(self.current_autorange))
        h["SENS:VOLT:RANG"] = lambda a: self._set("voltage_range_v", a, *VOLTAGE_SPAN_V)
        h["SENS:VOLT:RANG?"] = lambda _: fmt(self.voltage_range_v)
        h["OUTP"] = self._set_output
        h["OUTP?"] = lambda _: str(int(self.output_enabled))
        h["MEAS:CURR?"] = lambda _: fmt(self._reading("CURR")[1])
        h["MEAS:VOLT?"] = lambda _: fmt(self._reading("VOLT")[1])
        h["READ?"] = lambda _: fmt(self._reading(self.measure_function)[1])
        h["TRAC:CLE"] = self._trace_clear
        h["TRAC:ACT?"] = lambda _: str(len(self.buffer))
        h["TRAC:DATA?"] = self._trace_data
        h["SOUR:SWE:VOLT:LIN"] = self._configure_sweep
        h["INIT"] = self._run_sweep
        h["SOUR:PULS:CURR"] = self._pulse

    def _set(self, attribute: str, args: str, low: float, high: float) -> None:
        setattr(self, attribute, in_range(number(args), low, high))

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
        self.current_range_a = in_range(number(args), *CURRENT_SPAN_A)
        self.current_autorange = False

    def _set_autorange(self, args: str) -> None:
        self.current_autorange = boolean(args)

    def _set_output(self, args: str) -> None:
        self.output_enabled = boolean(args)

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
        self.clock.advance(PLC_S)
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
        start, end = int(number(parts[0])), int(number(parts[1]))
        if parts[2] != "DEFBUFFER1" or not 1 <= start <= end <= len(self.buffer):
            raise ScpiError(-222, "Parameter, out of range")
        elements = parts[3:] or ["READ"]
        values: list[str] = []
        for source, reading in self.buffer[start - 1 : end]:
            for element in elements:
                if element == "SOUR":
                    values.append(fmt(source))
                elif element == "READ":
                    values.append(fmt(reading))
                else:
                    raise ScpiError(-224, "Illegal parameter value")
        return ",".join(values)

    def _configure_sweep(self, args: str) -> None:
        parts = [part.strip() for part in args.split(",")]
        if len(parts) < 3:
            raise ScpiError(-109, "Missing parameter")
        start = in_range(number(parts[0]), -210.0, 210.0)
        stop = in_range(number(parts[1]), -210.0, 210.0)
        points = int(in_range(number(parts[2]), 2, 1e6))
        self.sweep_delay_s = in_range(number(parts[3]), 0.0, 1e4) if len(parts) > 3 else 0.0
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
            self.clock.advance(self.sweep_delay_s)
            self.buffer.append(self._reading(self.measure_function))
        self.source_voltage_v = level

    def _pulse(self, args: str) -> None:
        parts = [part.strip() for part in args.split(",")]
        if len(parts) != 3:
            raise ScpiError(-109, "Missing parameter")
        amplitude = in_range(number(parts[0]), *PULSE_AMPLITUDE_RANGE_A)
        width = in_range(number(parts[1]), *PULSE_WIDTH_RANGE_S)
        fall = in_range(number(parts[2]), *PULSE_FALL_RANGE_S)
        if not self.output_enabled:
            raise ScpiError(-221, "Settings conflict")
        self.device.apply_pulse(amplitude * 1e6, width * 1e9, fall * 1e9)
