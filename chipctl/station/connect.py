"""A validated station and opening it: :class:`Station` → :class:`OpenStation` (connected drivers).

:meth:`Station.open` connects the board and every instrument; a resource ``"simulated"`` first
starts the simulated station (:mod:`drivers.sim.instruments.station_server`) in-process and
connects to it over TCP through pyvisa-py, exactly as it would to a remote instrument.
:class:`OpenStation` wires the board's pulse interlock to the station's
:class:`~chipctl.station.limits.Limits` and, on close, leaves everything in its safe state.
:func:`station_check` gives the readbacks ``chipctl station check`` prints.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from chipctl.station.config import MODELS, InstrumentConfig, RailConfig, SimulationConfig
from chipctl.station.limits import Limits
from drivers.board import Board
from drivers.errors import DriverError, LimitError
from drivers.instruments import Keithley2450, KeysightE36312A, LakeShore335, SCPIInstrument

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Station:
    """A validated station file (see the module docstring)."""

    path: str
    chip_id: str
    board_url: str
    instruments: Mapping[str, InstrumentConfig]
    rails: tuple[RailConfig, ...]
    limits: Limits
    simulation: SimulationConfig = field(default_factory=SimulationConfig)

    @property
    def simulated(self) -> bool:
        """Whether any instrument is served by the simulated station."""
        return any(config.simulated for config in self.instruments.values())

    def open(self, *, board_timeout_s: float = 5.0) -> OpenStation:
        """Connect the board and every instrument (starting the simulated station if needed).

        Returns an :class:`OpenStation` (a context manager whose exit puts everything in its
        safe state and closes it). On failure, whatever was opened is closed again.
        """
        return OpenStation.connect(self, board_timeout_s=board_timeout_s)


# -- the opened station ---------------------------------------------------------------------


class _LockedResource:
    """A VISA resource whose ``write`` and ``query`` hold ``lock`` (the rest is passed on)."""

    def __init__(self, resource: Any, lock: threading.RLock) -> None:
        self._resource = resource
        self._lock = lock

    def write(self, command: str) -> Any:
        with self._lock:
            return self._resource.write(command)

    def query(self, command: str) -> str:
        with self._lock:
            return str(self._resource.query(command))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resource, name)


class OpenStation:
    """Connected drivers of a station: ``board``, ``smu``, ``supply``, ``chuck``, ``limits``.

    Satisfies the protocols of ``procedures.power`` and ``procedures.device_iv``.
    """

    def __init__(
        self,
        station: Station,
        board: Board,
        smu: Keithley2450,
        supply: KeysightE36312A,
        chuck: LakeShore335,
        simulator: Any = None,
    ) -> None:
        self.station = station
        self.board = board
        self.smu = smu
        self.supply = supply
        self.chuck = chuck
        self.simulator = simulator
        self.limits = station.limits
        self.rails: tuple[RailConfig, ...] = station.rails
        self.sleep: Callable[[float], None] = time.sleep
        self.io_lock = threading.RLock()
        """The one station lock: every instrument write or query holds it for its exchange, so a
        front end may read the rails from another thread between a procedure's calls (a query
        is never split by another thread's command on the same session)."""
        for driver in (smu, supply, chuck):
            driver.resource = cast(Any, _LockedResource(driver.resource, self.io_lock))
        self._closed = False

    @classmethod
    def connect(cls, station: Station, *, board_timeout_s: float = 5.0) -> OpenStation:
        """Open every instrument and the board of ``station`` (starting the simulated
        instruments first if the station is simulated); on any failure, close what was opened."""
        simulator: Any = None
        opened: list[Any] = []
        try:
            resources: dict[str, str] = {}
            if station.simulated:
                from drivers.sim.instruments.station_server import SimulatedStation

                simulator = SimulatedStation(
                    seed=station.simulation.seed,
                    time_scale=station.simulation.time_scale,
                    devices=board_device_model(station.board_url),
                ).start()
                resources = simulator.resources
            drivers: dict[str, SCPIInstrument] = {}
            for role, config in station.instruments.items():
                resource = resources[role] if config.simulated else config.resource
                backend = "@py" if config.simulated else config.backend
                driver = MODELS[config.model](
                    resource, backend=backend, timeout_ms=config.timeout_ms, name=role
                )
                opened.append(driver)
                drivers[role] = driver
            board = Board(station.board_url, timeout_s=board_timeout_s)
            opened.append(board)
        except BaseException:
            for item in reversed(opened):
                try:
                    item.close()
                except DriverError as exc:
                    log.warning("closing %r failed: %s", item, exc)
            if simulator is not None:
                simulator.stop()
            raise
        smu, supply, chuck = drivers["smu"], drivers["supply"], drivers["chuck"]
        assert isinstance(smu, Keithley2450) and isinstance(supply, KeysightE36312A)
        assert isinstance(chuck, LakeShore335)
        opened_station = cls(station, board, smu, supply, chuck, simulator)
        board.pulse_guard = opened_station.guard_programming
        if simulator is not None and station.simulation.time_scale == 0:
            # The simulated instruments live on a virtual clock: waiting is advancing it.
            opened_station.sleep = simulator.clock.advance
        return opened_station

    def __enter__(self) -> OpenStation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def rails_ok(self) -> bool:
        """Every rail on, within its readback tolerance of its setting and within its limits."""
        try:
            for rail in self.rails:
                channel = self.supply.channel(rail.channel)
                if not channel.output_enabled:
                    return False
                volts, amps = channel.measured_voltage_v, channel.measured_current_a
                self.limits.check_rail(rail.channel, volts, amps)
                if abs(volts - rail.voltage_v) > rail.readback_tolerance_v:
                    return False
        except LimitError:
            return False
        return True

    def temperature_c(self) -> float:
        """Chuck temperature in °C."""
        return float(self.chuck.temperature_c)

    def guard_programming(self, core: int, amplitudes_ua: np.ndarray) -> None:
        """The board's pulse interlock: refuse chip programming outside the station limits.

        Before every PULSES frame: the largest amplitude of the batch against
        ``limits.max_programming_ua``, every rail on and in range, and the chuck inside its
        temperature window, all read now (never cached: the rails may have just been switched
        off). Raises ``SafetyLimitError``; the board then sends nothing.
        """
        peak = float(np.max(amplitudes_ua)) if np.size(amplitudes_ua) else 0.0
        self.limits.check_programming(peak, self.rails_ok(), self.temperature_c())

    def close(self) -> None:
        """Leave everything safe and closed, in this order: the board's write heads off, the
        rails ramped down in reverse order at the station's ramp limits, the instruments'
        own shutdown (SMU, supply, chuck), the board link, the simulator."""
        if self._closed:
            return
        self._closed = True
        from procedures.power import ramp_all_down

        try:
            self.board.safe_state()
        except DriverError as exc:
            log.warning("could not put the board in its safe state: %s", exc)
        ramp_all_down(self)
        for driver in (self.smu, self.supply, self.chuck):
            try:
                driver.shutdown()
            except DriverError as exc:
                log.warning("%s shutdown failed: %s", driver.name, exc)
            finally:
                driver.close()
        try:
            self.board.shutdown()
        finally:
            if self.simulator is not None:
                self.simulator.stop()


def station_check(station: OpenStation) -> list[tuple[str, str, str]]:
    """Rows (item, identity, readback) for ``chipctl station check``."""
    rows: list[tuple[str, str, str]] = []
    ident = station.board.identity
    rows.append(
        (
            "board",
            f"{ident.board_id} fw {ident.firmware_version} chip {ident.chip_id}",
            f"{station.board.link.url}; die {station.board.temperature_c():.2f} °C",
        )
    )
    if ident.chip_id != station.station.chip_id:
        rows.append(("board", "CHIP ID MISMATCH", f"station file says {station.station.chip_id}"))
    smu = station.smu
    rows.append(
        (
            "smu",
            smu.identity,
            f"source {smu.source_function}, output {'on' if smu.output_enabled else 'off'}, "
            f"limit {smu.current_limit_a:.3g} A",
        )
    )
    rows.append(("supply", station.supply.identity, ""))
    for rail in station.rails:
        channel = station.supply.channel(rail.channel)
        rows.append(
            (
                f"rail {rail.name}",
                f"output {rail.channel}, {rail.voltage_v:g} V nominal",
                f"{'on' if channel.output_enabled else 'off'}: {channel.measured_voltage_v:.4f} V,"
                f" {channel.measured_current_a:.4f} A (limit {rail.max_voltage_v:g} V, "
                f"{rail.max_current_a:g} A)",
            )
        )
    temperature = station.temperature_c()
    low, high = station.limits.temperature_window_c
    inside = "inside" if low <= temperature <= high else "OUTSIDE"
    rows.append(
        (
            "chuck",
            station.chuck.identity,
            f"{temperature:.2f} °C ({inside} [{low:g}, {high:g}] °C), setpoint "
            f"{station.chuck.setpoint_k - 273.15:.2f} °C, heater {station.chuck.heater_range}",
        )
    )
    return rows


def board_device_model(board_url: str) -> str:
    """The device model a ``mockchip://`` URL selects (``devices=NAME``; default "hermes"), so
    the simulated station's test device follows the same physics as the simulated chip; other
    URLs say nothing about it, and the default applies."""
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(board_url)
    if parts.scheme != "mockchip":
        return "hermes"
    return parse_qs(parts.query).get("devices", ["hermes"])[-1]
