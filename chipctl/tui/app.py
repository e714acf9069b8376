"""The chipctl TUI: the app owns the station, the runner and every worker.

Data flow ("attributes down, messages up"): views post messages when the operator asks for
something (connect, power, start, abort, open a run, select a core); the app starts a thread
worker for it (all board, instrument and HDF5 I/O runs in ``@work(thread=True)`` workers); the
worker posts one of the nested messages below with its result (``post_message`` is
thread-safe); the app's handler sets the views' reactive attributes. A running procedure's
records reach the Procedures view the same way: the runner's subscriber posts
:class:`ChipctlApp.RunRecord` for every record.

Two checks run in the run worker before anything reaches the board: the pulse interlock
(:func:`chipctl.tui.data.interlock_problem`: a refusal names the rail and its reading and
writes no run file) and the chip ledger (:func:`chipctl.ledger.held_cores`): a run that would
overwrite cores holding a recorded programming posts :class:`ChipctlApp.OverwriteAsked`, and
only the operator's yes (:class:`~chipctl.tui.screens.confirm.ConfirmOverwrite`) starts it.
The station poll reads the rails also during runs, between the procedure's instrument
queries (``OpenStation.io_lock``), for the status bar.

The chip ledger is checked against the chip (:func:`chipctl.tui.data.check_ledger_on_chip`, a
few verify reads per core, in a worker holding ``instruments_lock`` as runs do) on connect and
after every run of a procedure that may overwrite cores. The per-core verdicts
(``chip_verdicts``, None while not checked) go down to the chip map and core detail: a core
whose ledger entry the chip does not match is not shown programmed.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, cast, overload

from textual import events, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Footer, Header, TabbedContent, TabPane

from chipctl import catalog, ledger
from chipctl.runfile import new_run_path
from chipctl.runner import RunSummary, run_procedure
from chipctl.station import OpenStation, Station, default_station
from chipctl.tui import data
from chipctl.tui.screens.chip_map import ChipMapView
from chipctl.tui.screens.confirm import ConfirmOverwrite
from chipctl.tui.screens.core_detail import CoreDetailView
from chipctl.tui.screens.help import HelpScreen
from chipctl.tui.screens.procedures import ProceduresView
from chipctl.tui.screens.runs import RunsView
from chipctl.tui.screens.station import StationView
from chipctl.tui.widgets.chip_map import ChipMap
from chipctl.tui.widgets.status_bar import RunState, StatusBar
from procedures.base import Procedure, Progress, Record, Start

log = logging.getLogger(__name__)

TABS = ("station", "chip-map", "core-detail", "procedures", "runs")
"""Tab ids, in the order of the keys F2…F6 (and Alt+1…5)."""

SCREEN_KEYS = "F2…F6 or Alt+1…5"
"""How to switch screens: never a printable key, which would type into a focused field."""

WidgetT = TypeVar("WidgetT", bound=Widget)

NARROW_COLUMNS = 120
"""Below this width the screens use their narrow layouts (chipctl.tcss)."""
TINY_COLUMNS = 90
"""Below this width the screens use their tiny layouts (80×24 terminals)."""

POLL_INTERVAL_S = 1.0
FOLLOW_INTERVAL_S = 0.5


HandlerT = TypeVar("HandlerT", bound=Callable[..., None])


def _while_shown(handler: HandlerT) -> HandlerT:
    """A worker message's handler that does nothing once the views are gone (a message that
    arrives while the app shuts down)."""

    @functools.wraps(handler)
    def guarded(app: ChipctlApp, *args: Any) -> None:
        stack = app.screen_stack
        if not (stack and stack[0].query(TabbedContent)):
            return
        try:
            handler(app, *args)
        except NoMatches:
            # The views are fixed; one is missing only while the app dismantles them.
            log.debug("%s arrived while the views were being removed", handler.__name__)

    return cast(HandlerT, guarded)


class WorkerMessage(Message):
    """A worker's result for the app (dropped once the app is closing: no views to show it)."""


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
        *(
            Binding(f"f{k + 2},alt+{k + 1}", f"show_tab('{tab}')", tab, show=False)
            for k, tab in enumerate(TABS)
        ),
        *(Binding(str(k + 1), "screen_keys_hint", show=False) for k in range(len(TABS))),
        Binding("question_mark", "help", "Help"),
        Binding("f1", "help", "Help", show=False),
    ]

    connected: reactive[bool] = reactive(False)
    running: reactive[str] = reactive("")
    """Name of the procedure being run ("" when idle); also set during connect/disconnect."""

    # -- messages from the workers -----------------------------------------------------------

    class StationOpened(WorkerMessage):
        """The station is connected."""

        def __init__(self, opened: OpenStation) -> None:
            super().__init__()
            self.opened = opened

    class StationClosed(WorkerMessage):
        """The station was disconnected (rails ramped down first if they were on)."""

    class StationProblem(WorkerMessage):
        """Connecting, reading or disconnecting the station failed."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class ReadingsUpdated(WorkerMessage):
        """A fresh snapshot of the station."""

        def __init__(self, readings: data.StationReadings) -> None:
            super().__init__()
            self.readings = readings

    class RunRecord(WorkerMessage):
        """One record of the running procedure."""

        def __init__(self, record: Record) -> None:
            super().__init__()
            self.record = record

    class OverwriteAsked(WorkerMessage):
        """A run would overwrite cores holding what ``holdings`` says: ask the operator."""

        def __init__(self, procedure: str, values: dict[str, Any], holdings: str) -> None:
            super().__init__()
            self.procedure = procedure
            self.values = values
            self.holdings = holdings

    class RunFinished(WorkerMessage):
        """A run ended, or could not start (``summary`` None, ``error`` says why)."""

        def __init__(self, procedure: str, summary: RunSummary | None, error: str = "") -> None:
            super().__init__()
            self.procedure = procedure
            self.summary = summary
            self.error = error

    class ChipChecked(WorkerMessage):
        """The chip ledger's cores checked against the chip (verdict per core)."""

        def __init__(self, opened: OpenStation, verdicts: dict[int, str]) -> None:
            super().__init__()
            self.opened = opened
            self.verdicts = verdicts

    class MetricsLoaded(WorkerMessage):
        """Per-core metrics read from the data directory."""

        def __init__(self, metrics: data.ChipMetrics) -> None:
            super().__init__()
            self.metrics = metrics

    class CoreDetailLoaded(WorkerMessage):
        """The detail of one core, read from the data directory."""

        def __init__(self, detail: data.CoreDetail) -> None:
            super().__init__()
            self.detail = detail

    class RunsListed(WorkerMessage):
        """The run files of the data directory."""

        def __init__(self, entries: list[data.RunEntry]) -> None:
            super().__init__()
            self.entries = entries

    class RunPreviewLoaded(WorkerMessage):
        """An opened run file (read again while it is still being written)."""

        def __init__(self, preview: data.RunPreview | None, error: str = "") -> None:
            super().__init__()
            self.preview = preview
            self.error = error

    # -- life cycle ---------------------------------------------------------------------------

    def __init__(
        self,
        station: Station | None = None,
        data_dir: Path = Path("runs"),
        *,
        poll_interval_s: float = POLL_INTERVAL_S,
        scales: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        super().__init__()
        self.poll_interval_s = poll_interval_s
        self.scales = {**data.SCALES, **(scales or {})}
        """The chip map's colour scale per metric (absolute; :data:`chipctl.tui.data.SCALES`)."""
        self.station = station or default_station()
        self.data_dir = Path(data_dir)
        self.opened: OpenStation | None = None
        self.last_summary: RunSummary | None = None
        self.last_refusal = ""
        """Why the last run did not start ("" if none was refused)."""
        self.abort_requested = threading.Event()
        self.instruments_lock = threading.Lock()
        """Held by a run and by disconnect: one of them at a time. The poll does not take it:
        it reads the instruments between the run's calls (the station's ``io_lock``)."""
        self._run_idle = threading.Event()
        self._run_idle.set()
        self._followed: Path | None = None
        self._opened_run: Path | None = None
        self._signal = ""
        """The stream the operator chose to plot on the Runs screen ("" for the default)."""
        self.closing = False
        """The app is shutting down: workers' late messages find no views and are dropped."""
        self._detail_core = 0
        self.chip_verdicts: dict[int, str] | None = None
        """Per core of the chip ledger whether the chip matches it (None: not checked)."""
        self.metrics = data.ChipMetrics.empty()

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="▦")
        with TabbedContent(id="tabs", initial="station"):
            with TabPane("F2 Station", id="station"):
                yield StationView(id="station-view")
            with TabPane("F3 Chip map", id="chip-map"):
                yield ChipMapView(id="chip-map-view")
            with TabPane("F4 Core", id="core-detail"):
                yield CoreDetailView(id="core-detail-view")
            with TabPane("F5 Procedures", id="procedures"):
                yield ProceduresView(id="procedures-view")
            with TabPane("F6 Runs", id="runs"):
                yield RunsView(id="runs-view")
        yield StatusBar(id="status-bar")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"{self.station.chip_id} — data in {self.data_dir}"
        self.main_view(StatusBar).url = self.station.board_url
        self.main_view(ChipMap).scales = self.scales
        self._adapt_layout(self.size.width)
        self.set_interval(self.poll_interval_s, self._poll)
        self.set_interval(FOLLOW_INTERVAL_S, self._follow)
        self.reload_data()
        self._focus_tab("station")

    async def on_unmount(self) -> None:
        """Stop a running procedure, then ramp the rails down and close the station."""
        import asyncio

        self.closing = True
        self.abort_requested.set()
        await asyncio.to_thread(self._run_idle.wait, 60.0)
        opened, self.opened = self.opened, None
        if opened is not None:
            await asyncio.to_thread(self._close_station, opened)

    def post_message(self, message: Message) -> bool:
        if getattr(self, "closing", False) and isinstance(message, WorkerMessage):
            return False
        return super().post_message(message)

    @overload
    def main_view(self, selector: type[WidgetT]) -> WidgetT: ...

    @overload
    def main_view(self, selector: str) -> Widget: ...

    def main_view(self, selector: type[Widget] | str) -> Widget:
        """The widget ``selector`` of the main screen (also while a modal screen is shown)."""
        stack = self.screen_stack
        return (stack[0] if stack else self).query_one(selector)

    # -- actions ------------------------------------------------------------------------------

    def action_show_tab(self, tab: str) -> None:
        self.main_view(TabbedContent).active = tab
        self.call_after_refresh(self._focus_tab, tab)

    def on_resize(self, event: events.Resize) -> None:
        self._adapt_layout(event.size.width)

    def _adapt_layout(self, width: int) -> None:
        """Screen classes ``narrow`` (< 120 columns) and ``tiny`` (< 90) for the stylesheet."""
        for screen in self.screen_stack:
            screen.set_class(width < NARROW_COLUMNS, "narrow")
            screen.set_class(width < TINY_COLUMNS, "tiny")

    def action_screen_keys_hint(self) -> None:
        self.notify(f"screens: {SCREEN_KEYS} (digits are for typing)", timeout=4)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id:
            self.call_after_refresh(self._focus_tab, event.pane.id)

    def _focus_tab(self, tab: str) -> None:
        """Focus the main widget of ``tab`` if it is still the active one."""
        if self.main_view(TabbedContent).active != tab:
            return
        target = {
            "station": "#station-view",
            "chip-map": "#chip-grid",
            "core-detail": "#core-detail-view",
            "procedures": "#procedure-list",
            "runs": "#runs-table",
        }[tab]
        widget = self.main_view(target)
        if widget.can_focus:
            widget.focus()

    # -- attributes down ---------------------------------------------------------------------

    def watch_connected(self, connected: bool) -> None:
        self.main_view(StationView).connected = connected
        self.main_view(ProceduresView).connected = connected
        bar = self.main_view(StatusBar)
        bar.connected = connected
        if not connected:
            bar.readings = None

    def watch_running(self, running: str) -> None:
        self.main_view(StationView).busy = bool(running)
        self.main_view(ProceduresView).running = running
        self.main_view(StatusBar).run = RunState(running) if running else None
        self.refresh_bindings()

    def _state(self, text: str) -> None:
        self.main_view(StationView).state = text

    # -- station ------------------------------------------------------------------------------

    def on_station_view_action(self, event: StationView.Action) -> None:
        if self.running:
            self.notify(
                f"{event.action.replace('_', ' ')} is disabled: {self.running} is running",
                severity="warning",
            )
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

    @_while_shown
    def on_chipctl_app_station_opened(self, message: StationOpened) -> None:
        self.opened = message.opened
        self.connected = True
        self.running = ""
        ident = message.opened.board.identity
        self._state(f"connected: {ident.board_id} on {message.opened.board.link.url}")
        self._poll()
        self._check_chip(message.opened)
        self._focus_tab(self.main_view(TabbedContent).active or "station")

    @_while_shown
    def on_chipctl_app_station_closed(self) -> None:
        self.opened = None
        self.connected = False
        self.running = ""
        self._show_verdicts(None)
        self.main_view(StationView).readings = None
        self._state("not connected")
        self.reload_data()

    @_while_shown
    def on_chipctl_app_station_problem(self, message: StationProblem) -> None:
        if self.running in ("connect", "disconnect"):
            self.running = ""
        self._state(message.text)
        self.notify(message.text, title="Station", severity="error", timeout=8)

    def _poll(self) -> None:
        if self.closing or self.opened is None or self.running in ("connect", "disconnect"):
            return
        self._read_station(self.opened)

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False)
    def _read_station(self, opened: OpenStation) -> None:
        try:
            readings = data.read_station(opened, instruments=True)
        except Exception as exc:
            if self.opened is opened and self.running != "disconnect":
                self.post_message(self.StationProblem(f"reading the station: {exc}"))
            return
        self.post_message(self.ReadingsUpdated(readings))

    @_while_shown
    def on_chipctl_app_readings_updated(self, message: ReadingsUpdated) -> None:
        if self.opened is not None:
            self.main_view(StationView).readings = message.readings
            self.main_view(StatusBar).readings = message.readings

    # -- procedures ---------------------------------------------------------------------------

    def on_procedures_view_start_requested(self, event: ProceduresView.StartRequested) -> None:
        self.start_run(event.procedure, event.values)

    def on_procedures_view_abort_requested(self) -> None:
        self.abort()

    def start_run(self, procedure: str, values: dict[str, Any], *, overwrite: bool = False) -> None:
        """Run ``procedure`` with the form's raw ``values`` in a thread worker.

        A run that would overwrite cores the chip ledger says hold something (and the chip still
        shows it) does not start: the operator is asked first (:class:`ConfirmOverwrite`), and
        only ``overwrite`` (their yes) lets it through.
        """
        if self.opened is None:
            self.notify(f"{procedure} is disabled: connect first (F2, c)", severity="warning")
            return
        if self.running:
            self.notify(f"{procedure} is disabled: {self.running} is running", severity="warning")
            return
        self.abort_requested.clear()
        self._run_idle.clear()
        self.running = procedure
        self.main_view(ProceduresView).log_line(f"starting {procedure} …")
        self._run(procedure, values, self.opened, overwrite)

    def abort(self) -> None:
        """Ask the running procedure to stop at its next safe point."""
        if self.running and self.running not in ("connect", "disconnect"):
            self.abort_requested.set()
            self.main_view(ProceduresView).log_line("abort requested: stopping at a safe point")

    @work(thread=True, exclusive=True, group="run", exit_on_error=False)
    def _run(self, name: str, values: dict[str, Any], opened: OpenStation, overwrite: bool) -> None:
        try:
            try:
                procedure = build_procedure(name, values, opened)
            except Exception as exc:
                self.post_message(self.RunFinished(name, None, f"{type(exc).__name__}: {exc}"))
                return
            path = run_file_path(self.data_dir, name)
            with self.instruments_lock:
                cores = catalog.overwritten_cores(procedure)
                problem = data.interlock_problem(opened) if cores else ""
                if problem:
                    self.post_message(self.RunFinished(name, None, f"interlock: {problem}"))
                    return
                held = {} if overwrite else ledger.held_cores(opened.board, cores)
                if held:
                    holdings = ledger.describe_holdings(held)
                    self.post_message(self.OverwriteAsked(name, values, holdings))
                    return
                summary = run_procedure(
                    procedure,
                    opened.board,
                    path,
                    progress=False,
                    should_stop=self.abort_requested.is_set,
                    subscribers=[self._forward_record],
                    # The ledger was read just above under the same lock, or the operator said yes.
                    context=catalog.RunContext(overwrite_cores=True),
                )
            self.post_message(self.RunFinished(name, summary))
        except Exception as exc:
            self.post_message(self.RunFinished(name, None, f"{type(exc).__name__}: {exc}"))
        finally:
            self._run_idle.set()

    @_while_shown
    def on_chipctl_app_overwrite_asked(self, message: OverwriteAsked) -> None:
        self.running = ""
        view = self.main_view(ProceduresView)
        view.log_line(f"{message.procedure} not started yet: {message.holdings}")

        def answered(overwrite: bool | None) -> None:
            if overwrite:
                view.log_line(f"overwrite confirmed by the operator; starting {message.procedure}")
                self.start_run(message.procedure, message.values, overwrite=True)
            else:
                view.log_line(f"{message.procedure} not started: the cores keep what they hold")
                self.notify("cores kept; nothing was written", title=message.procedure)

        self.push_screen(ConfirmOverwrite(message.procedure, message.holdings), answered)

    def _forward_record(self, record: Record) -> None:
        """Runner subscriber (worker thread): the record goes to the UI as a message."""
        self.post_message(self.RunRecord(record))

    @_while_shown
    def on_chipctl_app_run_record(self, message: RunRecord) -> None:
        view = self.main_view(ProceduresView)
        view.add_record(message.record)
        record = message.record
        if isinstance(record, Start):
            self.main_view(StatusBar).run = RunState(record.procedure, 0, record.total)
            self._list_runs()
        elif isinstance(record, Progress) and self.running:
            self.main_view(StatusBar).run = RunState(
                self.running, record.done, record.total, view.eta
            )

    @_while_shown
    def on_chipctl_app_run_finished(self, message: RunFinished) -> None:
        self.running = ""
        view = self.main_view(ProceduresView)
        if message.summary is None:
            self.last_refusal = message.error
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
        try:
            wrote_cores = catalog.entry(message.procedure).may_overwrite
        except catalog.CatalogError:
            wrote_cores = True
        if wrote_cores and self.opened is not None:
            self._check_chip(self.opened)

    # -- the chip ledger against the chip ---------------------------------------------------

    @work(thread=True, exclusive=True, group="chip-check", exit_on_error=False)
    def _check_chip(self, opened: OpenStation) -> None:
        try:
            with self.instruments_lock:
                verdicts = data.check_ledger_on_chip(opened.board)
        except Exception as exc:
            self.post_message(self.StationProblem(f"checking the chip ledger: {exc}"))
            return
        self.post_message(self.ChipChecked(opened, verdicts))

    @_while_shown
    def on_chipctl_app_chip_checked(self, message: ChipChecked) -> None:
        if message.opened is self.opened:
            self._show_verdicts(message.verdicts)

    def _show_verdicts(self, verdicts: dict[int, str] | None) -> None:
        self.chip_verdicts = verdicts
        self.main_view(ChipMapView).verdicts = verdicts
        self._show_chip_state()

    def _show_chip_state(self) -> None:
        """Core detail's line on what the shown core holds (ledger and chip check)."""
        core = self._detail_core
        verdict = None if self.chip_verdicts is None else self.chip_verdicts.get(core)
        text = data.chip_state_text(self.metrics.ledger_cores.get(core), verdict)
        self.main_view(CoreDetailView).chip_state = text

    # -- data directory: metrics, core detail, runs -----------------------------------------

    def reload_data(self) -> None:
        """Read the metrics, the selected core's detail and the run list again (workers)."""
        self._load_metrics()
        self._load_core_detail(self._detail_core)
        self._list_runs()

    @work(thread=True, exclusive=True, group="metrics", exit_on_error=False)
    def _load_metrics(self) -> None:
        metrics = data.load_chip_metrics(self.data_dir, self.station.chip_id)
        self.post_message(self.MetricsLoaded(metrics))

    @work(thread=True, exclusive=True, group="detail", exit_on_error=False)
    def _load_core_detail(self, core: int) -> None:
        self.post_message(self.CoreDetailLoaded(data.load_core_detail(self.data_dir, core)))

    @work(thread=True, exclusive=True, group="runs", exit_on_error=False)
    def _list_runs(self) -> None:
        self.post_message(self.RunsListed(data.list_runs(self.data_dir)))

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False)
    def _read_run(self, path: Path) -> None:
        try:
            self.post_message(self.RunPreviewLoaded(data.read_run(path, self._signal)))
        except Exception as exc:
            self.post_message(self.RunPreviewLoaded(None, f"{path.name}: {exc}"))

    @_while_shown
    def on_chipctl_app_metrics_loaded(self, message: MetricsLoaded) -> None:
        self.metrics = message.metrics
        self.main_view(ChipMapView).metrics = message.metrics
        self._show_chip_state()

    @_while_shown
    def on_chipctl_app_core_detail_loaded(self, message: CoreDetailLoaded) -> None:
        if message.detail.core == self._detail_core:
            self._show_chip_state()
            self.main_view(CoreDetailView).detail = message.detail

    @_while_shown
    def on_chipctl_app_runs_listed(self, message: RunsListed) -> None:
        self.main_view(RunsView).entries = message.entries

    @_while_shown
    def on_chipctl_app_run_preview_loaded(self, message: RunPreviewLoaded) -> None:
        if message.preview is None:
            self.notify(message.error, title="Run file", severity="error")
            self._followed = None
            return
        self.main_view(RunsView).preview = message.preview
        if message.preview.status != "running":
            if self._followed == message.preview.path:
                self._list_runs()
            self._followed = None

    def on_chip_map_core_selected(self, message: ChipMap.CoreSelected) -> None:
        self._detail_core = message.core
        self.main_view(ProceduresView).share_cores(str(message.core))

    def on_chip_map_core_opened(self, message: ChipMap.CoreOpened) -> None:
        self.show_core(message.core)

    def on_core_detail_view_core_requested(self, message: CoreDetailView.CoreRequested) -> None:
        self.show_core(message.core)

    def show_core(self, core: int) -> None:
        """Switch to the Core detail tab and load ``core``."""
        self._detail_core = core
        self.main_view(ChipMap).selected = core
        self._load_core_detail(core)
        self.action_show_tab("core-detail")

    def on_runs_view_open_requested(self, message: RunsView.OpenRequested) -> None:
        self.open_run(message.path)

    def on_runs_view_refresh(self) -> None:
        self._list_runs()

    def open_run(self, path: Path) -> None:
        """Show run file ``path`` on the Runs tab; follow it while it is being written."""
        if path != self._opened_run:
            self._signal = ""
        self._opened_run = path
        self._followed = path
        self._read_run(path)

    def on_runs_view_stream_chosen(self, message: RunsView.StreamChosen) -> None:
        self._signal = message.signal
        if self._opened_run is not None:
            self._read_run(self._opened_run)

    def _follow(self) -> None:
        if self._followed is not None:
            self._read_run(self._followed)
