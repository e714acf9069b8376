"""The procedure catalog: one entry makes a procedure a CLI command, a recipe step, a TUI entry
and resumable; ``build`` takes the raw values of every front end alike."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from chipctl import catalog
from chipctl.cli import main
from chipctl.recipe import load_recipe, run_recipe
from chipctl.resume import resume_run
from chipctl.runfile import RunFile
from chipctl.runner import run_procedure
from drivers.board import Board
from drivers.errors import LimitError
from procedures.base import Checkpoint, Data, Parameter, Procedure, Progress, StreamSpec

BOARD = "mockchip://?seed=3&cores=2"


class Tally(Procedure):
    """Read a few devices of each core per step: a small procedure written for this test."""

    name: ClassVar[str] = "tally"
    title: ClassVar[str] = "Tally"
    parameters: ClassVar[tuple[Parameter, ...]] = (
        Parameter("cores", [0], kind="cores", description="cores read", minimum=0, maximum=63),
        Parameter("steps", 4, kind=int, description="reads", minimum=1, maximum=100),
        Parameter("settle", 60.0, kind="duration", units="s", description="wait", minimum=0.0),
    )
    default_plot: ClassVar[tuple[str, str | None]] = ("mean_counts", "step")

    def streams(self) -> tuple[StreamSpec, ...]:
        return (
            StreamSpec("step", (), "i8", "1", "step number"),
            StreamSpec("mean_counts", (), "f8", "counts", "mean verify read"),
        )

    def total(self) -> int:
        return int(self.params["steps"])

    def execute(
        self, board: Board, *, resume_from: dict[str, Any] | None = None
    ) -> Iterator[Progress | Data | Checkpoint]:
        first = int((resume_from or {}).get("next", 0))
        index = np.arange(8, dtype=np.uint8)
        for step in range(first, self.params["steps"]):
            self.check_stop()
            reads = [
                board.verify_read(core, index, index, np.zeros(8, np.uint8))
                for core in self.params["cores"]
            ]
            yield Data("step", step)
            yield Data("mean_counts", float(np.mean(reads)))
            yield Progress(step + 1, self.params["steps"])
            yield Checkpoint({"next": step + 1})


@pytest.fixture(autouse=True)
def _tally_in_the_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one line a lab adds for its own procedure (here patched, so it goes away again)."""
    monkeypatch.setitem(catalog.ENTRIES, "tally", catalog.Entry("tally", f"{__name__}:Tally"))


def _rows(path: Path) -> tuple[list[int], list[float]]:
    with RunFile.open(path) as run:
        assert run.status == "success", run.metadata.get("reason")
        return [int(v) for v in run.stream("step")], [float(v) for v in run.stream("mean_counts")]


def test_a_new_procedure_is_a_cli_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tally.h5"
    argv = ["tally", "--board", BOARD, "--cores", "0-1", "--steps", "3", "--settle", "2h"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    assert "chipctl tally: success" in capsys.readouterr().out
    steps, values = _rows(out)
    assert steps == [0, 1, 2] and all(v >= 0 for v in values)
    with RunFile.open(out) as run:
        assert run.parameters["settle"] == 7200.0 and run.parameters["cores"] == [0, 1]
    # Bad input through the CLI text: exit 2, named parameter, no run file.
    bad = tmp_path / "bad.h5"
    assert main([*argv[:-2], "--settle", "soon", "--out", str(bad)]) == 2
    assert "parameter settle" in capsys.readouterr().err and not bad.exists()


def test_a_new_procedure_is_a_recipe_step(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(
        f'board = "{BOARD}"\n\n[[step]]\nprocedure = "tally"\nsteps = 2\nsettle = "1d"\n'
        'out = "tally.h5"\n'
    )
    loaded = load_recipe(recipe)
    assert loaded.steps[0].parameters["settle"] == 86400.0
    summaries = run_recipe(loaded, progress=False)
    assert [s.status for s in summaries] == ["success"]
    assert _rows(tmp_path / "runs" / "tally.h5")[0] == [0, 1]


def test_a_new_procedure_resumes(tmp_path: Path) -> None:
    whole, cut = tmp_path / "whole.h5", tmp_path / "cut.h5"
    with Board(BOARD) as board:
        summary = run_procedure(catalog.build("tally", {"steps": 4}), board, whole, progress=False)
        assert summary.status == "success"
    with Board(BOARD) as board:
        reads = {"n": 0}

        def stop_after_two() -> bool:
            reads["n"] += 1
            return reads["n"] > 2

        procedure = catalog.build("tally", {"steps": 4})
        summary = run_procedure(procedure, board, cut, progress=False, should_stop=stop_after_two)
        assert summary.status == "aborted"
    assert resume_run(cut, progress=False).status == "success"
    assert _rows(cut) == _rows(whole)


async def test_a_new_procedure_is_a_tui_entry(tmp_path: Path) -> None:
    from chipctl.tui.app import ChipctlApp
    from chipctl.tui.screens.procedures import ProceduresView

    from .tui.conftest import wait_until

    app = ChipctlApp(data_dir=tmp_path / "runs")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("c")
        await wait_until(pilot, lambda: app.connected)
        await pilot.press("f5")
        view = app.query_one(ProceduresView)
        assert "tally" in view.classes_by_name
        view.select("tally")
        await pilot.pause()
        view.form().set_value("steps", "2")
        view.form().set_value("settle", "90min")
        await pilot.pause()
        assert not view.form().errors()
        await pilot.press("f9")
        await wait_until(pilot, lambda: app.last_summary is not None and not app.running, 60)
        summary = app.last_summary
        assert summary is not None and summary.status == "success", summary
        await pilot.press("f2", "x")
        await wait_until(pilot, lambda: not app.connected, timeout_s=30)
        await app.workers.wait_for_complete()
    assert _rows(summary.path)[0] == [0, 1]
    with RunFile.open(summary.path) as run:
        assert run.parameters["settle"] == 5400.0


# -- build: the raw values of every front end -------------------------------------------------


def test_build_takes_raw_text_and_names_the_bad_parameter(tmp_path: Path) -> None:
    procedure = catalog.build("drift", {"until": "1d", "start": "25s", "cores": "0-3"})
    assert procedure.params["until"] == 86400.0 and procedure.params["cores"] == [0, 1, 2, 3]
    np.save(tmp_path / "w.npy", np.ones((256, 256)))
    program = catalog.build("program", {"weights": "w.npy", "cores": 1}, base_dir=tmp_path)
    assert program.params["weights"].shape == (256, 256)
    with pytest.raises(LimitError, match="parameter until"):
        catalog.build("drift", {"until": "tomorrow"})
    with pytest.raises(LimitError, match="unknown parameter 'untill'"):
        catalog.build("drift", {"untill": "1d"})
    with pytest.raises(LimitError, match="parameter weights: no such .npy file"):
        catalog.build("program", {"weights": "missing.npy"}, base_dir=tmp_path)
    with pytest.raises(catalog.CatalogError, match="unknown procedure 'progam'"):
        catalog.build("progam")
    with pytest.raises(LimitError, match="needs a bench station"):
        catalog.build("power_up")


def test_every_entry_loads_and_declares_what_front_ends_need() -> None:
    classes = catalog.available()
    assert set(classes) == set(catalog.names())
    for item in catalog.entries():
        assert classes[item.name].name == item.name
    stations = {item.name for item in catalog.entries() if item.needs_station}
    assert stations == {"power_up", "power_down", "device_iv"}
    program = catalog.build("program", {"weights": np.ones((256, 256)), "cores": "4-5"})
    assert catalog.overwritten_cores(program) == (4, 5)
    kept = catalog.build("calibrate", {"cores": "0-1", "program_reference": False})
    erased = catalog.build("calibrate", {"cores": "0-1", "program_reference": True})
    assert catalog.overwritten_cores(kept) == () and catalog.overwritten_cores(erased) == (0, 1)
    assert catalog.overwritten_cores(catalog.build("snapshot")) == ()


def test_a_broken_entry_is_left_out_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = catalog.Entry("broken", "tests.chipctl.no_such_module:Broken")
    monkeypatch.setitem(catalog.ENTRIES, "broken", broken)
    assert "broken" not in catalog.available() and "program" in catalog.available()
    with pytest.raises(catalog.CatalogError, match="no_such_module"):
        catalog.build("broken")


def test_a_station_procedure_resumes_on_a_station(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """power_up needs a station: `chipctl resume` opens one (the simulated station around the
    stored board) and runs it again from its start (it has no checkpoints)."""
    from chipctl.station import default_station

    path = tmp_path / "power_up.h5"
    station = default_station(board_url=BOARD, time_scale=0.0)
    with station.open() as opened:
        procedure = catalog.build("power_up", station=opened)
        summary = run_procedure(
            procedure, opened.board, path, progress=False, should_stop=lambda: True
        )
    assert summary.status == "aborted"
    assert main(["resume", str(path), "--no-progress"]) == 0
    assert "chipctl resume: success" in capsys.readouterr().out
    with RunFile.open(path) as run:
        assert run.status == "success" and len(run.stream("voltage")) > 0


def test_every_generated_command_runs_behind_a_station_interlock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--station FILE` on a generated command: the station's interlock refuses programming
    while its rails are off; without it a simulated board runs alone, as before."""
    from chipctl.station.file import DEFAULT_STATION_TOML

    station = tmp_path / "station.toml"
    station.write_text(DEFAULT_STATION_TOML.replace("time_scale = 1.0", "time_scale = 0.0"))
    weights = tmp_path / "w.npy"
    np.save(weights, np.random.default_rng(0).normal(size=(256, 256)))
    out = tmp_path / "program.h5"
    argv = ["program", "--weights", str(weights), "--cores", "0", "--no-progress"]
    assert main([*argv, "--station", str(station), "--out", str(out)]) == 1
    assert "SafetyLimitError" in capsys.readouterr().out
    with RunFile.open(out) as run:
        assert run.status == "failed" and "rail" in run.metadata["reason"]
    # A bad value is refused before the station is opened: no run file at all.
    bad = tmp_path / "bad.h5"
    assert main([*argv[:-1], "--mode", "xdp", "--station", str(station), "--out", str(bad)]) == 2
    assert "parameter mode" in capsys.readouterr().err and not bad.exists()
    assert "--station FILE" in " ".join(_help_text(capsys, "snapshot"))


def _help_text(capsys: pytest.CaptureFixture[str], command: str) -> list[str]:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return capsys.readouterr().out.split()


def test_cores_beyond_the_board_are_refused_before_a_run_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A core id the board does not have is bad input (exit 2), found before the run file is
    created or anything is sent, and said in one line without a traceback."""
    out = tmp_path / "snap.h5"
    assert main(["snapshot", "--board", BOARD, "--cores", "3", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "core(s) [3] beyond the board's 2 cores" in err and "Traceback" not in err
    assert not out.exists()
