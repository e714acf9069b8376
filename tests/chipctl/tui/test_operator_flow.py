"""A whole operator session on the simulated station, driven only by key presses: connect, an
interlock refusal, power up (the status bar's rails change live), program a core, calibrate
with reference programming on that core (asked, refused: the conductances stay), reprogram
after a yes and abort midway (core detail flags the aborted run), disconnect."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from textual.widgets import Input, TabbedContent

from chipctl.runfile import RunFile
from chipctl.station import default_station
from chipctl.tui import data
from chipctl.tui.app import ChipctlApp
from chipctl.tui.screens.confirm import ConfirmOverwrite
from chipctl.tui.screens.core_detail import CoreDetailView
from chipctl.tui.screens.procedures import ProceduresView
from chipctl.tui.screens.runs import RunsView
from chipctl.tui.screens.station import StationView
from chipctl.tui.widgets.status_bar import StatusBar

from .conftest import make_weights, wait_until
from .keys import choose_procedure, switch_to, type_into


def core_counts(app: ChipctlApp, core: int) -> np.ndarray:
    """Every device of ``core`` read back once (verify reads)."""
    assert app.opened is not None
    board = app.opened.board
    rows, cols, devices = np.indices(board.geometry.device_shape).reshape(3, -1)
    return np.asarray(board.verify_read(core, rows, cols, devices), np.float64)


@pytest.mark.slow
async def test_operator_flow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "runs"
    monkeypatch.chdir(tmp_path)  # a short weights name to type (each key press ~0.15 s)
    weights = make_weights(Path("w.npy"))
    # Rails ramped at 2 V/s (the default station: 10 V/s) so the power-up lasts seconds: at
    # 4 V/s a loaded CI machine once sampled no current during it.
    station = default_station()
    station = replace(station, limits=replace(station.limits, ramp_rate_v_per_s=2.0))
    app = ChipctlApp(station, data_dir=data_dir, poll_interval_s=0.1)
    async with app.run_test(size=(120, 40)) as pilot:
        bar = app.query_one(StatusBar)
        assert "not connected" in str(bar.render())
        await pilot.press("c")
        await wait_until(pilot, lambda: app.connected and bar.readings is not None)
        assert "SIM-HERMES-0001" in str(bar.render())

        # Programming with the rails off: refused before a run file exists, naming the rail.
        await choose_procedure(app, pilot, "program")
        await type_into(app, pilot, "weights", str(weights))
        await type_into(app, pilot, "cores", "0")
        await pilot.press("f9")
        await wait_until(pilot, lambda: bool(app.last_refusal) and not app.running)
        assert "rail vdd is off (reads 0.000 V" in app.last_refusal
        assert not list(data_dir.glob("*.h5"))

        # Power up: the status bar's rail currents change while the run ramps them.
        seen: set[tuple[float, ...]] = set()

        def note_rails() -> bool:
            if app.running == "power_up" and bar.readings and bar.readings.rails:
                seen.add(tuple(round((r.current_a or 0) * 1e3) for r in bar.readings.rails))
            return app.last_summary is not None and not app.running

        await pilot.press("f2")
        pressing = asyncio.ensure_future(pilot.press("u"))  # press() returns when idle
        await wait_until(pilot, note_rails)
        await pressing
        assert app.last_summary is not None and app.last_summary.status == "success"
        assert len(seen) >= 2, f"rail currents (mA) seen during power-up: {seen}"
        await wait_until(pilot, lambda: "vdd 0.8" in str(bar.render()))

        # Program core 0: the form kept what was typed before the refusal.
        await pilot.press("f5")
        await pilot.pause()
        powered = app.last_summary
        await pilot.press("f9")
        await wait_until(pilot, lambda: app.last_summary is not powered and not app.running, 60)
        programmed = app.last_summary
        assert programmed is not None and programmed.status == "success"
        # The run wrote cores: the ledger is checked against the chip again, and matches.
        await wait_until(pilot, lambda: (app.chip_verdicts or {}).get(0) == data.MATCHES)
        before = core_counts(app, 0)

        # Calibrate with reference programming on core 0: asked, refused, nothing written.
        await choose_procedure(app, pilot, "calibrate")
        await type_into(app, pilot, "cores", "0")
        await switch_to(app, pilot, "program_reference", True)
        await type_into(app, pilot, "n_inputs", "256")
        await pilot.press("f9")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmOverwrite))
        question = app.screen
        assert isinstance(question, ConfirmOverwrite)
        assert question.holdings.startswith("core 0 holds weights sha256:")
        assert str(programmed.path) in question.holdings
        await pilot.press("n")
        await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmOverwrite))
        await app.workers.wait_for_complete()
        assert not app.running and not list(data_dir.glob("calibrate-*.h5"))
        after = core_counts(app, 0)
        assert np.corrcoef(before, after)[0, 1] > 0.99, "core 0's conductances changed"

        # Reprogram cores 0-15 one at a time: asked, yes; abort once the first rows are in.
        await choose_procedure(app, pilot, "program")
        await type_into(app, pilot, "cores", "0-15")
        await type_into(app, pilot, "cores_per_group", "1")
        await pilot.press("f9")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmOverwrite))
        pressing = asyncio.ensure_future(pilot.press("y"))
        await wait_until(pilot, lambda: app.running == "program" and bar.run is not None)
        live = app.query_one(ProceduresView).live
        await wait_until(pilot, lambda: len(live.y) >= 3 and bool(bar.run and bar.run.total), 60)
        await pilot.press("f8")
        await wait_until(pilot, lambda: not app.running, 60)
        await pressing
        aborted = app.last_summary
        assert aborted is not None and aborted.status == "aborted"
        with RunFile.open(aborted.path) as run:
            assert run.status == "aborted"
        assert app.opened is not None
        assert not app.opened.board.status().status_register & 0x2, "write heads left on"
        assert "ETA" not in str(app.query_one("#run-rate").render())
        # The runs list caught up by itself (no r pressed).
        runs = app.query_one(RunsView)
        await wait_until(
            pilot,
            lambda: any(e.path == aborted.path and e.status == "aborted" for e in runs.entries),
        )

        # Core detail of core 0 flags the aborted run: as the source of its program figures if
        # it got that far on core 0, else as the run that rewrote the core since (ledger).
        await pilot.press("f4")
        view = app.query_one(CoreDetailView)
        title = app.query_one("#core-title")

        def flagged() -> bool:
            source = view.detail.sources.get("program") if view.detail else None
            return bool(source and aborted.path.name in source.text(0.0))

        await wait_until(pilot, flagged)
        await pilot.pause()
        assert app.query_one(TabbedContent).active == "core-detail"
        shown = str(title.render())
        assert aborted.path.name in shown and ("ABORTED" in shown or "run aborted" in shown)

        await pilot.press("f2", "x")
        await wait_until(pilot, lambda: not app.connected, timeout_s=30)
        await app.workers.wait_for_complete()
        assert app.query_one(StationView).readings is None
    procedures = sorted(RunFile.open(p).procedure for p in data_dir.glob("*.h5"))
    assert procedures == ["power_down", "power_up", "program", "program"]


@pytest.mark.slow
async def test_digits_never_switch_screens_or_leave_a_field(tmp_path: Path) -> None:
    """The trap of the old 1…5 keys: a digit meant to switch screens typed into the field."""
    app = ChipctlApp(data_dir=tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        tabs = app.query_one(TabbedContent)
        await choose_procedure(app, pilot, "program")
        await type_into(app, pilot, "cores", "7")
        field = app.focused
        assert isinstance(field, Input) and field.value == "7"
        await pilot.press("2", "f3")  # a digit types; F3 switches
        await pilot.pause()
        assert tabs.active == "chip-map" and field.value == "72"
        await pilot.press("4")  # outside a field a digit says how to switch, and stays
        await pilot.pause()
        assert tabs.active == "chip-map" and field.value == "72"
        assert any("F2…F6" in n.message for n in app._notifications)
        await pilot.press("alt+4")
        await pilot.pause()
        assert tabs.active == "procedures"
        await pilot.press("alt+5", "alt+1")
        await pilot.pause()
        assert tabs.active == "station" and field.value == "72"
