"""The run-file commands of the CLI: generated procedure subcommands, runs, show."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from chipctl import catalog
from chipctl.cli import build_parser, main
from chipctl.runfile import RunFile
from procedures.base import Parameter
from tests.chipctl.test_recipe import Scaled

URL = "mockchip://?seed=1&cores=2"
UNREACHABLE = "mockchip://?cores=0"  # opening it is an error: proves the board was not touched


class Flagged(Scaled):
    name: ClassVar[str] = "flagged"
    parameters: ClassVar[tuple[Parameter, ...]] = (
        *Scaled.parameters,
        Parameter("dry_run", False, kind=bool, description="only pretend"),
    )


@pytest.fixture(autouse=True)
def _register(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(catalog.ENTRIES, "flagged", catalog.Entry("flagged", f"{__name__}:Flagged"))
    broken = catalog.Entry("broken", "tests.chipctl.no_such_module:Broken")
    monkeypatch.setitem(catalog.ENTRIES, "broken", broken)


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_generated_subcommand_help_shows_units_defaults_and_limits(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = _help(capsys, "snapshot")
    assert "--cores CORES" in text and "default: 0" in text and "limits: 0 to 63" in text
    text = _help(capsys, "flagged")
    assert "--gain-us X" in text and "units: uS" in text and "default: 1.0" in text
    assert "--dry-run, --no-dry-run" in text
    assert "--weights FILE.npy" in text and "path of a .npy file" in text


def test_a_broken_procedure_module_does_not_break_the_cli() -> None:
    choices = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert "snapshot" in choices and "flagged" in choices and "broken" not in choices
    assert "demo" in choices and "identify" in choices  # existing commands still there


def test_out_of_range_option_exits_2_before_the_board_is_touched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.h5"
    assert main(["snapshot", "--board", UNREACHABLE, "--cores", "0-70", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "chipctl snapshot: parameter cores: 64 is above the maximum 63"
    assert main(["flagged", "--board", UNREACHABLE, "--gain-us", "-1", "--out", str(out)]) == 2
    assert "parameter gain_us: -1.0 is below the minimum 0.0 uS" in capsys.readouterr().err
    assert not out.exists()


def test_array_option_loads_npy_and_refuses_bad_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "w.npy"
    np.save(weights, np.ones((2, 2)))
    out = tmp_path / "f.h5"
    argv = ["flagged", "--board", URL, "--out", str(out), "--no-progress", "--gain-us", "3"]
    assert main([*argv, "--weights", str(weights), "--dry-run"]) == 0
    assert f"run file: {out}" in capsys.readouterr().out
    with RunFile.open(out) as run:
        np.testing.assert_array_equal(run.stream("scaled"), [3 * np.ones((2, 2))])
        assert run.parameters["dry_run"] is True
    assert main([*argv, "--weights", str(tmp_path / "gone.npy")]) == 2
    assert "no such .npy file" in capsys.readouterr().err
    (tmp_path / "text.npy").write_text("hello")
    assert main([*argv, "--weights", str(tmp_path / "text.npy")]) == 2
    assert "is not a .npy array file" in capsys.readouterr().err


def test_default_out_is_under_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["snapshot", "--board", URL, "--no-progress"]) == 0
    files = list((tmp_path / "runs").glob("snapshot-*.h5"))
    assert len(files) == 1
    assert str(Path("runs") / files[0].name) in capsys.readouterr().out


def test_runs_lists_files_and_survives_a_broken_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.h5"
    assert main(["snapshot", "--board", URL, "--cores", "1", "--out", str(good)]) == 0
    (tmp_path / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    (tmp_path / "text.h5").write_text("nope")
    capsys.readouterr()
    assert main(["runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    good_line = next(line for line in out.splitlines() if "good.h5" in line)
    assert "snapshot" in good_line and "SIM-HERMES-0001" in good_line and "success" in good_line
    assert "broken.h5" in out and "text.h5" in out and "not an HDF5 file" in out
    assert out.count("unreadable:") == 2 and "truncated or damaged" in out
    assert main(["runs", str(tmp_path / "nowhere")]) == 1


def test_show_prints_metadata_streams_and_checkpoints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.h5"
    assert main(["snapshot", "--board", URL, "--cores", "0-1", "--out", str(path)]) == 0
    capsys.readouterr()
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    for text in ("snapshot", "SIM-HERMES-0001", "success", URL, "cores", "[0, 1]"):
        assert text in out, text
    line = next(line for line in out.splitlines() if "conductance" in line)
    assert "(256, 256, 4)" in line and "counts" in line and "min" in line and "max" in line
    assert "checkpoints: 2" in out
    assert main(["show", str(tmp_path / "gone.h5")]) == 1
    assert "gone.h5: no such run file" in capsys.readouterr().err
