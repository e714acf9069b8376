"""The worked examples in examples/ run end to end on the simulated chip (at reduced size where
they take one) and produce what their docstrings promise: run files and PNG plots."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from chipctl.analysis import read_run
from chipctl.calibration import CalibrationStore
from chipctl.recipe import load_recipe, run_recipe

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PNG = b"\x89PNG\r\n\x1a\n"
SCRIPTS = (
    "program_and_verify.py",
    "calibrate_and_characterise.py",
    "drift_study.py",
    "deploy_onnx.py",
)


def _load(name: str) -> ModuleType:
    path = EXAMPLES / name
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", SCRIPTS)
def test_examples_default_to_the_simulated_board(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        _load(name).main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "--board" in out and "--out-dir" in out
    assert "mockchip://?seed=" in _load(name).DEFAULT_BOARD_URL


def test_program_and_verify_as_a_script(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "program_and_verify.py"), "--out-dir", "out"]
        + ["--board", "mockchip://?seed=4&cores=1", "--mode", "odp"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "converged" in result.stdout
    assert (tmp_path / "out" / "program_error.png").read_bytes()[:8] == PNG
    run = read_run(tmp_path / "out" / "program.h5", streams=["converged_fraction"])
    assert run.status == "success" and run.parameters["mode"] == "odp"
    assert run["converged_fraction"].values[0] > 0.99


def test_calibrate_and_characterise(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = _load("calibrate_and_characterise.py")
    argv = ["--out-dir", str(tmp_path), "--inputs", "256", "--cal-inputs", "256"]
    assert module.main([*argv, "--board", "mockchip://?seed=5&cores=2", "--core", "1"]) == 0
    assert "per-ADC gain spread" in capsys.readouterr().out
    assert (tmp_path / "calibration.png").read_bytes()[:8] == PNG
    (saved,) = CalibrationStore(tmp_path / "calibration").list()
    assert saved[0].suffix == ".npz" and saved[1]["cores"] == [1]
    raw = read_run(tmp_path / "characterize-raw.h5").results
    calibrated = read_run(tmp_path / "characterize-calibrated.h5")
    assert calibrated.parameters["output"] == "ldpu"
    assert calibrated.results["eps_total_mean"] < raw["eps_total_mean"] < 0.3


def test_drift_study(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = _load("drift_study.py")
    argv = ["--out-dir", str(tmp_path), "--points", "4", "--sample", "64"]
    assert module.main([*argv, "--board", "mockchip://?seed=6&cores=2"]) == 0
    assert "with GDC" in capsys.readouterr().out
    assert (tmp_path / "drift.png").read_bytes()[:8] == PNG
    run = read_run(tmp_path / "drift.h5")
    assert run["time"].units == "s"
    assert run["time"].values[-1] == pytest.approx(7 * 86400.0)
    last_uncompensated = run["scale_error"].values[-1]
    assert np.all(run["scale_error_gdc"].values[-1] < last_uncompensated / 10)


def test_deploy_onnx_tracks_accuracy_over_a_week(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module = _load("deploy_onnx.py")
    argv = ["--out-dir", str(tmp_path), "--model", "digits_mlp", "--dataset", "digits"]
    assert module.main([*argv, "--samples", "150", "--board", "mockchip://?seed=2&cores=2"]) == 0
    assert "digits_mlp on digits (150 test samples)" in capsys.readouterr().out
    assert (tmp_path / "accuracy_over_time.png").read_bytes()[:8] == PNG
    run = read_run(tmp_path / "infer.h5")
    assert run["drift_time"].values[-1] >= 7 * 86400.0
    assert run["accuracy"].values.shape == (12,)  # 4 times × 3 compensations
    week_gdc = run.results["accuracy"]["gdc"]["1w"]
    assert week_gdc >= run.results["software_accuracy"] - 0.03


def test_recipe_runs_program_and_calibration(tmp_path: Path) -> None:
    for name in ("recipe.toml", "weights.npy"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    recipe = load_recipe(tmp_path / "recipe.toml")
    names = [step.procedure.name for step in recipe.steps]
    assert names == ["power_up", "program", "calibrate", "characterize", "infer", "power_down"]
    assert recipe.board.startswith("mockchip://") and recipe.station is not None
    summaries = run_recipe(recipe, progress=False)
    assert [s.status for s in summaries] == ["success"] * len(names)
    assert [s.path.parent for s in summaries] == [tmp_path / "runs"] * len(names)
    assert summaries[4].results["accuracy"]["gdc"]["1h"] > 0.95
    program = read_run(summaries[1].path, streams=["converged_fraction"])
    np.testing.assert_array_equal(program.parameters["weights"], np.load(EXAMPLES / "weights.npy"))
    assert program["converged_fraction"].values[0] > 0.99


def test_examples_readme_lists_every_example() -> None:
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    for path in EXAMPLES.iterdir():
        if path.suffix in (".py", ".toml"):
            assert path.name in readme, f"examples/README.md does not mention {path.name}"
