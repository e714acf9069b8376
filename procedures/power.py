"""Power sequencing of the chip rails: ``power_up`` and ``power_down``.

The procedures drive the rail supply of a *station* given to the constructor
(``PowerUp(station=open_station)``); the board passed to ``run(board)`` is only used for the run
metadata and its safe state. What they need from the station is declared by
:class:`PowerStation` (chipctl's ``OpenStation`` satisfies it; procedures never import chipctl).

**Power up**, rail by rail in the station's order: check the target against the limits, set the
current limit, set 0 V, enable the output, ramp to the target in the steps the limits allow (the
whole ramp checked before anything is set, the setpoints generated one at a time, one step per
``limits.step_dwell_s``), read back voltage and current after every step (checked against the
rail limits) and, at the end, require |V_readback − V_target| ≤ the rail's readback tolerance.
An abort or any failure ramps every enabled rail back to 0 V (reverse order) and disables it:
the chip is left powered down.

**Power down**: the rails in reverse order, each ramped to 0 V and disabled, with readback
checks; cleanup after a failure does the same for anything still on.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, Protocol

import numpy as np

from drivers.board import Board
from drivers.errors import DriverError, LimitError
from procedures.base import Checkpoint, Data, Parameter, Procedure, Progress, StreamSpec

log = logging.getLogger(__name__)


# -- what the procedures need from a station ----------------------------------------------------


class RailSettings(Protocol):
    """One rail: its name, supply output, operating point and readback tolerance."""

    @property
    def name(self) -> str: ...
    @property
    def channel(self) -> int: ...
    @property
    def voltage_v(self) -> float: ...
    @property
    def current_limit_a(self) -> float: ...
    @property
    def readback_tolerance_v(self) -> float: ...


class RailLimits(Protocol):
    """The station's limit checks used for sequencing (chipctl.station.Limits)."""

    @property
    def ramp_step_v(self) -> float: ...
    @property
    def step_dwell_s(self) -> float: ...
    def check_rail(self, channel: int, volts: float, amps: float) -> None: ...
    def ramp_steps(self, channel: int, start_v: float, stop_v: float) -> Iterator[float]:
        """The ramp's setpoints, checked whole before the first, generated lazily."""
        ...


class SupplyOutput(Protocol):
    """One supply output (drivers.instruments.keysight_e36312a.SupplyChannel)."""

    voltage_setpoint_v: Any
    current_limit_a: Any
    output_enabled: Any
    measured_voltage_v: Any
    measured_current_a: Any


class RailSupply(Protocol):
    """A multi-output supply (drivers.instruments.KeysightE36312A)."""

    def channel(self, channel_id: int) -> Any: ...


class PowerStation(Protocol):
    """What power sequencing needs: the supply, the rails in order, the limits, a sleep."""

    @property
    def supply(self) -> RailSupply: ...
    @property
    def limits(self) -> RailLimits: ...
    @property
    def sleep(self) -> Callable[[float], None]: ...
    @property
    def rails(self) -> Sequence[RailSettings]: ...


class ReadbackError(DriverError):
    """A rail's readback does not follow its setting (wrong load, short, open, supply fault)."""


# -- helpers ------------------------------------------------------------------------------------


def descending_steps(level_v: float, step_v: float) -> Iterator[float]:
    """Setpoints from ``level_v`` (excluded) down to exactly 0 V in equal steps ≤ ``step_v``,
    generated one at a time (no list, whatever the step count)."""
    n = max(1, math.ceil(abs(level_v) / step_v - 1e-9))
    for k in range(1, n):
        yield level_v - level_v * k / n
    yield 0.0


def ramp_all_down(station: PowerStation) -> list[str]:
    """Ramp every enabled rail to 0 V (reverse order) and disable it; returns the rails done.

    Used for cleanup: going toward 0 V is the safe direction, so the steps are *not* refused by
    the limits (a rail found above its limit must still come down); the step size and rate are
    the limits'. Errors are logged and the next rail is still handled.
    """
    done: list[str] = []
    step_v = station.limits.ramp_step_v
    for rail in reversed(list(station.rails)):
        try:
            output: SupplyOutput = station.supply.channel(rail.channel)
            if not output.output_enabled:
                output.voltage_setpoint_v = 0.0
                continue
            level = float(output.voltage_setpoint_v)
            for volts in descending_steps(level, step_v):
                output.voltage_setpoint_v = volts
                station.sleep(station.limits.step_dwell_s)
            output.output_enabled = False
            done.append(rail.name)
        except DriverError as exc:
            log.error("could not ramp rail %s down: %s", rail.name, exc)
    return done


def _rail_streams() -> tuple[StreamSpec, ...]:
    return (
        StreamSpec("rail", (), "i2", "1", "supply output of the step"),
        StreamSpec("setpoint", (), "f8", "V", "voltage setpoint of the step"),
        StreamSpec("voltage", (), "f8", "V", "voltage readback after the step"),
        StreamSpec("current", (), "f8", "A", "current readback after the step"),
        StreamSpec("time", (), "f8", "s", "seconds since the start of the sequence"),
    )


class _PowerProcedure(Procedure):
    """Shared parts of PowerUp and PowerDown."""

    parameters: ClassVar[tuple[Parameter, ...]] = ()
    default_plot: ClassVar[tuple[str, str | None]] = ("voltage", "time")

    def __init__(self, *, station: PowerStation, **values: Any) -> None:
        super().__init__(**values)
        self.station = station
        self._completed = False
        self._t0 = time.monotonic()

    def streams(self) -> tuple[StreamSpec, ...]:
        return _rail_streams()

    def total(self) -> int:
        return len(self.station.rails)

    def rail_names(self) -> dict[str, str]:
        """Supply output (as text, a JSON key) → rail name: the ``rail`` stream stores only
        the outputs, so plots take the names from here (the Start record's metadata while the
        run goes on, ``results["rail_names"]`` in the run file)."""
        return {str(rail.channel): rail.name for rail in self.station.rails}

    def _record_rail_names(self) -> None:
        self.results["rail_names"] = self.rail_names()

    def metadata(self, board: Board) -> dict[str, Any]:
        meta = super().metadata(board)
        meta["rails"] = [rail.name for rail in self.station.rails]
        meta["rail_names"] = self.rail_names()
        return meta

    def _step(self, rail: RailSettings, volts: float) -> Iterator[Data]:
        """Set one ramp step, wait the dwell, read back and check; yields the step's rows."""
        output: SupplyOutput = self.station.supply.channel(rail.channel)
        output.voltage_setpoint_v = volts
        self.station.sleep(self.station.limits.step_dwell_s)
        measured_v = float(output.measured_voltage_v)
        measured_a = float(output.measured_current_a)
        if measured_v < -rail.readback_tolerance_v:
            # Reverse polarity or a fault: refuse rather than read it as 0 V.
            raise LimitError(
                f"rail {rail.name} reads {measured_v:.4f} V, below -{rail.readback_tolerance_v} V"
            )
        # Readback noise can put an idle rail a hair below zero; that is 0 for the limits.
        self.station.limits.check_rail(rail.channel, max(measured_v, 0.0), max(measured_a, 0.0))
        yield Data("rail", np.int16(rail.channel))
        yield Data("setpoint", np.float64(volts))
        yield Data("voltage", np.float64(measured_v))
        yield Data("current", np.float64(measured_a))
        yield Data("time", np.float64(time.monotonic() - self._t0))

    def _check_final(self, rail: RailSettings, target_v: float) -> None:
        output: SupplyOutput = self.station.supply.channel(rail.channel)
        measured_v = float(output.measured_voltage_v)
        if abs(measured_v - target_v) > rail.readback_tolerance_v:
            raise ReadbackError(
                f"rail {rail.name}: reads {measured_v:.4f} V, set {target_v:.4f} V "
                f"(tolerance {rail.readback_tolerance_v:g} V)"
            )

    def cleanup(self, board: Board) -> None:
        """Unless the sequence completed, leave the chip powered down; then the board's safe
        state."""
        try:
            if not self._completed:
                done = ramp_all_down(self.station)
                self.results["powered_down_by_cleanup"] = done
        finally:
            super().cleanup(board)


class PowerUp(_PowerProcedure):
    """Ramp the chip rails up in order, with readback checks (see the module docstring)."""

    name: ClassVar[str] = "power_up"
    title: ClassVar[str] = "Power up the chip rails"

    def execute(
        self, board: Board, *, resume_from: dict[str, Any] | None = None
    ) -> Iterator[Progress | Data | Checkpoint]:
        self._t0 = time.monotonic()
        self._record_rail_names()
        limits = self.station.limits
        rails = list(self.station.rails)
        sequence: list[str] = []
        self.results["sequence"] = sequence
        for index, rail in enumerate(rails):
            self.check_stop()
            limits.check_rail(rail.channel, rail.voltage_v, rail.current_limit_a)
            output: SupplyOutput = self.station.supply.channel(rail.channel)
            start_v = float(output.voltage_setpoint_v) if output.output_enabled else 0.0
            steps = limits.ramp_steps(rail.channel, start_v, rail.voltage_v)
            output.current_limit_a = rail.current_limit_a
            if not output.output_enabled:
                output.voltage_setpoint_v = 0.0
                output.output_enabled = True
            for volts in steps:
                self.check_stop()
                yield from self._step(rail, volts)
            self._check_final(rail, rail.voltage_v)
            sequence.append(rail.name)
            yield Progress(index + 1, len(rails), f"rail {rail.name} at {rail.voltage_v:g} V")
        self._completed = True


class PowerDown(_PowerProcedure):
    """Ramp the chip rails down in reverse order and disable them, with readback checks."""

    name: ClassVar[str] = "power_down"
    title: ClassVar[str] = "Power down the chip rails"

    def execute(
        self, board: Board, *, resume_from: dict[str, Any] | None = None
    ) -> Iterator[Progress | Data | Checkpoint]:
        self._t0 = time.monotonic()
        self._record_rail_names()
        rails = list(reversed(list(self.station.rails)))
        sequence: list[str] = []
        self.results["sequence"] = sequence
        for index, rail in enumerate(rails):
            self.check_stop()
            output: SupplyOutput = self.station.supply.channel(rail.channel)
            if output.output_enabled:
                level = float(output.voltage_setpoint_v)
                for volts in self.station.limits.ramp_steps(rail.channel, level, 0.0):
                    self.check_stop()
                    yield from self._step(rail, volts)
                output.output_enabled = False
            else:
                output.voltage_setpoint_v = 0.0
            self._check_final(rail, 0.0)
            sequence.append(rail.name)
            yield Progress(index + 1, len(rails), f"rail {rail.name} off")
        self._completed = True


__all__ = [
    "PowerDown",
    "PowerStation",
    "PowerUp",
    "RailLimits",
    "RailSettings",
    "ReadbackError",
    "descending_steps",
    "ramp_all_down",
]
