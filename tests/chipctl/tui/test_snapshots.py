"""SVG snapshots of the screens at 80×24, 100×30 and 160×50, disconnected and during a run
(``--snapshot-update`` to accept changes).

Volatile text is pinned: the subtitle (it names the temporary data directory) is fixed, the
clocks that ages, rates and ETAs are measured against are fixed, and the chip ledger is a fresh
one. "During a run" is the state the app's messages set while a program run goes on: a fixed
station reading (rails on), the run's Start, live rows and Progress records; the live
behaviour itself is tested by the Pilot tests of test_operator_flow.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from textual.pilot import Pilot

from chipctl.tui.app import ChipctlApp
from chipctl.tui.data import RailReading, StationReadings
from chipctl.tui.screens.chip_map import ChipMapView
from chipctl.tui.screens.core_detail import CoreDetailView
from chipctl.tui.screens.procedures import ProceduresView
from chipctl.tui.screens.station import StationView
from chipctl.tui.widgets.status_bar import StatusBar
from procedures.base import Data, Progress, Start, StreamSpec

from .keys import choose_procedure

FIXTURE_TIME = 1_700_000_000 + 3 * 3600
"""'Now' for the ages shown (the fixture's run files are dated 1_700_000_000 + k s)."""


@pytest.fixture(autouse=True)
def pinned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh, empty chip ledger and a fixed clock for the ages of core detail."""
    monkeypatch.setenv("CHIPCTL_CALIBRATION_DIR", str(tmp_path / "calibration"))
    monkeypatch.setattr(CoreDetailView, "now", staticmethod(lambda: float(FIXTURE_TIME)))
    monkeypatch.setattr(ChipMapView, "now", staticmethod(lambda: float(FIXTURE_TIME)))
    yield


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


READINGS = StationReadings(
    board_id="SIM-BOARD-0001",
    firmware="sim-1.0",
    chip_id="SIM-HERMES-0001",
    station_chip_id="SIM-HERMES-0001",
    board_url="mockchip://?seed=1",
    link_open=True,
    link_stats={"requests": 1234, "replies": 1234},
    board_errors=(),
    write_heads=True,
    die_c=31.25,
    rails=(
        RailReading("vdd", 1, 0.8, True, 0.8001, 0.40012),
        RailReading("vddio", 2, 1.8, True, 1.7998, 0.04999),
        RailReading("vpcm", 3, 3.0, True, 3.0002, 0.02001),
    ),
    chuck_c=25.02,
    window_c=(15.0, 60.0),
)


async def during_a_program_run(pilot: Pilot[None]) -> None:
    """Put the app in the state a program run on cores 0-7 sets, 12 of 32 units done."""
    app = pilot.app
    assert isinstance(app, ChipctlApp)
    await settle()(pilot)
    view = app.query_one(ProceduresView)
    clock = iter([0.0, 8.0, 16.0, 24.0])
    view.clock = lambda: next(clock, 24.0)
    app.connected = True
    app.running = "program"
    app.query_one(StationView).readings = READINGS
    app.query_one(StationView).state = "connected: SIM-BOARD-0001 on mockchip://?seed=1"
    app.query_one(StatusBar).readings = READINGS
    streams = (StreamSpec("iteration", (), "i4", "1"), StreamSpec("rms_error", (), "f8", "counts"))
    start = Start("program", {}, streams, ("rms_error", "iteration"), {}, 32)
    app.post_message(app.RunRecord(start))
    for step in range(12):
        app.post_message(app.RunRecord(Data("iteration", step)))
        app.post_message(app.RunRecord(Data("rms_error", float(40.0 * np.exp(-step / 3)))))
    for done in (4, 8, 12):
        app.post_message(app.RunRecord(Progress(done, 32, f"core group {done // 4}")))
    await pilot.pause(0.5)


def test_station_80x24(snap_compare: Any, tmp_path: Path) -> None:
    app = ChipctlApp(data_dir=tmp_path)
    assert snap_compare(app, terminal_size=(80, 24), run_before=settle())


def test_chip_map(snap_compare: Any, run_data: Path) -> None:
    app = ChipctlApp(data_dir=run_data)
    assert snap_compare(app, terminal_size=(100, 30), run_before=settle("f3", "m", "m", "right"))


def test_core_detail(snap_compare: Any, run_data: Path) -> None:
    app = ChipctlApp(data_dir=run_data)
    assert snap_compare(app, terminal_size=(160, 50), run_before=settle("f3", "enter"))


def test_procedures_drift_form(snap_compare: Any, tmp_path: Path) -> None:
    app = ChipctlApp(data_dir=tmp_path)

    async def run_before(pilot: Pilot[None]) -> None:
        await settle()(pilot)
        await choose_procedure(pilot.app, pilot, "drift")  # type: ignore[arg-type]
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=(100, 30), run_before=run_before)


def test_help_80x24(snap_compare: Any, tmp_path: Path) -> None:
    app = ChipctlApp(data_dir=tmp_path)
    assert snap_compare(app, terminal_size=(80, 24), run_before=settle("question_mark"))


def test_running_station_80x24(snap_compare: Any, tmp_path: Path) -> None:
    app = ChipctlApp(data_dir=tmp_path)
    assert snap_compare(app, terminal_size=(80, 24), run_before=during_a_program_run)


def test_running_procedures_100x30(snap_compare: Any, tmp_path: Path) -> None:
    app = ChipctlApp(data_dir=tmp_path)

    async def run_before(pilot: Pilot[None]) -> None:
        await pilot.press("f5")
        await during_a_program_run(pilot)

    assert snap_compare(app, terminal_size=(100, 30), run_before=run_before)


def test_running_procedures_160x50(snap_compare: Any, tmp_path: Path) -> None:
    app = ChipctlApp(data_dir=tmp_path)

    async def run_before(pilot: Pilot[None]) -> None:
        await pilot.press("f5")
        await during_a_program_run(pilot)

    assert snap_compare(app, terminal_size=(160, 50), run_before=run_before)
