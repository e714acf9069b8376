"""Core detail screen: conductance and error histograms, yield map, calibration, drift."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Static
from textual_plotext import PlotextPlot

from chipctl.tui.data import YIELD_CODES, CoreDetail, Series
from chipctl.tui.widgets.plots import draw_histogram, draw_series

RESET_BELOW_COUNTS = 5.0
"""Conductances under 5 counts are the RESET population (the yield cut |G_RESET| < 5 counts,
chip.md [LG §IV]); the histogram counts them apart."""

YIELD_COLOURS = ("#1a9850", "#d73027", "#fc8d59", "#fee08b", "#7b3294")
"""Colour per yield code (ok, stuck-high, weak, unconverged, no fit)."""


def yield_map_text(codes: np.ndarray | None, width: int = 32, height: int = 8) -> Text:
    """The (256, 256) yield map shrunk to ``width`` × 2·``height`` blocks (worst code wins),
    drawn with half blocks, and a count per code."""
    text = Text()
    if codes is None:
        text.append("no program run has this core", style="dim")
        return text
    rows, cols = codes.shape
    block_r, block_c = max(1, rows // (2 * height)), max(1, cols // width)
    shrunk = codes[: block_r * 2 * height, : block_c * width]
    shrunk = shrunk.reshape(2 * height, block_r, width, block_c).max(axis=(1, 3))
    for line in range(height):
        for col in range(width):
            top, bottom = int(shrunk[2 * line, col]), int(shrunk[2 * line + 1, col])
            text.append(
                "▀", Style(color=YIELD_COLOURS[min(top, 4)], bgcolor=YIELD_COLOURS[min(bottom, 4)])
            )
        text.append("\n")
    counts = np.bincount(codes.reshape(-1), minlength=len(YIELD_CODES))
    for code, name in enumerate(YIELD_CODES):
        text.append("■", Style(color=YIELD_COLOURS[code]))
        text.append(f" {name} {counts[code]}  ")
    return text


def coefficients_table(detail: CoreDetail) -> Table:
    """Mean/min/max of each LDPU coefficient of the core's latest calibration."""
    title = "Calibration"
    if detail.calibration_set:
        title += f" {detail.calibration_set}"
    table = Table(title=title, expand=True, title_justify="left")
    for column in ("coefficient", "mean", "min", "max"):
        table.add_column(column, justify="left" if column == "coefficient" else "right")
    if not detail.coefficients:
        table.add_row("no calibrate run has this core", "", "", "")
    for name, values in detail.coefficients.items():
        table.add_row(name, f"{values.mean():.4g}", f"{values.min():.4g}", f"{values.max():.4g}")
    return table


def sources_text(detail: CoreDetail, now: float, chip_state: str = "") -> Text:
    """``Core 0``, what the chip ledger says it holds and whether the chip matches
    (``chip_state``; one that does not match in red), and per section the run it comes from
    (status, age; aborted, failed and stale sources in red)."""
    text = Text(f"Core {detail.core}", style="bold")
    if chip_state:
        text.append("\n  holds: ", style="bold")
        text.append(chip_state, style="bold red" if "does not match" in chip_state else "")
    if not detail.sources:
        text.append("  no run has this core", style="dim")
    for section, source in detail.sources.items():
        bad = source.status != "success" or bool(source.stale)
        text.append(f"\n  {section}: ", style="bold")
        text.append(source.text(now), style="bold red" if bad else "")
    return text


class CoreDetailView(Vertical, can_focus=True):
    """Plots and tables of ``detail`` (set by the app); ``[``/``]`` ask for another core."""

    BINDINGS = [
        Binding("left_square_bracket", "step(-1)", "Previous core"),
        Binding("right_square_bracket", "step(1)", "Next core"),
        Binding("down", "scroll_down", "Scroll", show=False),
        Binding("up", "scroll_up", "Scroll", show=False),
        Binding("pagedown", "page_down", "Page", show=False),
        Binding("pageup", "page_up", "Page", show=False),
    ]

    detail: reactive[CoreDetail | None] = reactive(None)
    chip_state: reactive[str] = reactive("")
    """What the chip ledger says the core holds and whether the chip matches (set by the app:
    :func:`chipctl.tui.data.chip_state_text`)."""
    now: Callable[[], float] = staticmethod(time.time)
    """The clock ages are measured against (snapshot tests pin it)."""

    class CoreRequested(Message):
        """The operator asked for the detail of ``core``."""

        def __init__(self, core: int) -> None:
            super().__init__()
            self.core = core

    def compose(self) -> ComposeResult:
        yield Static("no core selected: pick one on the chip map", id="core-title")
        with Grid(id="core-grid"):
            yield PlotextPlot(id="plot-conductance")
            yield PlotextPlot(id="plot-error")
            yield Static(id="core-yield", classes="panel")
            yield PlotextPlot(id="plot-calibration")
            yield PlotextPlot(id="plot-drift")
            yield Static(id="core-coefficients", classes="panel")

    def on_mount(self) -> None:
        self.watch_detail(self.detail)

    def action_step(self, delta: int) -> None:
        core = 0 if self.detail is None else (self.detail.core + delta) % 64
        self.post_message(self.CoreRequested(core))

    def watch_chip_state(self) -> None:
        if self.children and self.detail is not None:
            self._title(self.detail)

    def _title(self, detail: CoreDetail) -> None:
        title = sources_text(detail, self.now(), self.chip_state)
        self.query_one("#core-title", Static).update(title)

    def watch_detail(self, detail: CoreDetail | None) -> None:
        if not self.children:
            return
        blank = detail or CoreDetail(core=-1)
        if detail is not None:
            self._title(detail)
        draw_histogram(
            self.query_one("#plot-conductance", PlotextPlot),
            blank.conductance,
            "G",
            "ADC counts (log count axis)",
            apart_below=RESET_BELOW_COUNTS,
            apart_name="RESET",
        )
        draw_histogram(
            self.query_one("#plot-error", PlotextPlot),
            blank.cell_error,
            "Cell error",
            "ADC counts (log count axis)",
        )
        self.query_one("#core-yield", Static).update(yield_map_text(blank.yield_map))
        gains = [blank.coefficients[k] for k in ("gain_pos", "gain_neg") if k in blank.coefficients]
        series = None
        if gains:
            x = np.arange(len(gains[0]), dtype=np.float64)
            series = Series(x, tuple(gains), ("gain +", "gain −"), "output row", "LDPU gain")
        draw_series(self.query_one("#plot-calibration", PlotextPlot), series, "LDPU gains")
        draw_series(self.query_one("#plot-drift", PlotextPlot), blank.drift, "Drift")
        self.query_one("#core-coefficients", Static).update(coefficients_table(blank))
