"""Station files: parsing and checking the TOML (:func:`load_station`), and the default station.

Every key is checked by :func:`parse_station`; unknown keys are errors, every limit is checked
against the declared rating of its instrument and its physical range
(:func:`chipctl.station.limits.limit_problems`), and a :class:`StationFileError` names the
file, the line, the key, the value and the rating. :func:`load_station` refuses a file that is
not UTF-8 text (binary, another encoding) with a :class:`StationFileError` too.
:data:`DEFAULT_STATION_TOML` is the built-in, fully simulated station that
:func:`default_station` returns. The keys are described in ``docs/station.md``.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

from chipctl import DEFAULT_BOARD_URL
from chipctl.errors import ChipctlError
from chipctl.station.config import ROLES, InstrumentConfig, RailConfig, SimulationConfig
from chipctl.station.connect import Station
from chipctl.station.limits import Limits, limit_problems
from drivers.instruments import KeysightE36312A


class StationFileError(ChipctlError, ValueError):
    """A station file is not valid; the message names the file, the key and its line."""

    def __init__(self, path: str, message: str, *, key: str = "", line: int | None = None) -> None:
        where = f"{path}:{line}" if line else path
        what = f" [{key}]" if key else ""
        super().__init__(f"{where}:{what} {message}")
        self.path = path
        self.key = key
        self.line = line


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
    reader.finish()
    for problem in limit_problems(limits):
        table, _, key = problem.key.rpartition(".")
        line = _key_line(text, table, key) or _key_line(text, table, None)
        raise StationFileError(path, problem.message, key=problem.key, line=line)
    return Station(
        path=path,
        chip_id=chip_id,
        board_url=board_url,
        instruments=instruments,
        rails=tuple(rails),
        limits=limits,
        simulation=simulation,
    )


MAX_STATION_FILE_BYTES = 1 << 20
"""Largest station file read (1 MiB; a real one is a few kB): more is refused unread."""


def decode_station_bytes(raw: bytes, path: str = "<station>") -> str:
    """The text of a station file's bytes; :class:`StationFileError` if they are not UTF-8 text.

    A NUL byte marks a binary file; bytes that do not decode as UTF-8 are reported with their
    line. A UTF-8 byte-order mark is dropped.
    """
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise StationFileError(
            path, "not a UTF-8 text file (a binary file: it contains NUL bytes)", line=line
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise StationFileError(
            path,
            f"not a UTF-8 text file (byte 0x{raw[exc.start]:02x} at offset {exc.start} is not "
            "UTF-8; save the file as UTF-8)",
            line=line,
        ) from None
    return text.removeprefix("\ufeff")


def load_station(path: str | Path) -> Station:
    """Read and validate a station file; :class:`StationFileError` names the key and line.

    The file must be UTF-8 text of at most :data:`MAX_STATION_FILE_BYTES`; anything else
    (binary, another encoding, too large, unreadable) is a :class:`StationFileError` naming it.
    """
    file = Path(path)
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_STATION_FILE_BYTES + 1)
    except OSError as exc:
        raise StationFileError(str(file), f"cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_STATION_FILE_BYTES:
        raise StationFileError(
            str(file), f"not a station file: larger than {MAX_STATION_FILE_BYTES} bytes"
        )
    return parse_station(decode_station_bytes(raw, str(file)), str(file))


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
