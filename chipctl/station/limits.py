"""The station's safety limits: :class:`Limits`, the ONE place every limit is enforced.

Rail settings, every intermediate ramp step, the SMU's voltage/current, the chuck temperature
window and programming pulses are checked here before anything is sent. A violation raises
:class:`SafetyLimitError` (a :class:`~drivers.errors.LimitError`, so also a ``ValueError``)
naming the limit key; values are never clipped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from chipctl.errors import ChipctlError
from chipctl.station.config import RailConfig
from drivers.errors import LimitError


class SafetyLimitError(ChipctlError, LimitError):
    """A value was refused by a safety limit of the station; ``limit`` names the limit key."""

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(f"{message} (limit {limit})")
        self.limit = limit


@dataclass(frozen=True)
class Limits:
    """The station's safety limits: the ONE place they are enforced.

    Attributes:
        rails: channel → rail configuration (voltage and current limits per rail).
        ramp_rate_v_per_s: largest rail slew in V/s.
        ramp_step_v: voltage step of a ramp in V; a step lasts ramp_step_v / ramp_rate_v_per_s.
        temperature_window_c: (low, high) chuck temperature in °C allowed for programming.
        max_programming_ua: largest programming-pulse amplitude in µA.
        smu_max_voltage_v: largest |SMU voltage| on the test device in V.
        smu_max_current_a: largest SMU current (compliance) in A.
    """

    rails: Mapping[int, RailConfig]
    ramp_rate_v_per_s: float
    ramp_step_v: float
    temperature_window_c: tuple[float, float]
    max_programming_ua: float
    smu_max_voltage_v: float
    smu_max_current_a: float

    @property
    def step_dwell_s(self) -> float:
        """Time per ramp step in s, so the slew stays at ``ramp_rate_v_per_s``."""
        return self.ramp_step_v / self.ramp_rate_v_per_s

    def _rail(self, channel: int) -> RailConfig:
        try:
            return self.rails[channel]
        except KeyError:
            raise SafetyLimitError(
                f"supply output {channel!r} is not a configured rail "
                f"(configured: {sorted(self.rails)})",
                limit="rails",
            ) from None

    @staticmethod
    def _finite(value: float, what: str, limit: str) -> float:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not math.isfinite(value):
            raise SafetyLimitError(f"{what} {value!r} is not a finite number", limit=limit)
        return float(value)

    def check_rail(self, channel: int, volts: float, amps: float) -> None:
        """Refuse a rail voltage outside [0, max_voltage_v] or a current above max_current_a."""
        rail = self._rail(channel)
        key = f"rails.{rail.name}"
        volts = self._finite(volts, f"rail {rail.name} voltage", f"{key}.max_voltage_v")
        amps = self._finite(amps, f"rail {rail.name} current", f"{key}.max_current_a")
        if not 0.0 <= volts <= rail.max_voltage_v:
            raise SafetyLimitError(
                f"rail {rail.name} (output {channel}): {volts:g} V is outside "
                f"[0, {rail.max_voltage_v:g}] V",
                limit=f"{key}.max_voltage_v",
            )
        if not 0.0 <= amps <= rail.max_current_a:
            raise SafetyLimitError(
                f"rail {rail.name} (output {channel}): {amps:g} A is outside "
                f"[0, {rail.max_current_a:g}] A",
                limit=f"{key}.max_current_a",
            )

    def ramp_steps(self, channel: int, start_v: float, stop_v: float) -> list[float]:
        """Setpoints (V) from ``start_v`` (excluded) to ``stop_v`` in steps ≤ ``ramp_step_v``.

        Every setpoint is checked with :meth:`check_rail` (at the rail's current limit); one
        violation refuses the whole ramp (nothing is clipped, nothing has been set).
        """
        rail = self._rail(channel)
        start = self._finite(start_v, "ramp start", f"rails.{rail.name}.max_voltage_v")
        stop = self._finite(stop_v, "ramp stop", f"rails.{rail.name}.max_voltage_v")
        n = max(1, math.ceil(abs(stop - start) / self.ramp_step_v - 1e-9))
        steps = [start + (stop - start) * k / n for k in range(1, n)] + [stop]
        for index, volts in enumerate(steps):
            try:
                self.check_rail(channel, volts, rail.current_limit_a)
            except SafetyLimitError as exc:
                raise SafetyLimitError(
                    f"ramp {start:g} V → {stop:g} V refused at step {index + 1} of {n}: "
                    f"{str(exc).rsplit(' (limit', 1)[0]}",
                    limit=exc.limit,
                ) from None
        return steps

    def check_temperature(self, temperature_c: float) -> None:
        """Refuse a chuck temperature (°C) outside ``temperature_window_c``."""
        low, high = self.temperature_window_c
        t = self._finite(temperature_c, "temperature", "limits.temperature_window_c")
        if not low <= t <= high:
            raise SafetyLimitError(
                f"chuck temperature {t:.2f} °C is outside the window [{low:g}, {high:g}] °C",
                limit="limits.temperature_window_c",
            )

    def check_smu(self, volts: float, amps: float) -> None:
        """Refuse an SMU voltage (|V|) or current/compliance (|A|) above the SMU limits."""
        v = self._finite(volts, "SMU voltage", "limits.smu_max_voltage_v")
        a = self._finite(amps, "SMU current", "limits.smu_max_current_a")
        if abs(v) > self.smu_max_voltage_v:
            raise SafetyLimitError(
                f"SMU voltage {v:g} V exceeds ±{self.smu_max_voltage_v:g} V",
                limit="limits.smu_max_voltage_v",
            )
        if abs(a) > self.smu_max_current_a:
            raise SafetyLimitError(
                f"SMU current {a:g} A exceeds {self.smu_max_current_a:g} A",
                limit="limits.smu_max_current_a",
            )

    def check_programming(self, amplitude_ua: float, rails_ok: bool, temperature_c: float) -> None:
        """Refuse a programming pulse: amplitude above the limit, rails not in range, or the
        chuck outside its temperature window."""
        amplitude = self._finite(amplitude_ua, "programming amplitude", "max_programming_ua")
        if not 0.0 <= amplitude <= self.max_programming_ua:
            raise SafetyLimitError(
                f"programming amplitude {amplitude:g} µA is outside "
                f"[0, {self.max_programming_ua:g}] µA",
                limit="limits.max_programming_ua",
            )
        if not rails_ok:
            raise SafetyLimitError(
                "programming refused: a rail is off or outside its limits", limit="rails"
            )
        self.check_temperature(temperature_c)
