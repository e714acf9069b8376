"""The help screen: what each screen does and its keys."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# chipctl — bench operator TUI

| Key | Where | What |
|---|---|---|
| `F2`…`F6`, `Alt+1`…`5` | everywhere | Station, Chip map, Core detail, Procedures, Runs |
| `?` / `F1` | everywhere | this help (`Esc` closes it) |
| `Ctrl+Q` | everywhere | quit (a running procedure is stopped, rails ramped down) |
| `c` / `x` | Station | connect / disconnect (rails are ramped down first) |
| `u` / `w` | Station | power up / power down (the sequencing procedure) |
| arrows, mouse | Chip map | select a core |
| `Enter`, double click | Chip map | core detail |
| `m` | Chip map | next metric |
| `[` / `]` | Core detail | previous / next core |
| `F9` / `F8` | Procedures | start / abort the selected procedure |
| `Esc` | Procedures | leave the form (back to the procedure list) |
| `y` / `n` | overwrite question | overwrite the cores / keep them (`Esc`: keep) |
| `Enter` | Runs | open the run (followed live while it is written) |
| `r` | Runs | list the run files again |

**Procedures**: pick one on the left, fill in the form (units and limits under each field;
a red line says what is wrong), press `F9`. Array parameters take the path of a `.npy` file.
A run that would overwrite cores the chip ledger says hold weights asks first, naming the
cores and what they hold; `n` (the default) keeps them and writes nothing.
Abort stops the run at its next safe point: the procedure puts the board in its safe state
and the run file ends with status `aborted`.

The status bar under every screen shows the connection, board and chip, the rails (read
live, also during runs), the chuck against its window, the write heads and the running
procedure. Every run writes a run file into the data directory; the chip map and core detail
read the latest ones and say which. Digits never switch screens: they type into fields.
"""


class HelpScreen(ModalScreen[None]):
    """Key bindings and a short description of every screen."""

    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", show=False),
        Binding("f1", "dismiss", "Close", show=False),
    ]

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 90%; max-width: 100; height: 90%; border: thick $primary; background: $surface;
    }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Markdown(HELP)
