"""SVG snapshots of the main screens (``--snapshot-update`` to accept changes).

Volatile text is pinned: the subtitle (it names the temporary data directory) is fixed and no
station is connected, so no live counters or times appear.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from chipctl.tui.app import ChipctlApp
from chipctl.tui.screens.procedures import ProceduresView


def settle(*keys: str) -> Any:
    """A ``run_before`` that pins the subtitle, presses ``keys`` and waits for the workers."""

    async def run_before(pilot: Pilot[None]) -> None:
        pilot.app.sub_title = "SIM-HERMES-0001 — snapshot"
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        if keys:
            await pilot.press(*keys)
        await pilot.app.workers.wait_for_complete()
        await pilot.pause(0.3)

    return run_before


def test_station_80x24(snap_compare: Any, tmp_path: Path) -> None:
    app = ChipctlApp(data_dir=tmp_path)
    assert snap_compare(app, terminal_size=(80, 24), run_before=settle())


def test_chip_map(snap_compare: Any, run_data: Path) -> None:
    app = ChipctlApp(data_dir=run_data)
    assert snap_compare(app, terminal_size=(120, 40), run_before=settle("f3", "m", "m", "right"))


def test_core_detail(snap_compare: Any, run_data: Path) -> None:
    app = ChipctlApp(data_dir=run_data)
    assert snap_compare(app, terminal_size=(120, 40), run_before=settle("f3", "enter"))


def test_procedures_drift_form(snap_compare: Any, tmp_path: Path) -> None:
    app = ChipctlApp(data_dir=tmp_path)

    async def run_before(pilot: Pilot[None]) -> None:
        await settle("f5")(pilot)
        pilot.app.query_one(ProceduresView).select("drift")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)


def test_help_80x24(snap_compare: Any, tmp_path: Path) -> None:
    app = ChipctlApp(data_dir=tmp_path)
    assert snap_compare(app, terminal_size=(80, 24), run_before=settle("question_mark"))
