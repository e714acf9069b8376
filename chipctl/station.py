"""The station: board, bench instruments and the safety limits, from one TOML file.

A station file names the board URL, the chip id, each instrument's VISA resource and back end,
the rails (in power-up order) and the **safety limits**::

    [station]
    chip_id = "SIM-HERMES-0001"
    board_url = "mockchip://?seed=1"

    [instruments.smu]                 # model: keithley2450
    model = "keithley2450"
    resource = "simulated"            # or "USB0::0x05E6::0x2450::04096331::INSTR"
    backend = "@py"                   # "@py", "path.yaml@sim" or "" (IVI)

    [instruments.supply]
    model = "keysight_e36312a"
    resource = "simulated"

    [instruments.chuck]
    model = "lakeshore335"
    resource = "simulated"

    [simulation]                      # only used when a resource is "simulated"
    seed = 0
    time_scale = 1.0                  # virtual s per wall-clock s

    [limits]
    ramp_rate_v_per_s = 2.0
    ramp_step_v = 0.05
    temperature_window_c = [15.0, 60.0]
    max_programming_ua = 700.0
    smu_max_voltage_v = 1.0
    smu_max_current_a = 1e-3

    [rails.vdd]                       # rails power up in file order, down in reverse
    channel = 1
    voltage_v = 0.8
    current_limit_a = 0.5
    max_voltage_v = 0.9
    max_current_a = 1.0
    readback_tolerance_v = 0.02

Every key is checked by :func:`load_station`; an error names the key and its line. A resource
``"simulated"`` makes :meth:`Station.open` start the simulated station
(:mod:`drivers.sim.instruments.station_server`) in-process and connect to it over TCP through
pyvisa-py, exactly as it would to a remote instrument; :func:`default_station` is fully
simulated.

Limits are enforced in ONE place, :class:`Limits`: rail settings, every intermediate ramp step,
the SMU's voltage/current, the chuck temperature window and programming pulses. A violation
raises :class:`SafetyLimitError` (a :class:`~drivers.errors.LimitError`) naming the limit; values
are never clipped.
"""

from __future__ import annotations

import logging
import math
import re
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from chipctl import DEFAULT_BOARD_URL
from drivers.board import Board
from drivers.errors import DriverError, LimitError
from drivers.instruments import Keithley2450, KeysightE36312A, LakeShore335, SCPIInstrument
from drivers.instruments.keysight_e36312a import CHANNEL_RATINGS

log = logging.getLogger(__name__)

SIMULATED = "simulated"
"""Resource value that stands for the simulated station's instrument."""

MODELS: dict[str, type[SCPIInstrument]] = {
    "keithley2450": Keithley2450,
    "keysight_e36312a": KeysightE36312A,
    "lakeshore335": LakeShore335,
}
"""Instrument model names accepted in a station file → driver class."""

ROLES: dict[str, str] = {
    "smu": "keithley2450",
    "supply": "keysight_e36312a",
    "chuck": "lakeshore335",
}
"""Instrument roles of a station → the model each role needs."""


# -- errors -----------------------------------------------------------------------------------


class StationFileError(ValueError):
    """A station file is not valid; the message names the file, the key and its line."""

    def __init__(self, path: str, message: str, *, key: str = "", line: int | None = None):
        where = f"{path}:{line}" if line else path
        what = f" [{key}]" if key else ""
        super().__init__(f"{where}:{what} {message}")
        self.path = path
        self.key = key
        self.line = line


class SafetyLimitError(LimitError):
    """A value was refused by a safety limit of the station; ``limit`` names the limit key."""

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(f"{message} (limit {limit})")
        self.limit = limit


# -- configuration --------------------------------------------------------------------------


@dataclass(frozen=True)
class InstrumentConfig:
    """One instrument: role (smu/supply/chuck), model, VISA resource and back end."""

    role: str
    model: str
    resource: str
    backend: str = "@py"
    timeout_ms: int = 5000

    @property
    def simulated(self) -> bool:
        """True if the instrument is the simulated one (resource ``"simulated"``)."""
        return self.resource == SIMULATED


@dataclass(frozen=True)
class RailConfig:
    """One chip rail on a supply output.

    Attributes:
        name: rail name (the TOML table name, e.g. ``vdd``).
        channel: supply output (1..3).
        voltage_v: operating voltage in V.
        current_limit_a: the supply's current limit for the rail in A.
        max_voltage_v: safety limit on the rail voltage in V.
        max_current_a: safety limit on the rail current in A.
        readback_tolerance_v: allowed |readback − setpoint| in V after a ramp.
    """

    name: str
    channel: int
    voltage_v: float
    current_limit_a: float
    max_voltage_v: float
    max_current_a: float
    readback_tolerance_v: float = 0.02


@dataclass(frozen=True)
class SimulationConfig:
    """Options of the simulated station: seed and virtual seconds per wall-clock second."""

    seed: int = 0
    time_scale: float = 1.0


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
                    seed=station.simulation.seed, time_scale=station.simulation.time_scale
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


# -- loading ----------------------------------------------------------------------------------

_TABLE = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]\s*(#.*)?$")


def _key_line(text: str, table: str, key: str | None) -> int | None:
    """Line (1-based) of ``key`` in ``[table]`` (or of the table header when key is None)."""
    current = ""
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=") if key else None
    for number, line in enumerate(text.splitlines(), start=1):
        header = _TABLE.match(line)
        if header and not line.lstrip().startswith("[["):
            current = header.group(1).replace(" ", "").replace('"', "")
            if key is None and current == table:
                return number
            continue
        if pattern is not None and current == table and pattern.match(line):
            return number
    return None


class _Reader:
    """Typed access to a table of the parsed file; errors name the key and its line."""

    def __init__(self, path: str, text: str, table: str, data: Any) -> None:
        self.path, self.text, self.table = path, text, table
        if not isinstance(data, dict):
            self.fail(None, f"[{table}] must be a table")
        self.data: dict[str, Any] = data
        self.used: set[str] = set()

    def fail(self, key: str | None, message: str) -> Any:
        full = f"{self.table}.{key}" if key else self.table
        line = _key_line(self.text, self.table, key) or _key_line(self.text, self.table, None)
        raise StationFileError(self.path, message, key=full, line=line)

    def get(self, key: str, kind: type, default: Any = ..., *, required: bool = True) -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is not ...:
                return default
            return self.fail(None, f"missing key {key!r}") if required else None
        value = self.data[key]
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.fail(key, f"must be a number, got {value!r}")
            if not math.isfinite(value):
                self.fail(key, f"must be finite, got {value!r}")
            return float(value)
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            self.fail(key, f"must be an integer, got {value!r}")
        if kind is str and not isinstance(value, str):
            self.fail(key, f"must be a string, got {value!r}")
        return value

    def positive(self, key: str, default: Any = ...) -> float:
        value = float(self.get(key, float, default))
        if value <= 0:
            self.fail(key, f"must be > 0, got {value:g}")
        return value

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            self.fail(unknown[0], f"unknown key {unknown[0]!r}; known: {sorted(self.used)}")


def parse_station(text: str, path: str = "<station>") -> Station:
    """Validate station-file text (see the module docstring); :class:`StationFileError`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise StationFileError(
            path, f"not valid TOML: {exc}", line=int(match.group(1)) if match else None
        ) from None
    top = _Reader(path, text, "", data)
    for section in ("station", "instruments", "limits", "rails"):
        if section not in data:
            raise StationFileError(path, f"missing table [{section}]", key=section)
    top.used |= {"station", "instruments", "limits", "rails", "simulation"}
    top.finish()

    head = _Reader(path, text, "station", data["station"])
    chip_id = head.get("chip_id", str)
    board_url = head.get("board_url", str)
    head.finish()

    instruments_data = data["instruments"]
    if not isinstance(instruments_data, dict):
        raise StationFileError(path, "[instruments] must be a table", key="instruments")
    for role in ROLES:
        if role not in instruments_data:
            line = _key_line(text, "instruments", None)
            raise StationFileError(
                path, f"missing instrument [instruments.{role}]", key="instruments", line=line
            )
    instruments: dict[str, InstrumentConfig] = {}
    for role, table in instruments_data.items():
        reader = _Reader(path, text, f"instruments.{role}", table)
        if role not in ROLES:
            reader.fail(None, f"unknown instrument role {role!r}; known: {sorted(ROLES)}")
        model = reader.get("model", str)
        if model != ROLES[role]:
            reader.fail("model", f"the {role} must be model {ROLES[role]!r}, got {model!r}")
        resource = reader.get("resource", str)
        backend = reader.get("backend", str, "@py")
        timeout_ms = reader.get("timeout_ms", int, 5000)
        if not 100 <= timeout_ms <= 600_000:
            reader.fail("timeout_ms", f"must be 100 … 600000 ms, got {timeout_ms}")
        reader.finish()
        instruments[role] = InstrumentConfig(role, model, resource, backend, timeout_ms)

    simulation = SimulationConfig()
    if "simulation" in data:
        reader = _Reader(path, text, "simulation", data["simulation"])
        seed = reader.get("seed", int, 0)
        time_scale = reader.get("time_scale", float, 1.0)
        if time_scale < 0:
            reader.fail("time_scale", f"must be >= 0, got {time_scale:g}")
        reader.finish()
        simulation = SimulationConfig(seed, time_scale)

    rails_data = data["rails"]
    if not isinstance(rails_data, dict) or not rails_data:
        raise StationFileError(path, "[rails] must hold at least one [rails.NAME] table")
    rails: list[RailConfig] = []
    for name, table in rails_data.items():
        reader = _Reader(path, text, f"rails.{name}", table)
        channel = reader.get("channel", int)
        if channel not in KeysightE36312A.CHANNEL_IDS:
            reader.fail("channel", f"must be a supply output 1, 2 or 3, got {channel}")
        if any(rail.channel == channel for rail in rails):
            reader.fail("channel", f"output {channel} is already used by another rail")
        rail = RailConfig(
            name=name,
            channel=channel,
            voltage_v=reader.positive("voltage_v"),
            current_limit_a=reader.positive("current_limit_a"),
            max_voltage_v=reader.positive("max_voltage_v"),
            max_current_a=reader.positive("max_current_a"),
            readback_tolerance_v=reader.positive("readback_tolerance_v", 0.02),
        )
        rated_v, rated_a = CHANNEL_RATINGS[channel]
        if rail.max_voltage_v > rated_v:
            reader.fail("max_voltage_v", f"exceeds output {channel}'s rating {rated_v:g} V")
        if rail.max_current_a > rated_a:
            reader.fail("max_current_a", f"exceeds output {channel}'s rating {rated_a:g} A")
        if rail.voltage_v > rail.max_voltage_v:
            reader.fail("voltage_v", f"{rail.voltage_v:g} V is above max_voltage_v")
        if rail.current_limit_a > rail.max_current_a:
            reader.fail("current_limit_a", f"{rail.current_limit_a:g} A is above max_current_a")
        reader.finish()
        rails.append(rail)

    reader = _Reader(path, text, "limits", data["limits"])
    window = reader.get("temperature_window_c", list)
    if (
        len(window) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in window)
        or not window[0] < window[1]
    ):
        reader.fail("temperature_window_c", f"must be [low, high] in °C, low < high, got {window}")
    limits = Limits(
        rails={rail.channel: rail for rail in rails},
        ramp_rate_v_per_s=reader.positive("ramp_rate_v_per_s"),
        ramp_step_v=reader.positive("ramp_step_v"),
        temperature_window_c=(float(window[0]), float(window[1])),
        max_programming_ua=reader.positive("max_programming_ua"),
        smu_max_voltage_v=reader.positive("smu_max_voltage_v"),
        smu_max_current_a=reader.positive("smu_max_current_a"),
    )
    if limits.max_programming_ua > 1050:
        reader.fail("max_programming_ua", "exceeds the SMU pulse range, 1050 µA")
    reader.finish()
    return Station(
        path=path,
        chip_id=chip_id,
        board_url=board_url,
        instruments=instruments,
        rails=tuple(rails),
        limits=limits,
        simulation=simulation,
    )


def load_station(path: str | Path) -> Station:
    """Read and validate a station file; :class:`StationFileError` names the key and line."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise StationFileError(str(file), f"cannot read: {exc.strerror or exc}") from None
    return parse_station(text, str(file))


DEFAULT_STATION_TOML = f"""\
# The default, fully simulated station: the mockchip board and the simulated SCPI instruments
# (started and stopped by chipctl). Rails: a 14-nm core rail, an I/O rail and a PCM programming
# rail (nominal values for a test chip of this class; UNCONFIRMED).
[station]
chip_id = "SIM-HERMES-0001"
board_url = "{DEFAULT_BOARD_URL}"

[instruments.smu]
model = "keithley2450"
resource = "simulated"

[instruments.supply]
model = "keysight_e36312a"
resource = "simulated"

[instruments.chuck]
model = "lakeshore335"
resource = "simulated"

[simulation]
seed = 0
time_scale = 1.0

[limits]
ramp_rate_v_per_s = 10.0
ramp_step_v = 0.1
temperature_window_c = [15.0, 60.0]
max_programming_ua = 700.0
smu_max_voltage_v = 1.0
smu_max_current_a = 1e-3

[rails.vdd]
channel = 1
voltage_v = 0.8
current_limit_a = 0.6
max_voltage_v = 0.9
max_current_a = 1.0
readback_tolerance_v = 0.02

[rails.vddio]
channel = 2
voltage_v = 1.8
current_limit_a = 0.1
max_voltage_v = 1.98
max_current_a = 0.2
readback_tolerance_v = 0.03

[rails.vpcm]
channel = 3
voltage_v = 3.0
current_limit_a = 0.05
max_voltage_v = 3.3
max_current_a = 0.1
readback_tolerance_v = 0.05
"""


def default_station(*, board_url: str | None = None, time_scale: float | None = None) -> Station:
    """The fully simulated station (mockchip board + simulated instruments, started by open)."""
    station = parse_station(DEFAULT_STATION_TOML, "<default station>")
    changes: dict[str, Any] = {}
    if board_url is not None:
        changes["board_url"] = board_url
    if time_scale is not None:
        changes["simulation"] = SimulationConfig(station.simulation.seed, float(time_scale))
    if changes:
        station = replace(station, **changes)
    return station
