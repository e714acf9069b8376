"""The simulated Keysight E36312A supply: three outputs, each driving a resistive rail.

**Supply (Keysight E36312A) → resistive rails.** Each output drives a resistor (defaults
2 Ω, 36 Ω, 150 Ω: a 0.8 V core rail at 0.4 A, a 1.8 V I/O rail at 50 mA, a 3 V programming
rail at 20 mA; UNCONFIRMED, chosen to look like a test chip). Enabled output in constant
voltage: V = V_set, I = V/R; when V_set/R exceeds the current limit the output goes constant
current: I = I_limit, V = I_limit·R. Disabled: 0 V, 0 A. Readbacks carry Gaussian noise of
0.1 mV and 10 µA (about the E36312A readback resolution).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence

import numpy as np

from drivers.instruments.keysight_e36312a import KeysightE36312A
from drivers.sim.clock import Clock
from drivers.sim.instruments.scpi import (
    PLC_S,
    ScpiError,
    ScpiInstrument,
    boolean,
    in_range,
    number,
)

DEFAULT_RAIL_LOADS_OHM = (2.0, 36.0, 150.0)
"""Load resistance on supply outputs 1, 2, 3 in Ω (UNCONFIRMED, see the module docstring)."""
RAIL_RATINGS = tuple(KeysightE36312A.CHANNEL_RATINGS[channel] for channel in (1, 2, 3))
"""(maximum V, maximum A) of outputs 1, 2, 3: the driver's declared E36312A ratings."""


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


class SimulatedSupply(ScpiInstrument):
    """Keysight E36312A command subset wired to three resistive rails.

    Args:
        rails: outputs 1, 2, 3.
        clock: the simulation clock (each readback takes 1 PLC).
        rng: generator of the readback noise.
        lock: see :class:`~drivers.sim.instruments.scpi.ScpiInstrument`.
    """

    identity = "Keysight Technologies,E36312A,SIM0001,2.1.2-1.0.4-1.12"
    _CHANNEL = re.compile(r"\(@\s*(\d)\s*\)")

    def __init__(
        self,
        rails: Sequence[SimulatedRail],
        *,
        clock: Clock,
        rng: np.random.Generator,
        lock: threading.RLock | None = None,
    ) -> None:
        super().__init__(clock=clock, lock=lock)
        self.rails = list(rails)
        self.rng = rng
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
        setattr(rail, attribute, in_range(number(value_text), 0.0, high))

    def _set_output(self, args: str) -> None:
        value_text, rail = self._split(args)
        rail.output_enabled = boolean(value_text)

    def _measure(self, args: str, which: int, sigma: float) -> str:
        rail = self._rail(args)
        value = rail.operating_point()[which]
        if rail.output_enabled:
            value += sigma * float(self.rng.standard_normal())
        self.clock.advance(PLC_S)
        return f"{value:+.6E}"
