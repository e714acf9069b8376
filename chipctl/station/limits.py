"""The station's safety limits: :class:`Limits`, the ONE place every limit is enforced.

Rail settings, every intermediate ramp step, the SMU's voltage/current, the chuck temperature
window and programming pulses are checked here before anything is sent. A violation raises
:class:`SafetyLimitError` (a :class:`~drivers.errors.LimitError`, so also a ``ValueError``)
naming the limit key; values are never clipped.

The limits themselves are bounded too, by :func:`limit_problems`: every limit against the
declared rating of the instrument that applies it (class attributes of the drivers in
:mod:`drivers.instruments`) and against a physical range (the constants below). The station
file (:mod:`chipctl.station.file`) reports the first problem with the key's line.

Ramps are generated lazily (:meth:`Limits.ramp_steps` returns an iterator), so even an extreme
step count costs no memory; the whole ramp is still checked before its first setpoint.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from chipctl.errors import ChipctlError
from chipctl.station.config import RailConfig
from drivers.errors import LimitError
from drivers.instruments import Keithley2450, KeysightE36312A, LakeShore335

# -- physical ranges of the limits (project choices; see docs/station.md) -----------------------

ABSOLUTE_ZERO_C = -273.15
"""0 K in °C: no temperature is below it."""
CHUCK_RANGE_C = (-65.0, 300.0)
"""A sane chuck temperature window in °C: the range of common probe-station thermal chucks
(−65 … +300 °C; UNCONFIRMED for the chuck at hand, which has no driver of its own)."""
MIN_RAMP_STEP_V = 1e-3
"""Smallest ramp step in V (1 mV): about the supply's programming resolution (UNCONFIRMED for
the E36312A); a finer step only adds supply commands."""
MAX_RAMP_STEPS = 10_000
"""Most steps a ramp from 0 V to a rail's ``max_voltage_v`` may take: bounds the ramp step from
below at max_voltage_v / 10000 on high-voltage rails (2.5 mV on a 25 V rail)."""
RAMP_RATE_RANGE_V_PER_S = (1e-3, 1e3)
MAX_RAMP_TIME_S = 600.0
"""Longest time in s one rail's ramp (0 V to its operating voltage) may take: a slower ramp
is a typo in the rate, not a bench need (an operator would wait 50 min for 3 V at 1 mV/s)."""
"""Ramp rate range in V/s: slower than 1 mV/s a power-up takes hours; faster than 1 kV/s the
supply's output does not follow the steps anyway (no datasheet slew figure is used)."""
MIN_READBACK_TOLERANCE_V = 1e-3
"""Smallest readback tolerance in V (1 mV): about the supply's readback resolution
(UNCONFIRMED for the E36312A); a tighter one fails on readback noise."""
MAX_READBACK_FRACTION = 0.1
"""Largest readback tolerance relative to the rail's setpoint ``voltage_v`` (10 %): a wider one
would accept a rail far off its operating point."""


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

    def __post_init__(self) -> None:
        for key in ("ramp_step_v", "ramp_rate_v_per_s"):
            value = getattr(self, key)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise SafetyLimitError(
                    f"{key} must be a finite number > 0, got {value!r}", limit=f"limits.{key}"
                )

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

    def ramp_step_count(self, start_v: float, stop_v: float) -> int:
        """Number of setpoints of a ramp from ``start_v`` to ``stop_v`` (at least 1)."""
        count = abs(stop_v - start_v) / self.ramp_step_v - 1e-9
        if not math.isfinite(count):
            raise SafetyLimitError(
                f"a ramp {start_v:g} V → {stop_v:g} V in steps of {self.ramp_step_v:g} V has "
                "no finite number of steps",
                limit="limits.ramp_step_v",
            )
        return max(1, math.ceil(count))

    def ramp_steps(self, channel: int, start_v: float, stop_v: float) -> Iterator[float]:
        """Setpoints (V) from ``start_v`` (excluded) to ``stop_v`` in steps ≤ ``ramp_step_v``.

        An iterator: the setpoints are generated one by one, so a ramp of any step count costs
        no memory. The whole ramp is checked *now*, before the first setpoint is produced, with
        :meth:`check_rail` (at the rail's current limit); one violation refuses the whole ramp
        (nothing is clipped, nothing has been set). The setpoints are monotonic and the allowed
        range is an interval, so the violations are a prefix or a suffix of the ramp: checking
        the first and the last setpoint (and bisecting for the first bad step) checks them all.
        """
        rail = self._rail(channel)
        start = self._finite(start_v, "ramp start", f"rails.{rail.name}.max_voltage_v")
        stop = self._finite(stop_v, "ramp stop", f"rails.{rail.name}.max_voltage_v")
        n = self.ramp_step_count(start, stop)

        def refusal(k: int) -> SafetyLimitError | None:
            try:
                self.check_rail(channel, _setpoint(start, stop, k, n), rail.current_limit_a)
            except SafetyLimitError as exc:
                return exc
            return None

        bad_step, error = 1, refusal(1)
        if error is None and n > 1 and (error := refusal(n)) is not None:
            good, bad_step = 1, n  # step 1 passes, step n fails: bisect for the first failure
            while bad_step - good > 1:
                middle = (good + bad_step) // 2
                if (middle_error := refusal(middle)) is None:
                    good = middle
                else:
                    bad_step, error = middle, middle_error
        if error is not None:
            raise SafetyLimitError(
                f"ramp {start:g} V → {stop:g} V refused at step {bad_step} of {n}: "
                f"{str(error).rsplit(' (limit', 1)[0]}",
                limit=error.limit,
            ) from None
        return _setpoints(start, stop, n)

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


@dataclass(frozen=True)
class LimitProblem:
    """A station limit outside its instrument's rating or its physical range.

    Attributes:
        key: the station-file key, e.g. ``limits.smu_max_current_a`` or
            ``rails.vdd.max_voltage_v``.
        message: what is wrong, naming the value and the rating or range it breaks.
    """

    key: str
    message: str


def _rail_problems(rail: RailConfig, ramp_step_v: float) -> Iterator[LimitProblem]:
    """One rail's limits against the supply output's rating and their physical ranges."""
    key = f"rails.{rail.name}"
    supply = KeysightE36312A.MODEL_NAME
    rated_v, rated_a = KeysightE36312A.CHANNEL_RATINGS[rail.channel]
    if rail.max_voltage_v > rated_v:
        yield LimitProblem(
            f"{key}.max_voltage_v",
            f"exceeds output {rail.channel}'s rating: {rail.max_voltage_v:g} V is above the "
            f"{supply}'s {rated_v:g} V on output {rail.channel}",
        )
    if rail.max_current_a > rated_a:
        yield LimitProblem(
            f"{key}.max_current_a",
            f"exceeds output {rail.channel}'s rating: {rail.max_current_a:g} A is above the "
            f"{supply}'s {rated_a:g} A on output {rail.channel}",
        )
    if rail.voltage_v > rail.max_voltage_v:
        yield LimitProblem(
            f"{key}.voltage_v",
            f"{rail.voltage_v:g} V is above max_voltage_v = {rail.max_voltage_v:g} V",
        )
    if rail.current_limit_a > rail.max_current_a:
        yield LimitProblem(
            f"{key}.current_limit_a",
            f"{rail.current_limit_a:g} A is above max_current_a = {rail.max_current_a:g} A",
        )
    tolerance = rail.readback_tolerance_v
    largest = MAX_READBACK_FRACTION * rail.voltage_v
    if tolerance < MIN_READBACK_TOLERANCE_V:
        yield LimitProblem(
            f"{key}.readback_tolerance_v",
            f"{tolerance:g} V is below the smallest readback tolerance "
            f"{MIN_READBACK_TOLERANCE_V:g} V (about the {supply}'s readback resolution)",
        )
    elif tolerance > largest:
        yield LimitProblem(
            f"{key}.readback_tolerance_v",
            f"{tolerance:g} V is more than {MAX_READBACK_FRACTION:.0%} of the setpoint "
            f"voltage_v = {rail.voltage_v:g} V (largest {largest:g} V)",
        )
    if ramp_step_v > rail.voltage_v:
        yield LimitProblem(
            "limits.ramp_step_v",
            f"{ramp_step_v:g} V is larger than rail {rail.name}'s voltage_v = "
            f"{rail.voltage_v:g} V: the rail would jump to its target in one step",
        )


def limit_problems(limits: Limits) -> list[LimitProblem]:
    """Every limit of ``limits`` checked against its instrument's rating and its physical range.

    The ratings are the drivers' class attributes (:class:`~drivers.instruments.Keithley2450`,
    :class:`~drivers.instruments.KeysightE36312A`, :class:`~drivers.instruments.LakeShore335`);
    the physical ranges are this module's constants. Returns the problems in the order rails
    (file order), then ``[limits]``; empty when every limit is sane.
    """
    problems: list[LimitProblem] = []
    for rail in limits.rails.values():
        problems.extend(_rail_problems(rail, limits.ramp_step_v))

    step = limits.ramp_step_v
    largest_rail_v = max((rail.max_voltage_v for rail in limits.rails.values()), default=0.0)
    smallest_step = max(MIN_RAMP_STEP_V, largest_rail_v / MAX_RAMP_STEPS)
    if step < smallest_step:
        why = (
            f"the smallest ramp step {MIN_RAMP_STEP_V:g} V"
            if smallest_step == MIN_RAMP_STEP_V
            else f"{smallest_step:g} V: a ramp to {largest_rail_v:g} V may take at most "
            f"{MAX_RAMP_STEPS} steps"
        )
        problems.append(LimitProblem("limits.ramp_step_v", f"{step:g} V is below {why}"))

    low_rate, high_rate = RAMP_RATE_RANGE_V_PER_S
    rate = limits.ramp_rate_v_per_s
    if not low_rate <= rate <= high_rate:
        problems.append(
            LimitProblem(
                "limits.ramp_rate_v_per_s",
                f"{rate:g} V/s is outside the physical range {low_rate:g} … {high_rate:g} V/s",
            )
        )

    if low_rate <= rate <= high_rate:
        for rail in limits.rails.values():
            ramp_s = rail.voltage_v / rate
            if ramp_s > MAX_RAMP_TIME_S:
                problems.append(
                    LimitProblem(
                        "limits.ramp_rate_v_per_s",
                        f"{rate:g} V/s ramps rail {rail.name} to {rail.voltage_v:g} V in "
                        f"{ramp_s / 60:.0f} min; a ramp may take at most "
                        f"{MAX_RAMP_TIME_S / 60:.0f} min",
                    )
                )
                break

    low, high = limits.temperature_window_c
    chuck = LakeShore335.MODEL_NAME
    rated_low = LakeShore335.RATED_SETPOINT_K[0] + ABSOLUTE_ZERO_C
    rated_high = LakeShore335.RATED_SETPOINT_K[1] + ABSOLUTE_ZERO_C
    window_key = "limits.temperature_window_c"
    for name, value in (("low", low), ("high", high)):
        if not math.isfinite(value):
            problems.append(LimitProblem(window_key, f"{name} {value} °C is not finite"))
        elif value < ABSOLUTE_ZERO_C:
            problems.append(
                LimitProblem(
                    window_key,
                    f"{name} {value:g} °C is below absolute zero, {ABSOLUTE_ZERO_C:g} °C",
                )
            )
        elif not rated_low <= value <= rated_high:
            problems.append(
                LimitProblem(
                    window_key,
                    f"{name} {value:g} °C is outside the {chuck}'s setpoint rating "
                    f"{rated_low:g} … {rated_high:g} °C "
                    f"({LakeShore335.RATED_SETPOINT_K[0]:g} … "
                    f"{LakeShore335.RATED_SETPOINT_K[1]:g} K)",
                )
            )
        elif not CHUCK_RANGE_C[0] <= value <= CHUCK_RANGE_C[1]:
            problems.append(
                LimitProblem(
                    window_key,
                    f"{name} {value:g} °C is outside the chuck range "
                    f"{CHUCK_RANGE_C[0]:g} … {CHUCK_RANGE_C[1]:g} °C",
                )
            )

    smu = Keithley2450.MODEL_NAME
    volts, amps = limits.smu_max_voltage_v, limits.smu_max_current_a
    if volts > Keithley2450.RATED_VOLTAGE_V:
        problems.append(
            LimitProblem(
                "limits.smu_max_voltage_v",
                f"{volts:g} V exceeds the {smu}'s rating {Keithley2450.RATED_VOLTAGE_V:g} V",
            )
        )
    if amps > Keithley2450.RATED_CURRENT_A:
        problems.append(
            LimitProblem(
                "limits.smu_max_current_a",
                f"{amps:g} A exceeds the {smu}'s rating {Keithley2450.RATED_CURRENT_A:g} A",
            )
        )
    elif amps < Keithley2450.RATED_MIN_CURRENT_LIMIT_A:
        problems.append(
            LimitProblem(
                "limits.smu_max_current_a",
                f"{amps:g} A is below the {smu}'s smallest current limit "
                f"{Keithley2450.RATED_MIN_CURRENT_LIMIT_A:g} A",
            )
        )
    elif volts <= Keithley2450.RATED_VOLTAGE_V and amps > Keithley2450.rated_current_at(volts):
        envelope = ", ".join(f"{a:g} A up to {v:g} V" for v, a in Keithley2450.RATED_ENVELOPE)
        problems.append(
            LimitProblem(
                "limits.smu_max_current_a",
                f"{amps:g} A at smu_max_voltage_v = {volts:g} V exceeds the {smu}'s power "
                f"rating {Keithley2450.rated_current_at(volts):g} A at that voltage "
                f"(envelope: {envelope})",
            )
        )

    pulse_ua = round(Keithley2450.RATED_PULSE_CURRENT_A * 1e6, 6)
    if limits.max_programming_ua > pulse_ua:
        problems.append(
            LimitProblem(
                "limits.max_programming_ua",
                f"{limits.max_programming_ua:g} µA exceeds the SMU pulse range, {pulse_ua:g} µA "
                f"(the {smu}'s station-extension pulse rating)",
            )
        )
    return problems


def _setpoint(start: float, stop: float, k: int, n: int) -> float:
    """Setpoint ``k`` (1 … n) of an ``n``-step ramp; the last one is exactly ``stop``."""
    return stop if k >= n else start + (stop - start) * k / n


def _setpoints(start: float, stop: float, n: int) -> Iterator[float]:
    """The ``n`` setpoints of a ramp, one at a time."""
    for k in range(1, n + 1):
        yield _setpoint(start, stop, k, n)
