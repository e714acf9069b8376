"""The simulated Lake Shore 335 temperature controller and the chuck it heats.

**Temperature controller (Lake Shore 335) → the chuck.** With the heater on (range LOW / MED /
HIGH) the chuck temperature moves toward the setpoint at 1 / 3 / 10 K/min (UNCONFIRMED, a
typical thermal chuck) and stays there; above the setpoint it cools passively (never below the
setpoint). Heater off: it relaxes to the ambient 22 °C with τ = 900 s. Readings carry 5 mK noise.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from drivers.sim.clock import Clock
from drivers.sim.instruments.scpi import ScpiError, ScpiInstrument, in_range, number

KELVIN_OFFSET = 273.15
HEATER_RATES_K_PER_MIN = {0: 0.0, 1: 1.0, 2: 3.0, 3: 10.0}
"""Heater range code → heating rate of the chuck in K/min (UNCONFIRMED, typical chuck)."""


class SimulatedChuck:
    """The chuck's temperature in K, advanced lazily on the station clock."""

    def __init__(self, clock: Clock, *, ambient_k: float = 295.15, tau_s: float = 900.0):
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


class SimulatedTemperatureController(ScpiInstrument):
    """Lake Shore 335 command subset wired to :class:`SimulatedChuck`; errors set ``*ESR?``.

    Args:
        chuck: the chuck whose temperature the controller reads and drives.
        clock: the simulation clock.
        rng: generator of the reading noise.
        lock: see :class:`~drivers.sim.instruments.scpi.ScpiInstrument`.
    """

    identity = "LSCI,MODEL335,SIM0001,2.4"

    def __init__(
        self,
        chuck: SimulatedChuck,
        *,
        clock: Clock,
        rng: np.random.Generator,
        lock: threading.RLock | None = None,
    ) -> None:
        super().__init__(clock=clock, lock=lock)
        self.chuck = chuck
        self.rng = rng
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
        return self.chuck.update() + 0.005 * float(self.rng.standard_normal())

    def _set_setpoint(self, args: str) -> None:
        parts = args.split(",")
        if len(parts) != 2:
            raise ScpiError(-109, "Missing parameter")
        self._loop(parts[0])
        self.chuck.update()
        self.chuck.setpoint_k = in_range(number(parts[1]), 0.0, 1500.0)

    def _set_range(self, args: str) -> None:
        parts = args.split(",")
        if len(parts) != 2:
            raise ScpiError(-109, "Missing parameter")
        self._loop(parts[0])
        code = int(in_range(number(parts[1]), 0, 3))
        self.chuck.update()
        self.chuck.heater_range = code
