"""Pilot tests of each screen without a station: chip map, core detail, procedures form, runs,
help; and the pure helpers behind them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from textual.widgets import DataTable, Input, Select, TabbedContent

from chipctl import catalog
from chipctl.ledger import Ledger
from chipctl.runner import run_procedure
from chipctl.station import default_station
from chipctl.tui.app import ChipctlApp
from chipctl.tui.data import load_chip_metrics, load_core_detail, read_run
from chipctl.tui.screens.chip_map import ChipMapView
from chipctl.tui.screens.core_detail import CoreDetailView
from chipctl.tui.screens.help import HelpScreen
from chipctl.tui.screens.procedures import LiveSignal, ProceduresView, rate_text
from chipctl.tui.screens.runs import RunsView
from chipctl.tui.widgets.chip_map import ChipMap
from chipctl.tui.widgets.parameter_form import check_text
from procedures.base import Data, Start, StreamSpec

from .conftest import make_weights, wait_until
from .keys import choose_procedure, switch_to, type_into


def test_metrics_come_from_the_latest_runs(run_data: Path) -> None:
    metrics = load_chip_metrics(run_data)
    assert metrics.value("programmed", 0) == 1 and metrics.value("programmed", 5) == 0
    assert 0.5 < metrics.value("yield", 1) <= 1
    assert metrics.value("mvm_error", 0) > 0 and math.isnan(metrics.value("mvm_error", 1))
    assert metrics.value("calibration_residual", 2) > 0
    assert math.isfinite(metrics.value("drift_compensation", 0))
    assert metrics.sources["mvm_error"] == "characterize-d.h5"


def test_core_detail_and_run_preview(run_data: Path) -> None:
    detail = load_core_detail(run_data, 0)
    assert detail.program_run == "program-a.h5" and detail.drift_run == "drift-c.h5"
    assert detail.yield_map is not None and detail.yield_map.shape == (256, 256)
    assert detail.drift is not None and len(detail.drift.x) == 5
    assert load_core_detail(run_data, 2).coefficients["gain_pos"].shape == (256,)
    preview = read_run(run_data / "drift-c.h5")
    assert preview.status == "success" and preview.plot is not None
    assert preview.plot.log_x and preview.plot.x_label.startswith("log10 time")


def test_form_validation_messages(tmp_path: Path) -> None:
    program = {p.name: p for p in catalog.procedure_class("program").parameters}
    assert check_text(program["weights"], "") == "required: path of a .npy file"
    assert "no such file" in check_text(program["weights"], str(tmp_path / "none.npy"))
    assert check_text(program["weights"], str(make_weights(tmp_path / "w.npy"))) == ""
    assert "above the maximum 1000" in check_text(program["max_iterations"], "5000")
    assert check_text(program["max_iterations"], "2.5") == "'2.5' is not a whole number"
    assert check_text(program["cores"], "0-3,8") == ""


def test_live_signal_and_rate() -> None:
    start = Start(
        "drift",
        {},
        (StreamSpec("time", (), "f8", "s"), StreamSpec("err", (2,), "f8", "1")),
        ("err", "time"),
        {},
        3,
    )
    live = LiveSignal.from_start(start)
    for t in (10.0, 100.0):
        live.add(Data("time", t))
        live.add(Data("err", np.array([1.0, 3.0])))
    assert live.curves() == [("err[0]", [1.0, 2.0], [1.0, 1.0]), ("err[1]", [1.0, 2.0], [3.0, 3.0])]
    assert live.points() == ([1.0, 2.0], [2.0, 2.0]) and live.x_label == "log10 time (s)"
    # infer: accuracy against drift time, one line per compensation (its plot_series).
    streams = tuple(
        StreamSpec(n, (), "f8", u)
        for n, u in (("drift_time", "s"), ("compensation", "1"), ("accuracy", "1"))
    )
    infer = LiveSignal.from_start(Start("infer", {}, streams, ("accuracy", "drift_time"), {}, 4))
    for t, comp, acc in ((60.0, 0, 0.9), (60.0, 1, 0.95), (3600.0, 0, 0.8), (3600.0, 1, 0.94)):
        for name, value in (("drift_time", t), ("compensation", comp), ("accuracy", acc)):
            infer.add(Data(name, value))
    lines = {label: (x, y) for label, x, y in infer.curves()}
    assert set(lines) == {"none", "gdc"} and lines["gdc"][1] == [0.95, 0.94]
    assert infer.x_label == "log10 drift_time (s)"
    # drift: the GDC error drawn with the uncompensated one.
    streams = (
        StreamSpec("time", (), "f8", "s"),
        StreamSpec("e", (), "f8", "1"),
        StreamSpec("e_gdc", (), "f8", "1"),
    )
    drift = LiveSignal.from_start(Start("drift", {}, streams, ("e_gdc", "time"), {}, 2))
    for t, e, g in ((10.0, 0.2, 0.001), (100.0, 0.25, 0.002)):
        for name, value in (("time", t), ("e", e), ("e_gdc", g)):
            drift.add(Data(name, value))
    assert [label for label, _, _ in drift.curves()] == ["uncompensated", "with GDC"]
    assert rate_text(3, 10, 1, 0.0, 2.0) == "3/10 (30%)  1/s  ETA 00:00:07"


async def test_chip_map_keys_mouse_and_metrics(run_data: Path) -> None:
    app = ChipctlApp(data_dir=run_data)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f3")
        await app.workers.wait_for_complete()
        await pilot.pause()
        chip_map = app.query_one(ChipMap)
        assert app.query_one(TabbedContent).active == "chip-map" and chip_map.has_focus
        assert chip_map.metrics.value("programmed", 1) == 1
        await pilot.press("right", "down", "down")
        assert chip_map.selected == 17
        await pilot.press("m")
        assert app.query_one("#metric", Select).value == "weight_error"
        assert chip_map.metric == "weight_error"
        width, height = chip_map._cell_size()
        await pilot.click(ChipMap, offset=(3 * width + 1, 4 * height))
        assert chip_map.selected == 35
        await pilot.press("left", "left", "left", "up", "up", "up", "up")
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.query_one(CoreDetailView).detail is not None)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.query_one(TabbedContent).active == "core-detail"
        detail = app.query_one(CoreDetailView).detail
        assert detail is not None and detail.core == 0 and detail.program_run == "program-a.h5"
        await pilot.press("right_square_bracket")
        await wait_until(pilot, lambda: app.query_one(CoreDetailView).detail.core == 1)  # type: ignore[union-attr]
        assert app.query_one(ChipMapView).metrics.value("yield", 1) > 0


async def test_procedures_form_refuses_invalid_input(tmp_path: Path) -> None:
    app = ChipctlApp(data_dir=tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f5")
        view = app.query_one(ProceduresView)
        view.select("program")
        await pilot.pause()
        form = view.form()
        form.set_value("max_iterations", "5000")
        await pilot.pause()
        assert "above the maximum" in str(form.query_one("#error-max_iterations").render())
        assert set(form.errors()) == {"weights", "max_iterations"}
        assert app.query_one("#start").disabled  # not connected
        await pilot.press("f9")
        assert not app.running


async def test_runs_screen_lists_and_opens(run_data: Path) -> None:
    app = ChipctlApp(data_dir=run_data)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f6")
        await app.workers.wait_for_complete()
        await pilot.pause()
        table = app.query_one("#runs-table", DataTable)
        assert table.row_count == 4
        assert table.get_row_at(0)[3] == "characterize-d.h5"
        await pilot.press("down", "enter")
        runs = app.query_one(RunsView)
        await wait_until(pilot, lambda: runs.preview is not None)
        preview = runs.preview
        assert preview is not None and preview.procedure == "drift"
        default = preview.signal
        assert default and len(preview.plottable) > 1
        # The operator picks another stream to plot (Select: click, arrow, Enter).
        await pilot.click("#run-stream")
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: bool(runs.preview and runs.preview.signal != default))
        assert runs.preview is not None and runs.preview.plot is not None
        assert runs.preview.plot.y_label.startswith(runs.preview.signal)


async def test_help_screen_opens_and_closes(tmp_path: Path) -> None:
    app = ChipctlApp(data_dir=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("u", "x")  # disabled keys say why
        await pilot.pause()
        messages = [n.message for n in app._notifications]
        assert "power up is disabled: connect first (c)" in messages
        assert "disconnect is disabled: connect first (c)" in messages
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


@pytest.mark.slow
async def test_forms_typed_by_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files checked as they are entered, durations in time fields, [on]/[off] switches, the
    cores kept across procedures and taken from the chip-map selection."""
    monkeypatch.chdir(tmp_path)  # short names to type
    text = tmp_path / "notes.npy"
    text.write_text("not an array\n")
    stack = tmp_path / "stack.npy"
    np.save(stack, np.zeros((3, 256, 256)))
    app = ChipctlApp(data_dir=tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        view = await choose_procedure(app, pilot, "program")
        form = view.form()
        await type_into(app, pilot, "weights", text.name)
        assert "notes.npy is not a NumPy .npy file" in form.errors()["weights"]
        await type_into(app, pilot, "weights", stack.name)
        await type_into(app, pilot, "cores", "0")
        assert "(1, 256, 256) for 1 core(s)" in form.errors()["weights"]
        shown = str(form.query_one("#error-weights").render())
        assert "shape (3, 256, 256)" in shown
        await type_into(app, pilot, "cores", "4-6")
        assert not form.errors()

        drift = await choose_procedure(app, pilot, "drift")
        assert drift.form().cores_text() == "4-6", "cores kept across procedures"
        until = drift.form().query_one("#param-until", Input)
        assert until.value == "1d"
        assert drift.form().query_one("#param-t0", Input).value == "200s"
        await type_into(app, pilot, "until", "2h")
        assert not drift.form().errors() and drift.form().values()["until"] == 7200.0

        calibrate = await choose_procedure(app, pilot, "calibrate")
        assert str(calibrate.form().query_one("#param-program_reference").render()) == "[off]"
        await switch_to(app, pilot, "program_reference", True)

        await pilot.press("f3", "right", "right")
        await choose_procedure(app, pilot, "drift")
        assert drift.form().cores_text() == "2", "cores from the chip-map selection"


def test_plots_one_trace_per_rail_and_markers_over_ids(run_data: Path, tmp_path: Path) -> None:
    path = tmp_path / "power_up.h5"
    with default_station().open() as opened:
        names = tuple(f"voltage {rail.name}" for rail in opened.rails)
        procedure = catalog.build("power_up", {}, station=opened)
        assert run_procedure(procedure, opened.board, path, progress=False).status == "success"
    plot = read_run(path).plot
    assert plot is not None and plot.labels == names, "one curve per rail, named"
    rows = [np.isfinite(y) for y in plot.ys]
    assert all(r.any() for r in rows) and not (rows[0] & rows[1]).any(), "rails kept apart"
    calibrate = read_run(run_data / "calibrate-b.h5").plot
    assert calibrate is not None and calibrate.points_only, "no line across core ids"
    drift = read_run(run_data / "drift-c.h5", "no-such-stream")
    assert drift.signal == "scale_error_gdc", "an unknown stream falls back to the default"
    assert drift.plot is not None and drift.plot.labels == ("uncompensated", "with GDC")


def test_ledger_invalidates_metrics_of_rewritten_cores(run_data: Path, own_ledger: Path) -> None:
    """Core 0 rewritten (per the ledger) after the fixture's runs: its figures are dropped from
    the chip map and flagged stale in core detail; "programmed" is what the ledger says."""
    later = "2030-01-01T00:00:00+00:00"
    Ledger.of("SIM-HERMES-0001", own_ledger).append(
        [
            {"core": 0, "event": "end", "finished": False, "status": "aborted",
             "procedure": "program", "run_file": "runs/elsewhere.h5", "wall_time": later},
            {"core": 1, "event": "end", "finished": True, "status": "success",
             "procedure": "program", "run_file": str(run_data / "program-a.h5"),
             "wall_time": "2023-11-14T22:13:20+00:00"},
        ]
    )  # fmt: skip
    metrics = load_chip_metrics(run_data)
    assert math.isnan(metrics.value("mvm_error", 0)) and metrics.invalidated["mvm_error"] == 1
    assert math.isnan(metrics.value("weight_error", 0)) and metrics.value("weight_error", 1) > 0
    assert metrics.value("programmed", 0) == 0 and metrics.value("programmed", 1) == 1
    assert math.isnan(metrics.value("programmed", 5)), "a core the ledger never saw is unknown"
    assert metrics.ledger_cores[0] == "partially programmed (run aborted)"
    assert metrics.cells["weight_error"][1].name == "program-a.h5"
    detail = load_core_detail(run_data, 0)
    assert "rewritten since by elsewhere.h5" in detail.sources["program"].stale
    assert not load_core_detail(run_data, 1).sources["program"].stale
