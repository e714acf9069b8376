"""Asking the operator before a run overwrites cores that hold something (the chip ledger)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmOverwrite(ModalScreen[bool]):
    """Dismissed with True (overwrite) or False (keep the cores; the default, also Esc).

    Args:
        procedure: the run that would overwrite the cores.
        holdings: what the cores hold, from the ledger (:func:`chipctl.ledger.describe_holdings`).
    """

    BINDINGS = [
        Binding("y", "answer(True)", "Overwrite"),
        Binding("n", "answer(False)", "Keep"),
        Binding("escape", "answer(False)", "Keep", show=False),
    ]

    DEFAULT_CSS = """
    ConfirmOverwrite { align: center middle; }
    ConfirmOverwrite > Vertical {
        width: 90%; max-width: 90; height: auto; border: thick $error; background: $surface;
        padding: 0 1;
    }
    ConfirmOverwrite #confirm-text { height: auto; margin-bottom: 1; }
    ConfirmOverwrite #confirm-buttons { height: 1; align-horizontal: right; }
    ConfirmOverwrite Button { margin-left: 2; }
    """

    def __init__(self, procedure: str, holdings: str) -> None:
        super().__init__()
        self.procedure = procedure
        self.holdings = holdings

    def compose(self) -> ComposeResult:
        text = Text(f"{self.procedure} would overwrite cores that hold data\n\n", style="bold")
        text.append(self.holdings)
        text.append("\n\nThe chip ledger recorded this and the chip still shows it. ", style="dim")
        text.append("Overwrite them?", style="bold")
        with Vertical():
            yield Static(text, id="confirm-text")
            with Horizontal(id="confirm-buttons"):
                yield Button("Keep them  n", id="keep", variant="primary", compact=True)
                yield Button("Overwrite  y", id="overwrite", variant="error", compact=True)

    def on_mount(self) -> None:
        self.query_one("#keep", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "overwrite")

    def action_answer(self, overwrite: bool) -> None:
        self.dismiss(overwrite)
