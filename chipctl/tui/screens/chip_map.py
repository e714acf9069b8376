"""Chip map screen: the 8×8 cores coloured by a selectable metric, with a legend."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import Select, Static

from chipctl.tui.data import METRIC_BY_KEY, METRICS, ChipMetrics, age_text, checked_metrics
from chipctl.tui.widgets.chip_map import ChipMap, format_value, legend_text


class ChipMapView(Vertical):
    """The metric selector, the grid, the legend and a line about the selected core.

    Attributes (set by the app): ``metrics`` (from the run files and the chip ledger) and
    ``verdicts`` (the chip check of the ledger's cores, None while not checked); the grid
    shows them combined (:func:`chipctl.tui.data.checked_metrics`). The grid's messages
    (``ChipMap.CoreSelected``, ``ChipMap.CoreOpened``) bubble up to the app.
    """

    BINDINGS = [Binding("m", "next_metric", "Metric")]

    metrics: reactive[ChipMetrics] = reactive(ChipMetrics.empty, always_update=True)
    verdicts: reactive[dict[int, str] | None] = reactive(None, always_update=True)
    now: Callable[[], float] = staticmethod(time.time)
    """The clock ages are measured against (snapshot tests pin it)."""

    def compose(self) -> ComposeResult:
        with Horizontal(id="chip-map-top"):
            yield Static("Colour by ", id="metric-label")
            yield Select(
                [(metric.title, metric.key) for metric in METRICS],
                value=METRICS[0].key,
                allow_blank=False,
                compact=True,
                id="metric",
            )
        yield ChipMap(id="chip-grid")
        yield Static(id="chip-legend")
        yield Static(id="core-line")

    def watch_metrics(self) -> None:
        self._show()

    def watch_verdicts(self) -> None:
        self._show()

    def _show(self) -> None:
        if self.children:
            self.query_one(ChipMap).metrics = self.shown
            self._update()

    @property
    def shown(self) -> ChipMetrics:
        """The metrics as the grid shows them: the chip check applied."""
        return checked_metrics(self.metrics, self.verdicts)

    def on_mount(self) -> None:
        self._show()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "metric" and isinstance(event.value, str):
            self.query_one(ChipMap).metric = event.value
            self._update()

    def on_chip_map_core_selected(self, event: ChipMap.CoreSelected) -> None:
        self._update()

    def action_next_metric(self) -> None:
        keys = [metric.key for metric in METRICS]
        select = self.query_one("#metric", Select)
        current = keys.index(str(select.value))
        select.value = keys[(current + 1) % len(keys)]

    def _update(self) -> None:
        chip_map = self.query_one(ChipMap)
        shown = chip_map.metrics
        legend = legend_text(shown, chip_map.metric, chip_map.scales)
        self.query_one("#chip-legend", Static).update(legend)
        core = chip_map.selected
        line = Text(f"core {core} (row {core // 8}, column {core % 8}): ", style="bold")
        parts = []
        for metric in METRICS:
            value = shown.value(metric.key, core)
            part = f"{metric.key.replace('_', ' ')} {format_value(metric, value)}"
            source = shown.cells.get(metric.key, {}).get(core)
            if source is not None:
                flag = "" if source.status == "success" else f", {source.status.upper()}"
                part += f" ({source.name}{flag}, {age_text(self.now() - source.written)})"
            elif metric.key == "programmed" and core in shown.ledger_cores:
                part += f" ({shown.ledger_cores[core]})"
            parts.append(part)
        line.append("; ".join(parts))
        line.append("  — Enter: core detail", style="dim")
        self.query_one("#core-line", Static).update(line)

    @property
    def metric(self) -> str:
        """Key of the metric shown."""
        return self.query_one(ChipMap).metric

    @property
    def metric_title(self) -> str:
        """Title of the metric the map shows."""
        return METRIC_BY_KEY[self.metric].title
