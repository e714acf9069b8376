"""The 8×8 core grid, coloured by one metric, with its legend."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from rich.color import Color
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

from chipctl.tui.data import GRID, METRIC_BY_KEY, N_CORES, SCALES, ChipMetrics, Metric

UNKNOWN = Color.parse("#4a4a4a")
"""Colour of a core whose metric is unknown."""

_GOOD_TO_BAD = ("#1a9850", "#91cf60", "#d9ef8b", "#fee08b", "#fc8d59", "#d73027")
"""Colour ramp from good to bad (diverging green → red)."""


def ramp_colour(fraction: float) -> Color:
    """Colour at ``fraction`` (0 = good, 1 = bad) of the good-to-bad ramp."""
    fraction = min(max(fraction, 0.0), 1.0) * (len(_GOOD_TO_BAD) - 1)
    low = int(math.floor(fraction))
    high = min(low + 1, len(_GOOD_TO_BAD) - 1)
    a, b = Color.parse(_GOOD_TO_BAD[low]).triplet, Color.parse(_GOOD_TO_BAD[high]).triplet
    assert a is not None and b is not None
    t = fraction - low
    return Color.from_rgb(*(round(x + (y - x) * t) for x, y in zip(a, b, strict=True)))


def value_range(values: np.ndarray) -> tuple[float, float] | None:
    """(low, high) of the finite values, or None if there are none."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    return float(finite.min()), float(finite.max())


def core_colour(metric: Metric, value: float, span: tuple[float, float] | None) -> Color:
    """Colour of a core with ``value`` of ``metric`` given the range of all cores."""
    if not math.isfinite(value) or span is None:
        return UNKNOWN
    if metric.categorical:
        return ramp_colour(0.0) if value else Color.parse("#6b6b8a")
    low, high = span
    fraction = 0.5 if high <= low else (value - low) / (high - low)
    return ramp_colour(fraction if metric.low_is_good else 1.0 - fraction)


def format_value(metric: Metric, value: float) -> str:
    """Short text of a metric value for a grid cell or the legend."""
    if not math.isfinite(value):
        return "–"
    if metric.categorical:
        return "yes" if value else "no"
    if metric.key == "yield":
        return f"{value:.1%}"
    return f"{value:.3g}"


class ChipMap(Widget, can_focus=True):
    """The cores as an 8×8 grid of coloured cells; arrows or the mouse select a core.

    Attributes (set by the parent): ``metrics`` and ``metric``; ``selected`` is the core.
    Messages: :class:`ChipMap.CoreSelected` when the selection changes,
    :class:`ChipMap.CoreOpened` on Enter or a double click.
    """

    BINDINGS = [
        Binding("up", "move(0, -1)", "Up", show=False),
        Binding("down", "move(0, 1)", "Down", show=False),
        Binding("left", "move(-1, 0)", "Left", show=False),
        Binding("right", "move(1, 0)", "Right", show=False),
        Binding("enter", "open", "Core detail"),
    ]

    DEFAULT_CSS = """
    ChipMap { width: 1fr; height: 1fr; min-height: 10; }
    """

    metrics: reactive[ChipMetrics] = reactive(ChipMetrics.empty, always_update=True)
    metric: reactive[str] = reactive("programmed")
    selected: reactive[int] = reactive(0)

    class CoreSelected(Message):
        """The selected core changed."""

        def __init__(self, core: int) -> None:
            super().__init__()
            self.core = core

    class CoreOpened(Message):
        """The operator asked for the detail of a core."""

        def __init__(self, core: int) -> None:
            super().__init__()
            self.core = core

    scales: Mapping[str, tuple[float, float]] = SCALES
    """Colour scale per metric (absolute; the app may give others)."""

    def _cell_size(self) -> tuple[int, int]:
        width = max(4, (self.size.width - 1) // GRID)
        height = max(1, (self.size.height - 1) // GRID)
        return width, height

    def render(self) -> Text:
        metric = METRIC_BY_KEY[self.metric]
        values = self.metrics.values[self.metric]
        span = self.scales.get(self.metric) or value_range(values)
        width, height = self._cell_size()
        text = Text(no_wrap=True, overflow="crop")
        for row in range(GRID):
            for line in range(height):
                for col in range(GRID):
                    core = row * GRID + col
                    colour = core_colour(metric, float(values[core]), span)
                    foreground = "black" if colour != UNKNOWN else "#bbbbbb"
                    style = Style(bgcolor=colour, color=foreground)
                    if core == self.selected:
                        style += Style(bold=True, reverse=self.has_focus)
                    label = self._label(core, line, height, metric, float(values[core]), width)
                    text.append(label, style)
                    text.append(" ")
                text.append("\n")
        text.rstrip()
        return text

    @staticmethod
    def _label(core: int, line: int, height: int, metric: Metric, value: float, width: int) -> str:
        inner = width - 1
        if line == 0:
            content = f"{core:>2}"
            if height == 1 and inner >= 8:
                content += " " + format_value(metric, value)
        elif line == 1:
            content = format_value(metric, value)
        else:
            content = ""
        return content[:inner].center(inner) if line else content[:inner].ljust(inner)

    def core_at(self, x: int, y: int) -> int | None:
        """Core under widget offset (x, y), or None outside the grid."""
        width, height = self._cell_size()
        col, row = x // width, y // height
        if 0 <= col < GRID and 0 <= row < GRID:
            return row * GRID + col
        return None

    def watch_selected(self, core: int) -> None:
        self.post_message(self.CoreSelected(core))

    def action_move(self, dx: int, dy: int) -> None:
        row, col = divmod(self.selected, GRID)
        row = min(max(row + dy, 0), GRID - 1)
        col = min(max(col + dx, 0), GRID - 1)
        self.selected = row * GRID + col

    def action_open(self) -> None:
        self.post_message(self.CoreOpened(self.selected))

    def on_click(self, event: events.Click) -> None:
        core = self.core_at(event.x, event.y)
        if core is None or not 0 <= core < N_CORES:
            return
        self.selected = core
        if event.chain >= 2:
            self.post_message(self.CoreOpened(core))

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()


def legend_text(
    metrics: ChipMetrics, metric_key: str, scales: Mapping[str, tuple[float, float]] = SCALES
) -> Text:
    """The legend: the colour ramp with its (absolute) scale, the unknown colour, how many
    cores lie outside the scale, and the source run."""
    metric = METRIC_BY_KEY[metric_key]
    values = metrics.values[metric_key]
    span = scales.get(metric_key) or value_range(values)
    text = Text()
    text.append(metric.title, style="bold")
    if metric.units and metric.units != "1":
        text.append(f" [{metric.units}]")
    text.append("\n")
    if metric.categorical:
        text.append("  ", Style(bgcolor=core_colour(metric, 1.0, (0, 1))))
        text.append(" yes  ")
        text.append("  ", Style(bgcolor=core_colour(metric, 0.0, (0, 1))))
        text.append(" no  ")
    elif span is not None:
        low, high = span
        first, last = (low, high) if metric.low_is_good else (high, low)
        text.append(f"{format_value(metric, first)} ")
        for step in range(12):
            text.append(" ", Style(bgcolor=ramp_colour(step / 11)))
        text.append(f" {format_value(metric, last)}  ")
        fixed = "fixed scale" if metric_key in scales else "scale of these values"
        text.append(f"(good → bad, {fixed})  ", style="dim")
        finite = values[np.isfinite(values)]
        outside = int(np.count_nonzero((finite < low) | (finite > high)))
        if metric_key in scales and outside:
            text.append(f"{outside} outside: end colours  ", style="bold yellow")
    text.append("  ", Style(bgcolor=UNKNOWN))
    text.append(" unknown")
    known = int(np.isfinite(values).sum())
    source = metrics.sources.get(metric_key)
    text.append(f"\n{known}/{N_CORES} cores known")
    if source:
        text.append(f"; latest from {source}", style="dim")
    if metric_key == "programmed" and metrics.ledger_cores:
        if not metrics.ledger_checked:
            text.append("; per ledger, not checked on the chip", style="bold yellow")
        elif metrics.ledger_mismatched:
            text.append(
                f"; {metrics.ledger_mismatched} core(s) where the chip does not match the "
                "ledger: not shown programmed",
                style="bold yellow",
            )
        else:
            text.append("; checked on the chip", style="dim")
    dropped = metrics.invalidated.get(metric_key, 0)
    if dropped:
        text.append(
            f"; {dropped} value(s) dropped: the ledger says those cores were rewritten since",
            style="bold yellow",
        )
    return text
