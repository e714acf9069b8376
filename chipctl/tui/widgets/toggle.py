"""An on/off field that says its state in words: ``[on]`` / ``[off]`` (never by colour alone)."""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget


class Toggle(Widget, can_focus=True):
    """``[on]`` or ``[off]``; Space, Enter or a click flips it and posts :class:`Changed`."""

    BINDINGS = [Binding("space,enter", "flip", "Toggle", show=False)]

    DEFAULT_CSS = """
    Toggle { width: 7; height: 1; }
    Toggle:focus { background: $accent 40%; }
    """

    value: reactive[bool] = reactive(False)

    class Changed(Message):
        """The toggle was flipped to ``value``."""

        def __init__(self, toggle: Toggle, value: bool) -> None:
            super().__init__()
            self.toggle = toggle
            self.value = value

        @property
        def control(self) -> Toggle:
            return self.toggle

    def __init__(
        self,
        value: bool = False,
        *,
        name: str | None = None,
        id: str | None = None,  # noqa: A002 (Textual's name for it)
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.set_reactive(Toggle.value, bool(value))

    def render(self) -> Text:
        if self.value:
            return Text("[on]", style="bold green")
        return Text("[off]", style="dim")

    def watch_value(self, value: bool) -> None:
        self.post_message(self.Changed(self, value))

    def action_flip(self) -> None:
        self.value = not self.value

    def on_click(self, event: events.Click) -> None:
        event.stop()
        self.action_flip()
