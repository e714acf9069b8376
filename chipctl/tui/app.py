"""The chipctl TUI: the app owns the station, the runner and every worker.

Data flow ("attributes down, messages up"): views post messages when the operator asks for
something (connect, power, start, abort, open a run, select a core); the app starts a thread
worker for it (all board, instrument and HDF5 I/O runs in ``@work(thread=True)`` workers); the
worker posts one of the nested messages below with its result (``post_message`` is
thread-safe); the app's handler sets the views' reactive attributes. A running procedure's
records reach the Procedures view the same way: the runner's subscriber posts
:class:`ChipctlApp.RunRecord` for every record.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Literal

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Footer, Header, TabbedContent, TabPane

from chipctl import catalog
from chipctl.runfile import new_run_path
from chipctl.runner import RunSummary, run_procedure
from chipctl.station import OpenStation, Station, default_station
from chipctl.tui import data
from chipctl.tui.screens.chip_map import ChipMapView
from chipctl.tui.screens.core_detail import CoreDetailView
from chipctl.tui.screens.help import HelpScreen
from chipctl.tui.screens.procedures import ProceduresView
from chipctl.tui.screens.runs import RunsView
from chipctl.tui.screens.station import StationView
from chipctl.tui.widgets.chip_map import ChipMap
from procedures.base import Procedure, Record

TABS = ("station", "chip-map", "core-detail", "procedures", "runs")
"""Tab ids, in the order of the keys 1…5."""

POLL_INTERVAL_S = 1.0
FOLLOW_INTERVAL_S = 0.5


def run_file_path(data_dir: Path, procedure: str) -> Path:
    """A new run file ``<procedure>-YYYYmmdd-HHMMSS.mmm-xxxxxx.h5`` in ``data_dir``
    (:func:`chipctl.runfile.new_run_path`)."""
    return new_run_path(data_dir, procedure)


def build_procedure(
    name: str, values: dict[str, Any], opened: OpenStation | None = None
) -> Procedure:
    """Procedure ``name`` from the form's raw values, through the catalog (arrays loaded from
    their .npy paths, durations like ``1d`` parsed, the station given to those needing one)."""
    return catalog.build(name, values, station=opened)


def is_station_action(action: str) -> bool:
    """Whether a Station-view action names a catalogued procedure that runs on the station."""
    try:
        return catalog.entry(action).needs_station
    except catalog.CatalogError:
        return False


class ChipctlApp(App[None]):
    """Station, Chip map, Core detail, Procedures and Runs, one tab each.

    Args:
        station: the station to connect to (default: the fully simulated station).
        data_dir: where run files are written and read.
    """

    CSS_PATH = "chipctl.tcss"
    TITLE = "chipctl"
    BINDINGS = [
        Binding("1", "show_tab('station')", "Station", show=False),
        Binding("2", "show_tab('chip-map')", "Chip map", show=False),
        Binding("3", "show_tab('core-detail')", "Core", show=False),
        Binding("4", "show_tab('procedures')", "Procedures", show=False),
        Binding("5", "show_tab('runs')", "Runs", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("f1", "help", "Help", show=False),
    ]

    connected: reactive[bool] = reactive(False)
    running: reactive[str] = reactive("")
    """Name of the procedure being run ("" when idle); also set during connect/disconnect."""

    # -- messages from the workers -----------------------------------------------------------

    class StationOpened(Message):
        """The station is connected."""

        def __init__(self, opened: OpenStation) -> None:
            super().__init__()
            self.opened = opened

    class StationClosed(Message):
        """The station was disconnected (rails ramped down first if they were on)."""

    class StationProblem(Message):
        """Connecting, reading or disconnecting the station failed."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class ReadingsUpdated(Message):
        """A fresh snapshot of the station."""

        def __init__(self, readings: data.StationReadings) -> None:
            super().__init__()
            self.readings = readings

    class RunRecord(Message):
        """One record of the running procedure."""

        def __init__(self, record: Record) -> None:
            super().__init__()
            self.record = record

    class RunFinished(Message):
        """A run ended, or could not start (``summary`` None, ``error`` says why)."""

        def __init__(self, procedure: str, summary: RunSummary | None, error: str = "") -> None:
            super().__init__()
            self.procedure = procedure
            self.summary = summary
            self.error = error

    class MetricsLoaded(Message):
        """Per-core metrics read from the data directory."""

        def __init__(self, metrics: data.ChipMetrics) -> None:
            super().__init__()
            self.metrics = metrics

    class CoreDetailLoaded(Message):
        """The detail of one core, read from the data directory."""

        def __init__(self, detail: data.CoreDetail) -> None:
            super().__init__()
            self.detail = detail

    class RunsListed(Message):
        """The run files of the data directory."""

        def __init__(self, entries: list[data.RunEntry]) -> None:
            super().__init__()
            self.entries = entries

    class RunPreviewLoaded(Message):
        """An opened run file (read again while it is still being written)."""

        def __init__(self, preview: data.RunPreview | None, error: str = "") -> None:
            super().__init__()
            self.preview = preview
            self.error = error

    # -- life cycle ---------------------------------------------------------------------------

    def __init__(self, station: Station | None = None, data_dir: Path = Path("runs")) -> None:
        super().__init__()
        self.station = station or default_station()
        self.data_dir = Path(data_dir)
        self.opened: OpenStation | None = None
        self.last_summary: RunSummary | None = None
        self.abort_requested = threading.Event()
        self.instruments_lock = threading.Lock()
        """Held by a run (and by disconnect); the poll skips instruments while it is taken."""
        self._run_idle = threading.Event()
        self._run_idle.set()
        self._followed: Path | None = None
        self._detail_core = 0

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="▦")
        with TabbedContent(id="tabs", initial="station"):
            with TabPane("1 Station", id="station"):
                yield StationView(id="station-view")
            with TabPane("2 Chip map", id="chip-map"):
                yield ChipMapView(id="chip-map-view")
            with TabPane("3 Core detail", id="core-detail"):
                yield CoreDetailView(id="core-detail-view")
            with TabPane("4 Procedures", id="procedures"):
                yield ProceduresView(id="procedures-view")
            with TabPane("5 Runs", id="runs"):
                yield RunsView(id="runs-view")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"{self.station.chip_id} — data in {self.data_dir}"
        self.set_interval(POLL_INTERVAL_S, self._poll)
        self.set_interval(FOLLOW_INTERVAL_S, self._follow)
        self.reload_data()
        self._focus_tab("station")

    async def on_unmount(self) -> None:
        """Stop a running procedure, then ramp the rails down and close the station."""
        import asyncio

        self.abort_requested.set()
        await asyncio.to_thread(self._run_idle.wait, 60.0)
        opened, self.opened = self.opened, None
        if opened is not None:
            await asyncio.to_thread(self._close_station, opened)

    # -- actions ------------------------------------------------------------------------------

    def action_show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        self.call_after_refresh(self._focus_tab, tab)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id:
            self.call_after_refresh(self._focus_tab, event.pane.id)

    def _focus_tab(self, tab: str) -> None:
        """Focus the main widget of ``tab`` if it is still the active one."""
        if self.query_one(TabbedContent).active != tab:
            return
        target = {
            "station": "#station-view",
            "chip-map": "#chip-grid",
            "core-detail": "#core-detail-view",
            "procedures": "#procedure-list",
            "runs": "#runs-table",
        }[tab]
        widget = self.query_one(target)
        if widget.can_focus:
            widget.focus()

    # -- attributes down ---------------------------------------------------------------------

    def watch_connected(self, connected: bool) -> None:
        self.query_one(StationView).connected = connected
        self.query_one(ProceduresView).connected = connected

    def watch_running(self, running: str) -> None:
        self.query_one(StationView).busy = bool(running)
        self.query_one(ProceduresView).running = running
        self.refresh_bindings()

    def _state(self, text: str) -> None:
        self.query_one(StationView).state = text

    # -- station ------------------------------------------------------------------------------

    def on_station_view_action(self, event: StationView.Action) -> None:
        if self.running:
            self.notify(f"{self.running} is running", severity="warning")
            return
        if event.action == "connect" and not self.connected:
            self.running = "connect"
            self._state(f"connecting to {self.station.board_url} …")
            self._connect()
        elif event.action == "disconnect" and self.opened is not None:
            self.running = "disconnect"
            self._state("ramping rails down and disconnecting …")
            self._disconnect(self.opened)
        elif is_station_action(event.action) and self.opened is not None:
            self.start_run(event.action, {})

    @work(thread=True, exclusive=True, group="station", exit_on_error=False)
    def _connect(self) -> None:
        try:
            opened = self.station.open()
        except Exception as exc:
            self.post_message(self.StationProblem(f"connect failed: {type(exc).__name__}: {exc}"))
            return
        self.post_message(self.StationOpened(opened))

    @work(thread=True, exclusive=True, group="station", exit_on_error=False)
    def _disconnect(self, opened: OpenStation) -> None:
        try:
            self._close_station(opened)
        except Exception as exc:
            self.post_message(self.StationProblem(f"disconnect: {type(exc).__name__}: {exc}"))
        self.post_message(self.StationClosed())

    def _close_station(self, opened: OpenStation) -> None:
        """Ramp the rails down (a power_down run) if any is on, then close (blocking)."""
        with self.instruments_lock:
            rails_on = any(opened.supply.channel(r.channel).output_enabled for r in opened.rails)
            if rails_on:
                procedure = build_procedure("power_down", {}, opened)
                path = run_file_path(self.data_dir, "power_down")
                run_procedure(
                    procedure, opened.board, path, progress=False, context=catalog.RunContext()
                )
            opened.close()

    def on_chipctl_app_station_opened(self, message: StationOpened) -> None:
        self.opened = message.opened
        self.connected = True
        self.running = ""
        ident = message.opened.board.identity
        self._state(f"connected: {ident.board_id} on {message.opened.board.link.url}")
        self._poll()
        self._focus_tab(self.query_one(TabbedContent).active or "station")

    def on_chipctl_app_station_closed(self) -> None:
        self.opened = None
        self.connected = False
        self.running = ""
        self.query_one(StationView).readings = None
        self._state("not connected")
        self.reload_data()

    def on_chipctl_app_station_problem(self, message: StationProblem) -> None:
        if self.running in ("connect", "disconnect"):
            self.running = ""
        self._state(message.text)
        self.notify(message.text, title="Station", severity="error", timeout=8)

    def _poll(self) -> None:
        if self.opened is None or self.running in ("connect", "disconnect"):
            return
        self._read_station(self.opened)

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False)
    def _read_station(self, opened: OpenStation) -> None:
        instruments = self.instruments_lock.acquire(blocking=False)
        try:
            readings = data.read_station(opened, instruments=instruments)
        except Exception as exc:
            self.post_message(self.StationProblem(f"reading the station: {exc}"))
            return
        finally:
            if instruments:
                self.instruments_lock.release()
        self.post_message(self.ReadingsUpdated(readings))

    def on_chipctl_app_readings_updated(self, message: ReadingsUpdated) -> None:
        if self.opened is not None:
            self.query_one(StationView).readings = message.readings

    # -- procedures ---------------------------------------------------------------------------

    def on_procedures_view_start_requested(self, event: ProceduresView.StartRequested) -> None:
        self.start_run(event.procedure, event.values)

    def on_procedures_view_abort_requested(self) -> None:
        self.abort()

    def start_run(self, procedure: str, values: dict[str, Any]) -> None:
        """Run ``procedure`` with the form's raw ``values`` in a thread worker."""
        if self.opened is None or self.running:
            self.notify("connect first, and wait for the running procedure", severity="warning")
            return
        self.abort_requested.clear()
        self._run_idle.clear()
        self.running = procedure
        self.query_one(ProceduresView).log_line(f"starting {procedure} …")
        self._run(procedure, values, self.opened)

    def abort(self) -> None:
        """Ask the running procedure to stop at its next safe point."""
        if self.running and self.running not in ("connect", "disconnect"):
            self.abort_requested.set()
            self.query_one(ProceduresView).log_line("abort requested: stopping at a safe point")

    @work(thread=True, exclusive=True, group="run", exit_on_error=False)
    def _run(self, name: str, values: dict[str, Any], opened: OpenStation) -> None:
        try:
            try:
                procedure = build_procedure(name, values, opened)
            except Exception as exc:
                self.post_message(self.RunFinished(name, None, f"{type(exc).__name__}: {exc}"))
                return
            path = run_file_path(self.data_dir, name)
            with self.instruments_lock:
                summary = run_procedure(
                    procedure,
                    opened.board,
                    path,
                    progress=False,
                    should_stop=self.abort_requested.is_set,
                    subscribers=[self._forward_record],
                    context=catalog.RunContext(),
                )
            self.post_message(self.RunFinished(name, summary))
        finally:
            self._run_idle.set()

    def _forward_record(self, record: Record) -> None:
        """Runner subscriber (worker thread): the record goes to the UI as a message."""
        self.post_message(self.RunRecord(record))

    def on_chipctl_app_run_record(self, message: RunRecord) -> None:
        self.query_one(ProceduresView).add_record(message.record)

    def on_chipctl_app_run_finished(self, message: RunFinished) -> None:
        self.running = ""
        view = self.query_one(ProceduresView)
        if message.summary is None:
            view.log_line(f"{message.procedure} did not start: {message.error}")
            self.notify(message.error, title=f"{message.procedure} not started", severity="error")
            return
        summary = message.summary
        self.last_summary = summary
        for note in summary.notes:
            view.log_line(note)
        view.log_line(f"run file: {summary.path}")
        severity: Literal["information", "warning"] = (
            "information" if summary.status == "success" else "warning"
        )
        reason = f": {summary.reason}" if summary.reason else ""
        self.notify(f"{summary.status}{reason}", title=message.procedure, severity=severity)
        self._poll()
        self.reload_data()

    # -- data directory: metrics, core detail, runs -----------------------------------------

    def reload_data(self) -> None:
        """Read the metrics, the selected core's detail and the run list again (workers)."""
        self._load_metrics()
        self._load_core_detail(self._detail_core)
        self._list_runs()

    @work(thread=True, exclusive=True, group="metrics", exit_on_error=False)
    def _load_metrics(self) -> None:
        self.post_message(self.MetricsLoaded(data.load_chip_metrics(self.data_dir)))

    @work(thread=True, exclusive=True, group="detail", exit_on_error=False)
    def _load_core_detail(self, core: int) -> None:
        self.post_message(self.CoreDetailLoaded(data.load_core_detail(self.data_dir, core)))

    @work(thread=True, exclusive=True, group="runs", exit_on_error=False)
    def _list_runs(self) -> None:
        self.post_message(self.RunsListed(data.list_runs(self.data_dir)))

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False)
    def _read_run(self, path: Path) -> None:
        try:
            self.post_message(self.RunPreviewLoaded(data.read_run(path)))
        except Exception as exc:
            self.post_message(self.RunPreviewLoaded(None, f"{path.name}: {exc}"))

    def on_chipctl_app_metrics_loaded(self, message: MetricsLoaded) -> None:
        self.query_one(ChipMapView).metrics = message.metrics

    def on_chipctl_app_core_detail_loaded(self, message: CoreDetailLoaded) -> None:
        if message.detail.core == self._detail_core:
            self.query_one(CoreDetailView).detail = message.detail

    def on_chipctl_app_runs_listed(self, message: RunsListed) -> None:
        self.query_one(RunsView).entries = message.entries

    def on_chipctl_app_run_preview_loaded(self, message: RunPreviewLoaded) -> None:
        if message.preview is None:
            self.notify(message.error, title="Run file", severity="error")
            self._followed = None
            return
        self.query_one(RunsView).preview = message.preview
        if message.preview.status != "running":
            if self._followed == message.preview.path:
                self._list_runs()
            self._followed = None

    def on_chip_map_core_selected(self, message: ChipMap.CoreSelected) -> None:
        self._detail_core = message.core

    def on_chip_map_core_opened(self, message: ChipMap.CoreOpened) -> None:
        self.show_core(message.core)

    def on_core_detail_view_core_requested(self, message: CoreDetailView.CoreRequested) -> None:
        self.show_core(message.core)

    def show_core(self, core: int) -> None:
        """Switch to the Core detail tab and load ``core``."""
        self._detail_core = core
        self.query_one(ChipMap).selected = core
        self._load_core_detail(core)
        self.action_show_tab("core-detail")

    def on_runs_view_open_requested(self, message: RunsView.OpenRequested) -> None:
        self.open_run(message.path)

    def on_runs_view_refresh(self) -> None:
        self._list_runs()

    def open_run(self, path: Path) -> None:
        """Show run file ``path`` on the Runs tab; follow it while it is being written."""
        self._followed = path
        self._read_run(path)

    def _follow(self) -> None:
        if self._followed is not None:
            self._read_run(self._followed)
