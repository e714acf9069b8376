"""Procedures screen: the registered procedures, a form per procedure, start/abort, live view."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import (
    Button,
    ContentSwitcher,
    Input,
    Label,
    ListItem,
    ListView,
    ProgressBar,
    RichLog,
    Static,
)
from textual_plotext import PlotextPlot

from chipctl import catalog
from chipctl.tui.data import GDC_SUFFIX, ID_STREAMS, rail_names
from chipctl.tui.widgets.parameter_form import ParameterForm, check_text
from chipctl.tui.widgets.plots import draw_points
from chipctl.tui.widgets.toggle import Toggle
from procedures.base import Data, Procedure, Progress, Record, Start, Stop


def procedure_classes() -> dict[str, type[Procedure]]:
    """Catalogued procedures that import cleanly, by name (a broken module is left out)."""
    return catalog.available()


Curve = tuple[str, list[float], list[float]]
"""(label, x, y) of one live curve."""


class LiveSignal:
    """The running procedure's main signal (its default plot), collected from Data records.

    One curve per rail, core or compensation when the run says which row is which (the
    procedure's ``plot_series``, or a ``rail``/``core`` stream: at most 8 curves); else one per
    column of vector rows (at most 8), else their mean. A ``X_gdc`` signal is drawn with ``X``
    (uncompensated) beside it. An axis in s is shown as log10; an axis that does not grow
    monotonically (iterations restarting per group) is replaced by the row number.
    """

    def __init__(
        self,
        signal: str = "",
        axis: str | None = None,
        axis_units: str = "",
        split: tuple[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.signal, self.axis, self.axis_units = signal, axis, axis_units
        self.split = split
        self.companion = signal.removesuffix(GDC_SUFFIX) if signal.endswith(GDC_SUFFIX) else ""
        self.x: list[float] = []
        self.y: list[float] = []
        """Mean of each signal row."""
        self.rows: list[np.ndarray] = []
        self.before: list[float] = []
        self.ids: list[float] = []
        self.dirty = False

    @classmethod
    def from_start(cls, start: Start) -> LiveSignal:
        """The live plot of a run: its default-plot signal and axis, from the Start record."""
        signal, axis = start.default_plot
        units = {spec.name: spec.units for spec in start.streams}
        split: tuple[str, tuple[str, ...]] | None = None
        try:
            declared = catalog.procedure_class(start.procedure).plot_series
        except catalog.CatalogError:
            declared = None
        if declared is not None and declared[0] in units:
            split = declared
        else:
            split = next(((s, ()) for s in ID_STREAMS if s in units and s != axis), None)
        named = rail_names(start.metadata)
        if split is not None and split[0] == "rail" and named:
            # Power runs say which output is which rail: name the curves after them.
            split = ("rail", tuple(named.get(n, f"rail {n}") for n in range(max(named) + 1)))
        return cls(signal, axis if axis in units else None, units.get(axis or "", ""), split)

    def add(self, record: Data) -> None:
        """Take the rows of a Data record if it is one of the streams the plot needs."""
        values = np.asarray(record.values, np.float64)
        rows = values if record.rows else values[np.newaxis]
        if record.stream == self.signal:
            for row in rows:
                self.rows.append(np.ravel(row))
                self.y.append(float(np.mean(row)))
            self.dirty = True
        elif record.stream == self.axis:
            self.x.extend(float(np.mean(row)) for row in rows)
        elif record.stream == self.companion:
            self.before.extend(float(np.mean(row)) for row in rows)
        elif self.split is not None and record.stream == self.split[0]:
            self.ids.extend(float(np.ravel(row)[0]) for row in rows)

    def _split_values(self) -> list[float]:
        n = len(self.y)
        if self.split is None or len(self.ids) < n:
            return []
        values = sorted(set(self.ids[:n]))
        return values if 1 < len(values) <= 8 else []

    @property
    def x_label(self) -> str:
        """Label of the x axis (``log10 time (s)`` for a time axis, ``row`` without one)."""
        if self.axis is None or not self._axis_usable():
            return "row"
        return f"log10 {self.axis} (s)" if self._log_x() else self.axis

    def _axis_usable(self) -> bool:
        n = len(self.y)
        if len(self.x) < n:
            return False
        if self._split_values():  # each curve's own x only has to be there
            return True
        return all(b > a for a, b in zip(self.x[:n], self.x[1:n], strict=False))

    def _log_x(self) -> bool:
        return self.axis_units == "s" and all(v > 0 for v in self.x[: len(self.y)])

    def _xs(self) -> list[float]:
        n = len(self.y)
        if self.axis is None or not self._axis_usable():
            return [float(k) for k in range(n)]
        x = self.x[:n]
        return [math.log10(v) for v in x] if self._log_x() else list(x)

    def curves(self) -> list[Curve]:
        """The curves to draw."""
        n = len(self.y)
        x = self._xs()
        split = self._split_values()
        if split and self.split is not None:
            name, names = self.split
            out = []
            for value in split:
                index = [k for k in range(n) if self.ids[k] == value]
                label = names[int(value)] if 0 <= int(value) < len(names) else f"{name} {value:g}"
                out.append((label, [x[k] for k in index], [self.y[k] for k in index]))
            return out
        widths = {row.size for row in self.rows}
        if len(widths) == 1 and 1 < widths.pop() <= 8:
            columns = np.vstack(self.rows)
            return [
                (f"{self.signal}[{k}]", x, columns[:, k].tolist()) for k in range(columns.shape[1])
            ]
        if self.companion and len(self.before) >= n:
            return [("uncompensated", x, self.before[:n]), ("with GDC", x, list(self.y))]
        return [(self.signal, x, list(self.y))]

    def points(self) -> tuple[list[float], list[float]]:
        """(x, mean y) of every row, as one curve."""
        return self._xs(), list(self.y)


def eta_text(done: int, total: int, first_done: int, started: float, now: float) -> str:
    """The rate in units per s and the ETA, from the start of the run ("" before a rate)."""
    elapsed = now - started
    if elapsed <= 0 or done <= first_done:
        return ""
    rate = (done - first_done) / elapsed
    remaining = max(total - done, 0) / rate if rate > 0 else math.inf
    eta = "–" if not math.isfinite(remaining) else time.strftime("%H:%M:%S", time.gmtime(remaining))
    return f"{rate:.3g}/s  ETA {eta}"


def problem_field(parameters: tuple[str, ...], message: str) -> str:
    """The field a build error is about: the one it names (``parameter weights: …``), else the
    first of ``parameters``."""
    match = re.match(r"(?:parameter )?(\w+):", message)
    if match and match.group(1) in parameters:
        return match.group(1)
    return parameters[0]


def rate_text(done: int, total: int, first_done: int, started: float, now: float) -> str:
    """``done/total``, the rate in units per s and the ETA, from the start of the run."""
    text = f"{done}/{total} ({done / max(total, 1):.0%})"
    eta = eta_text(done, total, first_done, started, now)
    return f"{text}  {eta}" if eta else text


class ProceduresView(Horizontal):
    """Procedure list and forms; posts :class:`StartRequested` / :class:`AbortRequested`.

    Attributes (set by the app): ``connected`` and ``running`` (the running procedure's name,
    "" when idle). The app feeds the running procedure's records to :meth:`add_record`.
    """

    BINDINGS = [
        Binding("f9", "start", "Start"),
        Binding("f8", "abort", "Abort"),
        Binding("escape", "leave_form", "Procedure list"),
    ]

    connected: reactive[bool] = reactive(False)
    running: reactive[str] = reactive("")
    clock: Callable[[], float] = staticmethod(time.monotonic)
    """The clock of rates and ETAs (snapshot tests pin it)."""

    class StartRequested(Message):
        """Run ``procedure`` with the form's raw ``values`` (arrays as paths)."""

        def __init__(self, procedure: str, values: dict[str, Any]) -> None:
            super().__init__()
            self.procedure = procedure
            self.values = values

    class AbortRequested(Message):
        """Stop the running procedure at its next safe point."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.classes_by_name = procedure_classes()
        self.live = LiveSignal()
        self._started = 0.0
        self._first_done = 0
        self.eta = ""
        """Rate and ETA of the running procedure ("" when idle or ended)."""
        self.shared_cores = ""
        """The cores last chosen (typed in any form, or selected on the chip map): every form
        with a cores field shows them, so they are kept across procedures."""

    def compose(self) -> ComposeResult:
        with ListView(id="procedure-list"):
            for name in self.classes_by_name:
                yield ListItem(Label(name), id=f"proc-{name}", name=name)
        with Vertical(id="procedure-main"):
            yield Static(id="procedure-title")
            with Horizontal(id="procedure-body"):
                initial = next(iter(self.classes_by_name), "")
                # Forms are mounted when first shown: all of them at once are thousands of
                # widgets, and every layout pass (every key press) walks them.
                with ContentSwitcher(initial=f"form-{initial}", id="forms"):
                    if initial:
                        parameters = self.classes_by_name[initial].parameters
                        yield ParameterForm(parameters, id=f"form-{initial}")
                yield PlotextPlot(id="live-plot")
            with Horizontal(id="run-controls"):
                yield Button("Start F9", id="start", variant="success", compact=True)
                yield Button("Abort F8", id="abort", variant="error", compact=True)
                yield ProgressBar(total=1, id="run-progress", show_eta=False, show_percentage=False)
            yield Static("", id="run-rate")
            yield RichLog(id="run-log", max_lines=500, wrap=True, markup=False)

    def on_mount(self) -> None:
        self.set_interval(0.25, self._redraw_if_dirty)
        self._show(self.selected)
        self._controls()
        draw_points(self.query_one("#live-plot", PlotextPlot), [], "Live signal", "")

    @property
    def selected(self) -> str:
        """Name of the procedure whose form is shown."""
        current = self.query_one("#forms", ContentSwitcher).current or ""
        return current.removeprefix("form-")

    def form(self, name: str | None = None) -> ParameterForm:
        """The parameter form of procedure ``name`` (default: the selected one)."""
        return self.query_one(f"#form-{name or self.selected}", ParameterForm)

    def select(self, name: str) -> None:
        """Show the form of procedure ``name``."""
        names = list(self.classes_by_name)
        self.query_one("#procedure-list", ListView).index = names.index(name)
        self._show(name)

    def on_list_view_highlighted(self, event: ListView.Highlighted) -> None:
        if event.item is not None and event.item.name:
            self._show(event.item.name)

    def _show(self, name: str) -> None:
        if name not in self.classes_by_name:
            return
        switcher = self.query_one("#forms", ContentSwitcher)
        if switcher.query(f"#form-{name}"):
            self._apply_shared_cores(name)
        else:
            parameters = self.classes_by_name[name].parameters
            texts = {"cores": self.shared_cores} if self._shareable(name) else {}
            switcher.mount(ParameterForm(parameters, texts, id=f"form-{name}"))
        switcher.current = f"form-{name}"
        cls = self.classes_by_name[name]
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        title = Text(f"{cls.title or name}", style="bold")
        title.append(f"  {doc}", style="dim")
        self.query_one("#procedure-title", Static).update(title)

    def watch_connected(self) -> None:
        self._controls()

    def watch_running(self, running: str) -> None:
        self.set_class(bool(running), "running")
        self._controls()

    def _controls(self) -> None:
        if not self.children:
            return
        self.query_one("#start", Button).disabled = bool(self.running) or not self.connected
        self.query_one("#abort", Button).disabled = not self.running

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "start":
            self.action_start()
        elif event.button.id == "abort":
            self.action_abort()

    # -- forms: shared cores, files checked as they are entered -------------------------------

    def share_cores(self, text: str) -> None:
        """Keep ``text`` as the cores of every form (shown in a form's cores field when the
        form is shown; a valid core list only)."""
        self.shared_cores = text
        self._apply_shared_cores(self.selected)

    def _shareable(self, name: str) -> bool:
        """Whether the shared cores are a valid value of procedure ``name``'s cores field."""
        cls = self.classes_by_name.get(name)
        cores = next((p for p in cls.parameters if p.name == "cores"), None) if cls else None
        text = self.shared_cores
        return (
            cores is not None
            and cores.kind == "cores"
            and bool(text)
            and not check_text(cores, text)
        )

    def _apply_shared_cores(self, name: str) -> None:
        form = self.form(name)
        shown = form.cores_text() if form.query("#param-cores") else self.shared_cores
        if self._shareable(name) and shown != self.shared_cores:
            form.set_value("cores", self.shared_cores)

    def _form_of(self, widget: Any) -> ParameterForm | None:
        return next((a for a in widget.ancestors if isinstance(a, ParameterForm)), None)

    def on_input_changed(self, event: Input.Changed) -> None:
        form = self._form_of(event.input)
        if form is None:
            return
        if event.input.id == "param-cores" and form.id == f"form-{self.selected}":
            self.shared_cores = event.value.strip()
        self.check_files(form)

    def on_toggle_changed(self, event: Toggle.Changed) -> None:
        form = self._form_of(event.toggle)
        if form is not None:
            self.check_files(form)

    def check_files(self, form: ParameterForm) -> None:
        """Build the procedure of ``form`` without a board once its file fields are filled in
        and valid (the arrays are loaded): a file's shape against the chosen cores, or any
        other problem the procedure finds, shows under the field it is about."""
        name = (form.id or "").removeprefix("form-")
        arrays = tuple(p.name for p in form.parameters if p.kind == "array")
        values = form.values() if arrays and not form.inline_errors() else {}
        if not any(a in values for a in arrays) or catalog.entry(name).needs_station:
            form.set_problems({})
            return
        try:
            catalog.build(name, values)
        except Exception as exc:  # noqa: BLE001 (any refusal is shown to the operator)
            message = str(exc)
            field = problem_field(arrays, message)
            form.set_problems({field: message.removeprefix(f"parameter {field}: ")})
        else:
            form.set_problems({})

    def action_start(self) -> None:
        if self.running:
            self.notify(f"{self.running} is running; abort it first", severity="warning")
            return
        if not self.connected:
            self.notify("connect the station first (Station screen, c)", severity="warning")
            return
        errors = self.form().errors()
        if errors:
            name, message = next(iter(errors.items()))
            self.notify(f"{name}: {message}", title="Invalid parameter", severity="error")
            return
        self.post_message(self.StartRequested(self.selected, self.form().values()))

    def action_leave_form(self) -> None:
        """Back to the procedure list."""
        self.query_one("#procedure-list", ListView).focus()

    def action_abort(self) -> None:
        if self.running:
            self.post_message(self.AbortRequested())
        else:
            self.notify("abort is disabled: nothing is running")

    def log_line(self, text: str) -> None:
        """Append a line to the run log."""
        self.query_one("#run-log", RichLog).write(text)

    def add_record(self, record: Record) -> None:
        """Show one record of the running procedure (progress, live plot, log)."""
        bar = self.query_one("#run-progress", ProgressBar)
        if isinstance(record, Start):
            self.live = LiveSignal.from_start(record)
            self._started, self._first_done = self.clock(), 0
            bar.update(total=max(record.total, 1), progress=0)
            self.query_one("#run-rate", Static).update("")
            self.log_line(f"▶ {record.procedure} started on {record.metadata.get('board_url')}")
            self.live.dirty = True
        elif isinstance(record, Data):
            self.live.add(record)
        elif isinstance(record, Progress):
            if not self._first_done and record.done > 0:
                self._first_done = record.done - 1
            bar.update(total=max(record.total, 1), progress=record.done)
            now = self.clock()
            self.eta = eta_text(record.done, record.total, self._first_done, self._started, now)
            rate = rate_text(record.done, record.total, self._first_done, self._started, now)
            self.query_one("#run-rate", Static).update(rate)
            if record.message:
                self.log_line(record.message)
        elif isinstance(record, Stop):
            reason = f" ({record.reason})" if record.reason else ""
            self.log_line(f"■ {record.status}{reason} after {record.elapsed_s:.3g} s")
            # No ETA survives the end: say how it ended instead.
            self.eta = ""
            done = f"{bar.progress:.0f}/{bar.total:.0f}" if bar.total else ""
            self.query_one("#run-rate", Static).update(f"{done}  {record.status}".strip())
            self.live.dirty = True

    def _redraw_if_dirty(self) -> None:
        if not self.live.dirty:
            return
        self.live.dirty = False
        title = self.live.signal or "Live signal"
        curves = self.live.curves() if self.live.y else []
        draw_points(self.query_one("#live-plot", PlotextPlot), curves, title, self.live.x_label)
