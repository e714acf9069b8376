"""Recipes: a two-step recipe makes two run files; bad recipes fail before anything runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from chipctl import catalog
from chipctl.cli import main
from chipctl.recipe import RecipeError, load_recipe, run_recipe
from chipctl.runfile import RunFile
from drivers.board import Board
from procedures.base import Checkpoint, Data, Parameter, Procedure, Progress, StreamSpec


class Scaled(Procedure):
    """Test procedure with an array parameter: yields ``gain_us · weights`` once."""

    name: ClassVar[str] = "scaled"
    parameters: ClassVar[tuple[Parameter, ...]] = (
        Parameter("weights", np.zeros(3), kind="array", description="weights to scale"),
        Parameter("gain_us", 1.0, units="uS", minimum=0.0, maximum=10.0),
    )

    def streams(self) -> tuple[StreamSpec, ...]:
        shape = tuple(np.shape(self.params["weights"]))
        return (StreamSpec("scaled", shape, "f8", "uS", "gain times weights"),)

    def execute(
        self, board: Board, *, resume_from: dict[str, Any] | None = None
    ) -> Iterator[Progress | Data | Checkpoint]:
        yield Data("scaled", self.params["gain_us"] * self.params["weights"])
        yield Progress(1, 1)


@pytest.fixture(autouse=True)
def _register_scaled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(catalog.ENTRIES, "scaled", catalog.Entry("scaled", f"{__name__}:Scaled"))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return path


GOOD = """
board = "mockchip://?seed=2&cores=2"
out_dir = "out"

[[step]]
procedure = "snapshot"
cores = "0-1"

[[step]]
procedure = "scaled"
weights = "w.npy"
gain_us = 2.0
"""


def test_a_two_step_recipe_makes_two_run_files(tmp_path: Path) -> None:
    np.save(tmp_path / "w.npy", np.arange(4.0))
    recipe = load_recipe(_write(tmp_path, GOOD))
    assert [s.procedure.name for s in recipe.steps] == ["snapshot", "scaled"]
    summaries = run_recipe(recipe, progress=False)
    assert [s.status for s in summaries] == ["success", "success"]
    files = sorted((tmp_path / "out").glob("*.h5"))
    assert len(files) == 2
    with RunFile.open(summaries[1].path) as run:
        np.testing.assert_array_equal(run.stream("scaled"), [2.0 * np.arange(4.0)])
        np.testing.assert_array_equal(run.parameters["weights"], np.arange(4.0))
    with RunFile.open(summaries[0].path) as run:
        assert run.procedure == "snapshot" and run.rows()["core"] == 2


def test_cli_run_reports_each_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "w.npy", np.arange(4.0))
    assert main(["run", str(_write(tmp_path, GOOD)), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "step 1 (snapshot): success" in out and "step 2 (scaled): success" in out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('procedure = "scaled"', 'procedure = "nosuch"'), r"step 2: key 'procedure': unknown"),
        (
            ("gain_us = 2.0", "gain_us = 20.0"),
            r"step 2 \(scaled\): parameter gain_us: 20.0 is above",
        ),
        (("gain_us = 2.0", "gane_us = 2.0"), r"step 2 \(scaled\): unknown parameter 'gane_us'"),
        (
            ('weights = "w.npy"', 'weights = "gone.npy"'),
            r"step 2 \(scaled\): key 'weights': no such",
        ),
        (('weights = "w.npy"', 'weights = "recipe.toml"'), r"key 'weights': .*not a .npy"),
        (('cores = "0-1"', 'cores = "0-99"'), r"step 1 \(snapshot\): parameter cores: 64 is above"),
        (("gain_us = 2.0", "gain_us = = 2"), r"TOML syntax error: .*line 12"),
    ],
)
def test_bad_recipes_fail_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: tuple[str, str], message: str
) -> None:
    np.save(tmp_path / "w.npy", np.arange(4.0))
    assert change[0] in GOOD
    path = _write(tmp_path, GOOD.replace(*change))
    with pytest.raises(RecipeError, match=message):
        load_recipe(path)
    assert main(["run", str(path)]) == 2
    assert "recipe.toml" in capsys.readouterr().err
    assert not (tmp_path / "out").exists(), "a step ran although the recipe is invalid"


def test_recipe_stops_at_the_first_failed_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "w.npy", np.arange(4.0))
    # Drift on a chip nobody programmed finds no conducting devices: step 1 fails as it runs.
    text = GOOD.replace(
        'procedure = "snapshot"\ncores = "0-1"',
        'procedure = "drift"\ncores = "0"\nuntil = "1h"\npoints = 3\nsample = 16',
    )
    assert text != GOOD
    assert main(["run", str(_write(tmp_path, text)), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "step 1 (drift): failed" in captured.out
    assert "stopped at step 1 (failed); 1 step(s) not run" in captured.err
    assert len(list((tmp_path / "out").glob("*.h5"))) == 1


def test_a_step_beyond_the_board_refuses_the_recipe_before_any_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "w.npy", np.arange(4.0))
    text = GOOD.replace('cores = "0-1"', "cores = [0, 5]")  # core 5 does not exist on 2 cores
    assert main(["run", str(_write(tmp_path, text)), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "step 1 (snapshot)" in err and "core(s) [5] beyond the board's 2 cores" in err
    assert not list(tmp_path.rglob("*.h5"))


def test_recipe_needs_a_board_and_steps(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="'board'"):
        load_recipe(_write(tmp_path, '[[step]]\nprocedure = "snapshot"\n'))
    with pytest.raises(RecipeError, match=r"no \[\[step\]\]"):
        load_recipe(_write(tmp_path, 'board = "mockchip://"\n'))
    with pytest.raises(RecipeError, match="unknown key"):
        load_recipe(_write(tmp_path, 'board = "mockchip://"\nbord = 1\n'))


def test_station_steps_need_a_station(tmp_path: Path) -> None:
    recipe = tmp_path / "r.toml"
    board = 'board = "mockchip://?seed=1&cores=2"\n'
    recipe.write_text(board + '[[step]]\nprocedure = "power_up"\n')
    with pytest.raises(RecipeError, match=r"step 1 \(power_up\) need\(s\) a 'station' key"):
        load_recipe(recipe)
    recipe.write_text(board + 'station = "nowhere.toml"\n[[step]]\nprocedure = "power_up"\n')
    with pytest.raises(RecipeError, match="key 'station'.*nowhere.toml"):
        load_recipe(recipe)
    recipe.write_text('station = "simulated"\n[[step]]\nprocedure = "power_up"\n')
    with pytest.raises(RecipeError, match="needs the 'board' key"):
        load_recipe(recipe)


def test_a_recipe_on_the_simulated_station_powers_up_and_down(tmp_path: Path) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        'board = "mockchip://?seed=1&cores=2"\nstation = "simulated"\n'
        '[[step]]\nprocedure = "power_up"\n[[step]]\nprocedure = "power_down"\n'
    )
    summaries = run_recipe(load_recipe(recipe), progress=False)
    assert [s.status for s in summaries] == ["success", "success"]
    assert summaries[0].results  # the rail sequence is recorded


def test_two_spellings_of_one_run_file_are_refused_before_any_step(tmp_path: Path) -> None:
    """``a.h5`` and ``../runs/a.h5`` are one file: the recipe is refused at load time, even
    with ``overwrite = true``, so step 2 can never replace step 1's run."""
    path = _write(
        tmp_path,
        'board = "mockchip://?seed=2&cores=2"\nout_dir = "runs"\noverwrite = true\n\n'
        '[[step]]\nprocedure = "snapshot"\ncores = "0"\nout = "a.h5"\n\n'
        '[[step]]\nprocedure = "snapshot"\ncores = "1"\nout = "../runs/a.h5"\n',
    )
    with pytest.raises(RecipeError, match=r"step 1 \(snapshot\) and step 2 \(snapshot\) write"):
        load_recipe(path)
    assert not (tmp_path / "runs").exists()
