"""What the TUI shows, read from the station and from run files; no Textual in here.

Every function here does I/O (board, instruments or HDF5) and is called from a thread worker of
:class:`~chipctl.tui.app.ChipctlApp`; the results are plain frozen dataclasses that travel to the
widgets inside messages.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from chipctl import catalog, ledger
from chipctl.runfile import RunFile, RunFileError
from chipctl.station import OpenStation
from drivers.board import Board
from drivers.errors import LimitError

N_CORES = 64
GRID = 8
"""The chip's cores form an 8×8 grid; core id = row × 8 + column."""

YIELD_CODES = ("ok", "stuck-high", "weak", "unconverged", "no fit")
"""Names of the program-and-verify yield-map codes 0..4."""


# -- station ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RailReading:
    """One rail as read back from the supply."""

    name: str
    channel: int
    nominal_v: float
    enabled: bool | None
    voltage_v: float | None
    current_a: float | None


@dataclass(frozen=True)
class StationReadings:
    """A snapshot of the opened station for the Station screen.

    ``rails`` and ``chuck_c`` are None when the instruments were busy (a procedure holds them).
    """

    board_id: str
    firmware: str
    chip_id: str
    station_chip_id: str
    board_url: str
    link_open: bool
    link_stats: dict[str, int]
    board_errors: tuple[str, ...]
    write_heads: bool
    die_c: float | None
    rails: tuple[RailReading, ...] | None
    chuck_c: float | None
    window_c: tuple[float, float]


def read_station(opened: OpenStation, *, instruments: bool) -> StationReadings:
    """Read the board (always) and the supply and chuck (only when ``instruments``)."""
    board = opened.board
    ident = board.identity
    link_open = not board.link.closed
    errors: tuple[str, ...] = ()
    write_heads = False
    die_c: float | None = None
    if link_open:
        status = board.status()
        errors = tuple(status.errors)
        write_heads = bool(status.status_register & 0x2)
        die_c = board.temperature_c()
    rails: tuple[RailReading, ...] | None = None
    chuck_c: float | None = None
    if instruments:
        readings = []
        for rail in opened.rails:
            channel = opened.supply.channel(rail.channel)
            readings.append(
                RailReading(
                    rail.name,
                    rail.channel,
                    rail.voltage_v,
                    bool(channel.output_enabled),
                    float(channel.measured_voltage_v),
                    float(channel.measured_current_a),
                )
            )
        rails = tuple(readings)
        chuck_c = opened.temperature_c()
    return StationReadings(
        board_id=ident.board_id,
        firmware=ident.firmware_version,
        chip_id=ident.chip_id,
        station_chip_id=opened.station.chip_id,
        board_url=board.link.url,
        link_open=link_open,
        link_stats=dict(vars(board.link.stats)),
        board_errors=errors,
        write_heads=write_heads,
        die_c=die_c,
        rails=rails,
        chuck_c=chuck_c,
        window_c=opened.limits.temperature_window_c,
    )


def interlock_problem(opened: OpenStation) -> str:
    """Why the board's pulse interlock would refuse programming now, naming the rail or the
    chuck and its reading ("" when it would not): checked before a run that writes cores
    starts, so a refusal writes no run file. The same tests as
    :meth:`~chipctl.station.OpenStation.guard_programming`, reading by reading."""
    for rail in opened.rails:
        channel = opened.supply.channel(rail.channel)
        volts, amps = float(channel.measured_voltage_v), float(channel.measured_current_a)
        reading = f"reads {volts:.3f} V, {amps * 1e3:.1f} mA"
        if not channel.output_enabled:
            return f"rail {rail.name} is off ({reading}); power up first (F2, u)"
        try:
            opened.limits.check_rail(rail.channel, volts, amps)
        except LimitError as exc:
            return f"rail {rail.name} {reading}: {exc}"
        if abs(volts - rail.voltage_v) > rail.readback_tolerance_v:
            return (
                f"rail {rail.name} {reading}, not {rail.voltage_v:g} V "
                f"± {rail.readback_tolerance_v:g} V"
            )
    low, high = opened.limits.temperature_window_c
    chuck_c = opened.temperature_c()
    if not low <= chuck_c <= high:
        return f"chuck reads {chuck_c:.2f} °C, outside its window {low:g}…{high:g} °C"
    return ""


# -- run files --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunEntry:
    """One run file in the data directory."""

    path: Path
    procedure: str
    status: str
    start_time: str

    @property
    def name(self) -> str:
        """The run file's name."""
        return self.path.name


def run_paths(data_dir: Path) -> list[Path]:
    """The ``*.h5`` files in ``data_dir`` and its subfolders (the demo writes one folder per
    run), oldest first (by modification time, then name)."""
    if not data_dir.is_dir():
        return []
    return sorted(data_dir.rglob("*.h5"), key=lambda p: (p.stat().st_mtime, p.name))


def list_runs(data_dir: Path) -> list[RunEntry]:
    """Run files in ``data_dir``, newest first; unreadable ones with status "unreadable"."""
    entries = []
    for path in run_paths(data_dir):
        try:
            with RunFile.open(path, live=True) as run:
                entries.append(RunEntry(path, run.procedure, run.status, run.start_time))
        except RunFileError:
            entries.append(RunEntry(path, "?", "unreadable", ""))
    return entries[::-1]


@dataclass(frozen=True, eq=False)
class Series:
    """Curves to draw: x values, one y array per curve, labels and axis titles."""

    x: np.ndarray
    ys: tuple[np.ndarray, ...]
    labels: tuple[str, ...]
    x_label: str
    y_label: str
    log_x: bool = False
    points_only: bool = False
    """Whether the x values are ids such as core or rail numbers: then markers are drawn,
    never a line joining them."""


GDC_SUFFIX = "_gdc"
"""A stream ``X_gdc`` is ``X`` after global drift compensation; plots show both."""

ID_STREAMS = ("rail", "core")
"""Streams whose values name a thing: a scalar signal recorded row by row for several of them
is drawn as one curve per value, and as an axis they give markers, not lines."""


@dataclass(frozen=True, eq=False)
class RunPreview:
    """A run file's metadata and its default plot, as the Runs screen shows them."""

    path: Path
    procedure: str
    status: str
    reason: str
    start_time: str
    end_time: str
    chip_id: str
    parameters: dict[str, str]
    streams: tuple[tuple[str, int, str], ...]
    plot: Series | None
    signal: str = ""
    """The stream plotted (the run's default signal unless the operator chose another)."""
    plottable: tuple[str, ...] = ()
    """The streams the operator may choose to plot instead."""


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array {value.shape}"
    if isinstance(value, list) and len(value) > 8:
        return f"list of {len(value)}"
    return str(value)


def default_series(run: RunFile) -> Series | None:
    """The run's default plot (``/entry/data`` signal against its axis) as curves."""
    signal, axis = run.default_plot
    return run_series(run, signal, axis)


def run_series(run: RunFile, signal: str, axis: str | None) -> Series | None:
    """Stream ``signal`` of a run against stream ``axis`` (or the row number) as curves.

    Scalar rows give one curve, or one per rail or core when the run records them row by row
    (a ``rail`` or ``core`` stream of the same length: power-up ramps each rail in turn);
    vector rows (one value per core) give one curve per column (at most 8); larger rows are
    reduced to their mean. A time axis in s is drawn as log10; an id axis (core, rail) as
    markers.
    """
    if not signal or signal not in run.streams:
        return None
    values = np.asarray(run.stream(signal), np.float64)
    if values.shape[0] == 0:
        return Series(np.zeros(0), (np.zeros(0),), (signal,), axis or "row", signal)
    if values.ndim == 1:
        ys: list[np.ndarray] = [values]
        labels = [signal]
    elif values.ndim == 2 and values.shape[1] <= 8:
        ys = [values[:, k] for k in range(values.shape[1])]
        labels = [f"{signal}[{k}]" for k in range(values.shape[1])]
    else:
        ys = [values.reshape(values.shape[0], -1).mean(axis=1)]
        labels = [f"mean {signal}"]
    x_label = axis or "row"
    x = np.arange(values.shape[0], dtype=np.float64)
    log_x = False
    if axis and axis in run.streams:
        axis_values = np.asarray(run.stream(axis), np.float64).reshape(-1)
        n = min(len(axis_values), values.shape[0])
        x = axis_values[:n]
        ys = [y[:n] for y in ys]
        units = run.units(axis)
        x_label = f"{axis} ({units})" if units not in ("", "1") else axis
        if units == "s" and n and np.all(x > 0):
            x, log_x = np.log10(x), True
            x_label = f"log10 {x_label}"
    if len(ys) == 1:
        x, ys, labels = _split_by_id(run, signal, axis, x, ys[0], labels)
    uncompensated = signal.removesuffix(GDC_SUFFIX)
    if uncompensated != signal and uncompensated in run.streams and len(ys) == 1:
        # Drift is shown without and with compensation: the GDC error alone (~0.1 %) hides
        # the ~25 % it corrects.
        before = np.asarray(run.stream(uncompensated), np.float64)
        if before.shape[0] >= len(ys[0]):
            before = before.reshape(before.shape[0], -1).mean(axis=1)[: len(ys[0])]
            ys, labels = [before, ys[0]], ["uncompensated", "with GDC"]
    units = run.units(signal)
    y_label = f"{signal} ({units})" if units not in ("", "1") else signal
    points_only = axis in ID_STREAMS
    return Series(x, tuple(ys), tuple(labels), x_label, y_label, log_x, points_only)


def declared_split(procedure: str) -> tuple[str, tuple[str, ...]] | None:
    """The procedure's ``plot_series``: the stream whose values tell its curves apart, and
    their names (infer: one line per compensation)."""
    try:
        return catalog.procedure_class(procedure).plot_series
    except catalog.CatalogError:
        return None


def _split_by_id(
    run: RunFile, signal: str, axis: str | None, x: np.ndarray, y: np.ndarray, labels: list[str]
) -> tuple[np.ndarray, list[np.ndarray], list[str]]:
    """One curve per value of the procedure's ``plot_series`` stream, or per rail or core (NaN
    elsewhere, so no line joins two of them), when the run records it row by row."""
    declared = declared_split(run.procedure)
    candidates = [declared] if declared else []
    candidates += [(name, ()) for name in ID_STREAMS]
    for name, names in candidates:
        if name in (axis, signal) or name not in run.streams:
            continue
        ids = np.asarray(run.stream(name), np.float64)
        if ids.ndim != 1 or ids.shape[0] < y.shape[0]:
            continue
        ids = ids[: y.shape[0]]
        values = np.unique(ids[np.isfinite(ids)])
        if not 1 < values.size <= 8:
            continue
        curves = [np.where(ids == value, y, np.nan) for value in values]
        named = rail_names(run.results) if name == "rail" else {}
        return x, curves, [_curve_name(signal, name, names, value, named) for value in values]
    return x, [y], labels


def rail_names(results: Mapping[str, Any]) -> dict[int, str]:
    """Supply output → rail name as a power run records it (``results["rail_names"]``); {}
    for run files written before it did (or still running): their curves say ``rail N``."""
    recorded = results.get("rail_names")
    if not isinstance(recorded, Mapping):
        return {}
    names = {}
    for channel, name in recorded.items():
        try:
            names[int(channel)] = str(name)
        except ValueError:
            continue
    return names


def _curve_name(
    signal: str, name: str, names: tuple[str, ...], value: float, named: Mapping[int, str]
) -> str:
    if names and 0 <= int(value) < len(names):
        return names[int(value)]
    if int(value) in named:
        return f"{signal} {named[int(value)]}"
    return f"{signal} {name} {value:g}"


def plottable_streams(run: RunFile) -> tuple[str, ...]:
    """The streams of a run that can be plotted (numbers with at least one row)."""
    out = []
    for info in run.stream_info():
        if info.rows and np.dtype(info.dtype).kind in "biuf":
            out.append(info.name)
    return tuple(out)


def read_run(path: Path, signal: str = "") -> RunPreview:
    """Metadata, parameters, streams and the plot of the run file ``path``: stream ``signal``
    against the default plot's axis ("" or a stream the run lacks: the default plot)."""
    with RunFile.open(path, live=True) as run:
        meta = run.metadata
        parameters = {name: _describe(v) for name, v in run.parameters.items()}
        streams = tuple((s.name, s.rows, s.units) for s in run.stream_info())
        default_signal, axis = run.default_plot
        chosen = signal if signal in run.streams and signal != axis else default_signal
        return RunPreview(
            path=path,
            procedure=str(meta.get("procedure", "")),
            status=run.status,
            reason=run.reason,
            start_time=run.start_time,
            end_time=run.end_time,
            chip_id=str(meta.get("chip_id", "")),
            parameters=parameters,
            streams=streams,
            plot=run_series(run, chosen, axis),
            signal=chosen,
            plottable=tuple(s for s in plottable_streams(run) if s != axis),
        )


# -- chip map metrics ------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSource:
    """Where a figure comes from: the run file, its status, when it was written, and why it no
    longer describes the core (``stale``: the ledger says the core was rewritten since)."""

    name: str
    status: str
    written: float
    """Modification time of the run file (s since the epoch)."""
    stale: str = ""

    def text(self, now: float) -> str:
        """``program-….h5, success, 3 min ago`` (an aborted or stale run said in capitals)."""
        status = self.status if self.status == "success" else self.status.upper()
        out = f"{self.name}, {status}, {age_text(now - self.written)}"
        return f"{out}; STALE: {self.stale}" if self.stale else out


def age_text(seconds: float) -> str:
    """``12 s ago``, ``5 min ago``, ``3 h ago``, ``2 d ago`` (``in the future`` if negative)."""
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def ledger_state(chip_id: str) -> dict[int, dict[str, Any]]:
    """The chip ledger's last entry per core ({} when the chip has none or it is unreadable)."""
    try:
        return ledger.Ledger.of(chip_id).state()
    except (ledger.LedgerError, OSError):
        return {}


def staleness(entry: dict[str, Any] | None, path: Path, written: float) -> str:
    """Why a run's figures of a core no longer hold: its ledger ``entry`` says another run
    wrote the core after ``path`` was written ("" if not)."""
    if entry is None or Path(str(entry.get("run_file", ""))).name == path.name:
        return ""
    try:
        when = datetime.fromisoformat(str(entry.get("wall_time"))).timestamp()
    except ValueError:
        return ""
    if when < written - 1.0:  # wall_time has whole seconds
        return ""
    by = Path(str(entry.get("run_file", "?"))).name
    return (
        f"core rewritten since by {by} ({entry.get('procedure', '?')}, {ledger.state_text(entry)})"
    )


MATCHES = "matches"
DOES_NOT_MATCH = "does not match"
CANNOT_TELL = "cannot tell"
NOT_CHECKED = "not checked"
"""The verdicts of checking a core's ledger entry against the chip (its fingerprint)."""


def check_ledger_on_chip(board: Board, store_dir: Path | None = None) -> dict[int, str]:
    """Per core of the chip ledger of ``board``'s chip whether the chip still shows what the
    ledger recorded: :data:`MATCHES`, :data:`DOES_NOT_MATCH` or :data:`CANNOT_TELL` (no
    fingerprint: a run that never ended). A few verify reads per core
    (:func:`chipctl.ledger.fingerprint_matches`); the caller holds the board.

    Every simulated chip of a seed has the same chip id, so a fresh ``mockchip://`` chip finds
    the ledger of earlier ones: only this check tells their history from its content.
    """
    state = ledger.Ledger.of(board.identity.chip_id, store_dir).state()
    verdicts: dict[int, str] = {}
    for core, entry in state.items():
        if not 0 <= core < board.identity.n_cores:
            continue
        found = ledger.fingerprint_matches(board, core, entry.get("fingerprint") or {})
        verdicts[core] = {True: MATCHES, False: DOES_NOT_MATCH, None: CANNOT_TELL}[found]
    return verdicts


def chip_state_text(ledger_text: str | None, verdict: str | None) -> str:
    """What a core holds, as the ledger says (``ledger_text``) and as checked on the chip
    (``verdict``; None: not checked, e.g. while disconnected). "" when the ledger has nothing."""
    if not ledger_text:
        return ""
    if verdict is None or verdict == NOT_CHECKED:
        return f"{ledger_text}, per ledger, not checked on the chip"
    if verdict == DOES_NOT_MATCH:
        return f"ledger says {ledger_text}, chip does not match"
    if verdict == CANNOT_TELL:
        return f"{ledger_text}, per ledger; the chip check cannot tell"
    return f"{ledger_text}, per ledger; the chip matches"


def checked_metrics(metrics: ChipMetrics, verdicts: Mapping[int, str] | None) -> ChipMetrics:
    """``metrics`` with the chip check applied: a core whose ledger entry the chip does not
    match is not programmed; every ledger-derived state says whether it was checked
    (``verdicts`` None: not checked, e.g. while disconnected)."""
    if not metrics.ledger_cores:
        return metrics
    programmed = metrics.values["programmed"].copy()
    texts: dict[int, str] = {}
    mismatched = 0
    for core, text in metrics.ledger_cores.items():
        verdict = None if verdicts is None else verdicts.get(core, NOT_CHECKED)
        if verdict == DOES_NOT_MATCH:
            programmed[core] = 0.0
            mismatched += 1
        texts[core] = chip_state_text(text, verdict)
    return replace(
        metrics,
        values={**metrics.values, "programmed": programmed},
        ledger_cores=texts,
        ledger_checked=verdicts is not None,
        ledger_mismatched=mismatched,
    )


@dataclass(frozen=True)
class Metric:
    """A per-core quantity the chip map can colour by."""

    key: str
    title: str
    units: str
    low_is_good: bool
    categorical: bool = False


METRICS: tuple[Metric, ...] = (
    Metric("programmed", "Programmed", "", low_is_good=False, categorical=True),
    Metric("weight_error", "Weight error (rms / full scale)", "1", low_is_good=True),
    Metric("mvm_error", "MVM error ε_total", "1", low_is_good=True),
    Metric("calibration_residual", "Calibration residual (rms)", "counts", low_is_good=True),
    Metric("drift_compensation", "Drift compensation factor α̂", "1", low_is_good=False),
    Metric("yield", "Yield (cells ok)", "1", low_is_good=False),
)
"""The chip map's metrics, in the order the metric selector lists them."""

METRIC_BY_KEY = {metric.key: metric for metric in METRICS}

SCALES: dict[str, tuple[float, float]] = {
    # rms weight error / full scale: programming reaches σ ≈ 4 % of Gmax (chip.md [JO Fig 4a])
    "weight_error": (0.0, 0.1),
    "mvm_error": (0.0, 0.25),
    # calibration residual in counts: the verify tolerance is 5 counts (chip.md [LG §IV])
    "calibration_residual": (0.0, 5.0),
    # α̂ ≤ 1 as conductances drift down; 0.5 is half the programmed scale lost
    "drift_compensation": (0.5, 1.0),
    # > 99 % of cells pass on 63 of 64 cores (chip.md [LG §IV])
    "yield": (0.95, 1.0),
}
"""The chip map's colour scales: absolute (the same value is the same colour on every chip and
every day), from good to bad end as each metric's ``low_is_good`` says. The app takes others
(``ChipctlApp(scales=...)``); values outside a scale get its end colours and are flagged."""


@dataclass(frozen=True, eq=False)
class ChipMetrics:
    """Per-core values of every metric (NaN = unknown) and the run file each came from."""

    values: dict[str, np.ndarray]
    sources: dict[str, str] = field(default_factory=dict)
    cells: dict[str, dict[int, RunSource]] = field(default_factory=dict)
    """Per metric and core the run its value comes from (status, age)."""
    invalidated: dict[str, int] = field(default_factory=dict)
    """Per metric how many cores' values were dropped: the chip ledger says another run
    rewrote the core after the run they came from."""
    ledger_cores: dict[int, str] = field(default_factory=dict)
    """Per core what the chip ledger says it holds now (``programmed``, ``partially
    programmed (run aborted)``...), for the chip of the run files; empty without a ledger."""
    ledger_checked: bool = False
    """Whether "programmed" was checked against the chip (:func:`checked_metrics`)."""
    ledger_mismatched: int = 0
    """Cores the ledger says hold something the chip does not show (shown not programmed)."""

    @classmethod
    def empty(cls) -> ChipMetrics:
        """Metrics with every core unknown (NaN)."""
        values = {m.key: np.full(N_CORES, np.nan) for m in METRICS}
        return cls(values)

    def value(self, metric: str, core: int) -> float:
        """The value of ``metric`` on ``core`` (NaN if unknown)."""
        return float(self.values[metric][core])


def metrics_from_run(run: RunFile) -> dict[str, dict[int, float]]:
    """Metric → {core: value} that one run file contributes (its catalog entry's core view)."""
    try:
        reader = catalog.entry(run.procedure).core_view.metrics
    except catalog.CatalogError:
        return {}
    return reader(run) if reader is not None else {}


def load_chip_metrics(data_dir: Path, chip_id: str = "") -> ChipMetrics:
    """Per-core metrics from the run files of ``data_dir``; a later run overrides an earlier one.

    With a chip ledger for the runs' chip, "programmed" is what the ledger says (yes for a
    finished programming, no for a partial one, unknown for a core it never saw), and a value
    from a run older than the core's last ledger entry by another run is dropped (counted in
    ``invalidated``). Without one, cores never seen in a program run count as not programmed.
    ``chip_id``: the chip whose ledger says what is programmed (default: the runs' chip).
    """
    metrics = ChipMetrics.empty()
    paths = run_paths(data_dir)
    if paths:
        metrics.values["programmed"][:] = 0.0
    ledgers: dict[str, dict[int, dict[str, Any]]] = {}
    chip_ids: list[str] = []
    for path in paths:
        try:
            with RunFile.open(path, live=True) as run:
                contributions = metrics_from_run(run)
                status, chip_id = run.status, str(run.metadata.get("chip_id", ""))
        except (RunFileError, KeyError, ValueError):
            continue
        if chip_id not in ledgers:
            ledgers[chip_id] = ledger_state(chip_id) if chip_id else {}
            chip_ids.append(chip_id)
        written = path.stat().st_mtime
        for key, per_core in contributions.items():
            for core, value in per_core.items():
                if not (0 <= core < N_CORES and math.isfinite(value)):
                    continue
                stale = staleness(ledgers[chip_id].get(core), path, written)
                cell = metrics.cells.setdefault(key, {})
                if stale:
                    metrics.values[key][core] = math.nan
                    metrics.invalidated[key] = metrics.invalidated.get(key, 0) + 1
                    cell.pop(core, None)
                    continue
                metrics.values[key][core] = value
                metrics.sources[key] = path.name
                cell[core] = RunSource(path.name, status, written)
    chip = chip_id or (chip_ids[-1] if chip_ids else "")
    state = (ledgers[chip] if chip in ledgers else ledger_state(chip)) if chip else {}
    if state:
        programmed = metrics.values["programmed"]
        programmed[:] = math.nan
        for core, entry in state.items():
            if 0 <= core < N_CORES:
                text = ledger.state_text(entry)
                programmed[core] = 1.0 if text == "programmed" else 0.0
                metrics.ledger_cores[core] = text
        metrics.sources["programmed"] = f"the chip ledger of {chip}"
        metrics.cells.pop("programmed", None)
    return metrics


# -- core detail ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CoreDetail:
    """Everything the Core detail screen shows about one core (None: no run has it)."""

    core: int
    sources: dict[str, RunSource] = field(default_factory=dict)
    """Per section (program, calibration, drift) the run it comes from."""
    program_run: str = ""
    conductance: np.ndarray | None = None
    cell_error: np.ndarray | None = None
    yield_map: np.ndarray | None = None
    g_max: float | None = None
    calibration_run: str = ""
    calibration_set: str = ""
    coefficients: dict[str, np.ndarray] = field(default_factory=dict)
    drift_run: str = ""
    drift: Series | None = None


def load_core_detail(data_dir: Path, core: int) -> CoreDetail:
    """The latest data of ``core`` for every core-detail section (program, calibration,
    drift) from ``data_dir``: each catalog entry's core view says which section its runs fill."""
    views = {item.name: item.core_view for item in catalog.entries() if item.core_view.detail}
    sections = {view.detail_section for view in views.values()}
    sources: dict[str, RunSource] = {}
    found: dict[str, Any] = {"core": core, "sources": sources}
    ledgers: dict[str, dict[int, dict[str, Any]]] = {}
    filled: set[str] = set()
    for path in reversed(run_paths(data_dir)):
        try:
            with RunFile.open(path, live=True) as run:
                view = views.get(run.procedure)
                if view is None or view.detail is None or view.detail_section in filled:
                    continue
                fields = view.detail(run, core)
                status, chip_id = run.status, str(run.metadata.get("chip_id", ""))
        except (RunFileError, KeyError, ValueError, IndexError):
            continue
        if fields is None:
            continue
        filled.add(view.detail_section)
        found[f"{view.detail_section}_run"] = path.name
        if chip_id not in ledgers:
            ledgers[chip_id] = ledger_state(chip_id) if chip_id else {}
        written = path.stat().st_mtime
        stale = staleness(ledgers[chip_id].get(core), path, written)
        sources[view.detail_section] = RunSource(path.name, status, written, stale)
        found.update(_detail_fields(fields))
        if filled >= sections:
            break
    return CoreDetail(**found)


def _detail_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """A core view's fields as :class:`CoreDetail` takes them (a drift curve as a Series)."""
    fields = dict(fields)
    if "drift_time_s" in fields:
        time_s = np.asarray(fields.pop("drift_time_s"), np.float64)
        curves: dict[str, np.ndarray] = fields.pop("drift_curves")
        fields["drift"] = Series(
            np.log10(np.maximum(time_s, 1e-9)),
            tuple(curves.values()),
            tuple(curves.keys()),
            "log10 time (s)",
            "|scale − 1|",
            log_x=True,
        )
    return fields


def histogram_counts(values: Iterable[float] | np.ndarray, bins: int = 30) -> tuple[list, list]:
    """Bin centres and counts of ``values`` (finite values only)."""
    array = np.asarray(values, np.float64).reshape(-1)
    array = array[np.isfinite(array)]
    if array.size == 0:
        return [], []
    counts, edges = np.histogram(array, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    return centres.tolist(), counts.tolist()
