"""A whole operator session on the simulated station, through the keys and forms of the TUI:
connect, power up, program a core, calibrate, a short drift run, abort a run midway, open it,
disconnect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from chipctl.runfile import RunFile
from chipctl.tui.app import ChipctlApp
from chipctl.tui.screens.procedures import ProceduresView
from chipctl.tui.screens.runs import RunsView
from chipctl.tui.screens.station import StationView

from .conftest import make_weights, wait_until


async def run_from_form(
    app: ChipctlApp, pilot: Pilot[None], procedure: str, values: dict[str, Any]
) -> str:
    """Fill in the form of ``procedure``, press F5, wait for the end; the run's status."""
    await pilot.press("4")
    view = app.query_one(ProceduresView)
    view.select(procedure)
    await pilot.pause()
    for name, value in values.items():
        view.form().set_value(name, value)
    await pilot.pause()
    assert not view.form().errors()
    before = app.last_summary
    await pilot.press("f5")
    await wait_until(pilot, lambda: app.last_summary is not before and not app.running, 60)
    assert app.last_summary is not None
    return app.last_summary.status


async def test_operator_flow(tmp_path: Path) -> None:
    data_dir = tmp_path / "runs"
    weights = make_weights(tmp_path / "weights.npy")
    app = ChipctlApp(data_dir=data_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        station = app.query_one(StationView)
        await pilot.press("c")
        await wait_until(pilot, lambda: app.connected)
        await wait_until(pilot, lambda: station.readings is not None)
        assert station.readings is not None and station.readings.chip_id == "SIM-HERMES-0001"

        # Programming is refused by the interlock while the rails are off.
        status = await run_from_form(app, pilot, "program", {"weights": weights, "cores": "0"})
        assert status == "failed" and "SafetyLimitError" in app.last_summary.reason  # type: ignore[union-attr]

        before = app.last_summary
        await pilot.press("1", "u")
        await wait_until(pilot, lambda: app.last_summary is not before and not app.running)
        assert app.last_summary is not None and app.last_summary.status == "success"
        await wait_until(
            pilot,
            lambda: (
                bool(station.readings and station.readings.rails)
                and all(rail.enabled for rail in station.readings.rails)
            ),  # type: ignore[union-attr]
        )

        assert await run_from_form(app, pilot, "program", {"weights": weights}) == "success"
        assert app.query_one(ProceduresView).live.y, "the live plot got convergence rows"
        calibrate = {
            "cores": "2", "program_reference": True, "n_inputs": "256", "n_validation": "128"
        }  # fmt: skip
        assert await run_from_form(app, pilot, "calibrate", calibrate) == "success"
        drift = {"cores": "0", "until": "1000", "points": "5", "sample": "64"}
        assert await run_from_form(app, pilot, "drift", drift) == "success"

        # Abort a long program run once its first iterations are in.
        view = app.query_one(ProceduresView)
        view.select("program")
        await pilot.pause()
        form = view.form()
        form.set_value("weights", weights)
        form.set_value("cores", "0-15")
        form.set_value("cores_per_group", "1")
        await pilot.pause()
        await pilot.press("f5")
        await wait_until(pilot, lambda: app.running == "program" and len(view.live.y) >= 3)
        await pilot.press("f8")
        await wait_until(pilot, lambda: not app.running, timeout_s=60)
        summary = app.last_summary
        assert summary is not None and summary.status == "aborted"
        with RunFile.open(summary.path) as run:
            assert run.status == "aborted"
        assert app.opened is not None
        assert not app.opened.board.status().status_register & 0x2, "write heads left on"

        # Open the aborted run on the Runs screen.
        await pilot.press("5")
        await app.workers.wait_for_complete()
        await pilot.pause()
        app.open_run(summary.path)
        runs = app.query_one(RunsView)
        await wait_until(pilot, lambda: runs.preview is not None)
        assert runs.preview is not None and runs.preview.status == "aborted"
        assert runs.preview.plot is not None and runs.preview.plot.x.size >= 3

        await pilot.press("1", "x")
        await wait_until(pilot, lambda: not app.connected, timeout_s=30)
        await app.workers.wait_for_complete()
    procedures = sorted(RunFile.open(p).procedure for p in data_dir.glob("*.h5"))
    assert procedures.count("power_down") == 1 and procedures.count("program") == 3
