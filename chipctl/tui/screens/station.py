"""Station screen: identities, link counters, rails, chuck; connect and power buttons."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Button, Static

from chipctl.tui.data import StationReadings

LINK_COUNTERS = (
    "requests",
    "replies",
    "retries",
    "timeouts",
    "crc_naks",
    "corrupt_replies",
    "stale_replies",
    "garbage_bytes",
)
"""Link counters shown, in order (error counters after the first two)."""


class StationView(Vertical, can_focus=True):
    """Shows ``readings``; posts :class:`StationView.Action` for the buttons and keys.

    Attributes (set by the app): ``readings``, ``connected``, ``busy`` (a run or a
    connect/disconnect is going on) and ``state`` (a one-line status text).
    """

    BINDINGS = [
        Binding("c", "request('connect')", "Connect"),
        Binding("x", "request('disconnect')", "Disconnect"),
        Binding("u", "request('power_up')", "Power up"),
        Binding("w", "request('power_down')", "Power down"),
    ]

    readings: reactive[StationReadings | None] = reactive(None)
    connected: reactive[bool] = reactive(False)
    busy: reactive[bool] = reactive(False)
    state: reactive[str] = reactive("not connected")

    class Action(Message):
        """The operator asked for ``action``: connect, disconnect, power_up or power_down."""

        def __init__(self, action: str) -> None:
            super().__init__()
            self.action = action

    def compose(self) -> ComposeResult:
        with Horizontal(id="station-buttons"):
            yield Button("Connect c", id="connect", variant="primary", compact=True)
            yield Button("Disconnect x", id="disconnect", compact=True)
            yield Button("Power up u", id="power_up", variant="success", compact=True)
            yield Button("Power down w", id="power_down", variant="warning", compact=True)
        yield Static(id="station-state")
        with Horizontal(id="station-panels"):
            yield Static(id="station-identity", classes="panel")
            yield Static(id="station-link", classes="panel")
        yield Static(id="station-rails", classes="panel")

    def on_mount(self) -> None:
        titles = {"identity": "Board", "link": "Link", "rails": "Rails and chuck"}
        for name, title in titles.items():
            self.query_one(f"#station-{name}", Static).border_title = title
        self._update()

    def watch_readings(self) -> None:
        self._update()

    def watch_connected(self) -> None:
        self._update()

    def watch_busy(self) -> None:
        self._update()

    def watch_state(self) -> None:
        self._update()

    def action_request(self, action: str) -> None:
        button = self.query_one(f"#{action}", Button)
        if not button.disabled:
            self.post_message(self.Action(action))
            return
        self.notify(f"{action.replace('_', ' ')} is disabled: {self.why_disabled(action)}")

    def why_disabled(self, action: str) -> str:
        """Why the button of ``action`` is disabled now (for the toast a key press gets)."""
        if self.busy:
            return "wait for the running procedure (or abort it: F5, F8)"
        if action == "connect":
            return "already connected"
        if not self.connected:
            return "connect first (c)"
        return "the rails are already on"

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id:
            self.post_message(self.Action(event.button.id))

    def _update(self) -> None:
        if not self.children:
            return
        rails_on = bool(
            self.readings
            and self.readings.rails
            and all(rail.enabled for rail in self.readings.rails)
        )
        self.query_one("#connect", Button).disabled = self.connected or self.busy
        self.query_one("#disconnect", Button).disabled = not self.connected or self.busy
        self.query_one("#power_up", Button).disabled = not self.connected or self.busy or rails_on
        self.query_one("#power_down", Button).disabled = not self.connected or self.busy
        self.query_one("#station-state", Static).update(Text(self.state))
        readings = self.readings if self.connected else None
        self.query_one("#station-identity", Static).update(_identity(readings))
        self.query_one("#station-link", Static).update(_link(readings))
        self.query_one("#station-rails", Static).update(_rails(readings))


def _identity(readings: StationReadings | None) -> Table:
    table = Table(box=None, show_header=False, expand=True, padding=(0, 1))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    if readings is None:
        table.add_row("board", "–")
        return table
    chip = Text(readings.chip_id)
    if readings.chip_id != readings.station_chip_id:
        chip.append(f"  (station file: {readings.station_chip_id})", style="bold red")
    table.add_row("board id", readings.board_id)
    table.add_row("firmware", readings.firmware)
    table.add_row("chip id", chip)
    table.add_row("url", readings.board_url)
    table.add_row("write heads", "ENABLED" if readings.write_heads else "off (safe)")
    die = "–" if readings.die_c is None else f"{readings.die_c:.2f} °C"
    table.add_row("die temp.", die)
    return table


def _link(readings: StationReadings | None) -> Table:
    table = Table(box=None, show_header=False, expand=True, padding=(0, 1))
    for style, justify in (("bold", "left"), ("", "right"), ("bold", "left"), ("", "right")):
        table.add_column(style=style, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    if readings is None:
        table.add_row("state", "closed", "", "")
        return table
    state = Text("open", style="green") if readings.link_open else Text("closed", style="red")
    errors = ", ".join(readings.board_errors) or "none"
    cells: list[tuple[str, Text]] = [
        ("state", state),
        ("board errors", Text(errors, style="red" if readings.board_errors else "")),
    ]
    for key in LINK_COUNTERS:
        value = readings.link_stats.get(key, 0)
        style = "red" if value and key not in ("requests", "replies") else ""
        cells.append((key.replace("_", " "), Text(str(value), style=style)))
    for first, second in zip(cells[::2], cells[1::2], strict=False):
        table.add_row(first[0], first[1], second[0], second[1])
    return table


def _rails(readings: StationReadings | None) -> Table:
    table = Table(box=None, expand=True, padding=(0, 1), header_style="bold")
    for column in ("rail", "output", "state", "nominal", "voltage", "current"):
        table.add_column(column, justify="left" if column in ("rail", "state") else "right")
    if readings is None:
        return table
    if readings.rails is None:
        table.add_row("(instruments busy: a run is using them)", "", "", "", "", "")
    else:
        for rail in readings.rails:
            state = Text("on", style="green") if rail.enabled else Text("off", style="dim")
            table.add_row(
                rail.name,
                str(rail.channel),
                state,
                f"{rail.nominal_v:.3f} V",
                "–" if rail.voltage_v is None else f"{rail.voltage_v:.4f} V",
                "–" if rail.current_a is None else f"{rail.current_a * 1e3:.2f} mA",
            )
    low, high = readings.window_c
    if readings.chuck_c is None:
        chuck = "–"
        style = ""
    else:
        chuck = f"{readings.chuck_c:.2f} °C"
        style = "green" if low <= readings.chuck_c <= high else "bold red"
    table.add_row("chuck", "", Text(chuck, style=style), f"{low:g}…{high:g} °C", "", "")
    return table
