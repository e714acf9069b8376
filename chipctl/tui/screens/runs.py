"""Runs screen: the run files of the data directory; open one to see metadata and its plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable, Label, Select, Static
from textual_plotext import PlotextPlot

from chipctl.tui.data import RunEntry, RunPreview
from chipctl.tui.widgets.plots import draw_series

STATUS_STYLES = {"success": "green", "aborted": "yellow", "failed": "red", "running": "cyan"}


def short_time(iso: str) -> str:
    """``mm-dd HH:MM:SS`` of an ISO 8601 time."""
    return iso.replace("T", " ")[5:19] if iso else ""


class RunsView(Horizontal):
    """The run table and the opened run; posts :class:`OpenRequested` and :class:`Refresh`.

    Attributes (set by the app): ``entries`` (the table) and ``preview`` (the opened run,
    read again by the app while its status is "running").
    """

    BINDINGS = [Binding("r", "refresh", "Refresh list")]

    entries: reactive[list[RunEntry]] = reactive(list, always_update=True)
    preview: reactive[RunPreview | None] = reactive(None, always_update=True)

    class OpenRequested(Message):
        """Open (and follow, while it is written) the run file ``path``."""

        def __init__(self, path: Path) -> None:
            super().__init__()
            self.path = path

    class Refresh(Message):
        """List the run files again."""

    class StreamChosen(Message):
        """Plot stream ``signal`` of the opened run ("" for its default plot)."""

        def __init__(self, signal: str) -> None:
            super().__init__()
            self.signal = signal

    def compose(self) -> ComposeResult:
        table: DataTable[Any] = DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield table
        with Vertical(id="run-detail"):
            with VerticalScroll(id="run-meta-scroll", classes="panel"):
                yield Static("Select a run and press Enter.", id="run-meta")
            with Horizontal(id="run-stream-row"):
                yield Label("plot ", id="run-stream-label")
                yield Select[str]([], prompt="stream", compact=True, id="run-stream")
            yield PlotextPlot(id="run-plot")

    _options: tuple[tuple[str, str], ...] = ()

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.select.id == "run-stream" and isinstance(event.value, str):
            self.post_message(self.StreamChosen(event.value))

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        # The long file name last: a narrow terminal scrolls it, never the time or status.
        table.add_columns("started", "status", "procedure", "run file")
        draw_series(self.query_one("#run-plot", PlotextPlot), None, "Default plot")

    def action_refresh(self) -> None:
        self.post_message(self.Refresh())

    def watch_entries(self, entries: list[RunEntry]) -> None:
        if not self.children:
            return
        table = self.query_one(DataTable)
        selected = table.cursor_row
        table.clear()
        for entry in entries:
            status = Text(entry.status, style=STATUS_STYLES.get(entry.status, "dim"))
            table.add_row(
                short_time(entry.start_time),
                status,
                entry.procedure,
                entry.name,
                key=str(entry.path),
            )
        if entries:
            table.move_cursor(row=min(selected, len(entries) - 1))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value:
            self.post_message(self.OpenRequested(Path(event.row_key.value)))

    def watch_preview(self, preview: RunPreview | None) -> None:
        if not self.children or preview is None:
            return
        self.query_one("#run-meta", Static).update(_metadata(preview))
        select: Select[str] = self.query_one("#run-stream", Select)
        options = tuple((name, name) for name in preview.plottable)
        if self._options != options:
            self._options = options
            with self.prevent(Select.Changed):
                select.set_options(options)
        if preview.signal in preview.plottable and select.value != preview.signal:
            with self.prevent(Select.Changed):
                select.value = preview.signal
        title = f"{preview.path.name}" + (" (live)" if preview.status == "running" else "")
        draw_series(self.query_one("#run-plot", PlotextPlot), preview.plot, title)


def _metadata(preview: RunPreview) -> Table:
    table = Table(
        box=None,
        show_header=False,
        expand=True,
        padding=(0, 1),
        title=preview.path.name,
        title_justify="left",
    )
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    status = Text(preview.status, style=STATUS_STYLES.get(preview.status, ""))
    if preview.reason:
        status.append(f" ({preview.reason})", style="dim")
    table.add_row("procedure", preview.procedure)
    table.add_row("status", status)
    table.add_row("chip", preview.chip_id)
    table.add_row("start", short_time(preview.start_time))
    table.add_row("end", short_time(preview.end_time) or "–")
    # Wrapped, never cut: the pane scrolls.
    parameters = ", ".join(f"{k}={v}" for k, v in preview.parameters.items())
    table.add_row("parameters", Text(parameters))
    streams = ", ".join(f"{name}[{rows}]" for name, rows, _ in preview.streams)
    table.add_row("streams", Text(streams))
    return table
