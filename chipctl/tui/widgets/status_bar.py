"""The status bar under every screen: connection, ids, rails, chuck, write heads, the run.

htop-style: always visible, two or three lines, never cropped (it wraps at segment boundaries
when the terminal is narrow). The app sets its attributes; it does no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from chipctl.tui.data import RailReading, StationReadings


@dataclass(frozen=True)
class RunState:
    """The running procedure as the status bar shows it."""

    procedure: str
    done: int = 0
    total: int = 0
    detail: str = ""
    """Rate and ETA (:func:`chipctl.tui.screens.procedures.rate_text`), or a phase."""


def rail_text(rail: RailReading) -> Text:
    """``vdd 0.800V 400.1mA`` (``off`` in dim when the output is disabled)."""
    text = Text(f"{rail.name} ", style="bold")
    if rail.voltage_v is None or rail.current_a is None:
        return text.append("–", style="dim")
    style = "" if rail.enabled else "dim"
    text.append(f"{rail.voltage_v:.3f}V {rail.current_a * 1e3:.1f}mA", style=style)
    if not rail.enabled:
        text.append(" off", style="dim")
    return text


def chuck_text(readings: StationReadings) -> Text:
    """``chuck 25.02°C (15…60)``, red outside the window."""
    low, high = readings.window_c
    text = Text("chuck ", style="bold")
    if readings.chuck_c is None:
        return text.append("–", style="dim")
    inside = low <= readings.chuck_c <= high
    text.append(f"{readings.chuck_c:.2f}°C", style="green" if inside else "bold red")
    return text.append(f" ({low:g}…{high:g})" if inside else f" OUTSIDE {low:g}…{high:g}")


def status_text(
    readings: StationReadings | None, connected: bool, run: RunState | None, url: str
) -> Text:
    """The whole bar as one text, its segments separated so a narrow terminal wraps between
    them (never inside a value)."""
    sep = Text("  │  ", style="dim")
    lines: list[Text] = []
    first = Text()
    if not connected or readings is None:
        first.append("○ not connected", style="bold red" if not connected else "yellow")
        first.append(f"  {url}", style="dim")
    else:
        first.append("● connected", style="bold green")
        first.append(f" {readings.board_id} · chip {readings.chip_id}")
        if readings.chip_id != readings.station_chip_id:
            first.append(f" (station file says {readings.station_chip_id})", style="bold red")
        first.append_text(sep)
        heads = Text("heads ", style="bold")
        heads.append(*(("ON", "bold red") if readings.write_heads else ("off", "green")))
        first.append_text(heads)
        first.append_text(sep)
        first.append_text(chuck_text(readings))
    lines.append(first)
    if connected and readings is not None and readings.rails:
        rails = Text()
        for k, rail in enumerate(readings.rails):
            if k:
                rails.append_text(sep)
            rails.append_text(rail_text(rail))
        lines.append(rails)
    running = Text()
    if run is None:
        running.append("idle", style="dim")
    else:
        running.append(f"▶ {run.procedure}", style="bold yellow")
        if run.total:
            running.append(f"  {run.done}/{run.total} ({run.done / max(run.total, 1):.0%})")
        if run.detail:
            running.append(f"  {run.detail}")
    lines.append(running)
    return Text("\n").join(lines)


class StatusBar(Static):
    """The bar; the app sets ``readings``, ``connected``, ``run`` and ``url``."""

    DEFAULT_CSS = """
    StatusBar {
        height: auto; padding: 0 1;
        background: $panel; border-top: hkey $primary-darken-2;
    }
    """

    readings: reactive[StationReadings | None] = reactive(None)
    connected: reactive[bool] = reactive(False)
    run: reactive[RunState | None] = reactive(None)
    url: reactive[str] = reactive("")

    def on_mount(self) -> None:
        self._render_bar()

    def watch_readings(self) -> None:
        self._render_bar()

    def watch_connected(self) -> None:
        self._render_bar()

    def watch_run(self) -> None:
        self._render_bar()

    def watch_url(self) -> None:
        self._render_bar()

    def _render_bar(self) -> None:
        self.update(status_text(self.readings, self.connected, self.run, self.url))
