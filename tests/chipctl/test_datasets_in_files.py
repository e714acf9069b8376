"""Data sets and model files named in sweep specs and recipes (issue 15, item 4).

A sweep takes the same data sets as ``chipctl infer`` (the one list of
:mod:`chipctl.datasets`, and ``.npz`` files), and relative files in a sweep spec or a recipe are
found next to that file whatever the current folder is; missing or unusable files are refused
when the file is loaded, before anything runs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from chipctl.datasets import DATASETS
from chipctl.recipe import RecipeError, load_recipe
from chipctl.sweep import SpecError, load_spec, run_point

MODELS = Path(__file__).resolve().parents[2] / "chipctl" / "models"

SWEEP = """
name = "own-data"
kind = "inference"
[grid]
seeds = [3]
drift = ["25s"]
models = [{models}]
[settings]
cores = 8
samples = 40
dataset = "{dataset}"
"""


def _own_npz(path: Path, n: int = 60, relabel: int = 0) -> Path:
    """Digits-shaped data (64 features) with calibration samples; the first ``relabel``
    labels are changed to the next class, so that scores tell this file from the built-in set."""
    from chipctl.datasets import load_dataset

    digits = load_dataset("digits")
    y = digits.y_test[:n].copy()
    y[:relabel] = (y[:relabel] + 1) % 10
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=digits.x_test[:n], y=y, x_cal=digits.x_train[:200])
    return path


def _write(folder: Path, text: str, name: str = "spec.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return folder / name


def test_sweeps_take_every_data_set_infer_takes(tmp_path: Path) -> None:
    for name in DATASETS:
        spec = load_spec(_write(tmp_path, SWEEP.format(models='"digits_mlp"', dataset=name)))
        assert [p.dataset for p in spec.points()] == [name]


def test_an_npz_file_is_found_next_to_the_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = tmp_path / "study"
    own = _own_npz(study / "data" / "own.npz", relabel=20)
    other = _own_npz(study / "other.npz", n=50)
    text = SWEEP.format(
        models='"digits_mlp", {path = "digits_mlp.onnx", dataset = "other.npz"}',
        dataset="data/own.npz",
    )
    spec_path = _write(study, text)
    shutil.copy(MODELS / "digits_mlp.onnx", study / "digits_mlp.onnx")
    monkeypatch.chdir(tmp_path)  # not the spec's folder
    spec = load_spec(spec_path)
    points = spec.points()
    assert [p.dataset for p in points] == [str(own.resolve()), str(other.resolve())]
    assert points[1].model_path == str((study / "digits_mlp.onnx").resolve())
    assert spec.settings["dataset"] == "data/own.npz"  # the study keeps the text as written
    # The point runs the real ``infer`` on the file: its first 40 samples are scored, and the
    # float32 model (right on all 40 digits) is wrong on the 20 relabelled ones.
    (row,) = run_point(points[0])
    assert row["software_accuracy"] == pytest.approx(0.5)
    assert 0.4 <= row["accuracy"] <= 0.5


@pytest.mark.parametrize(
    ("dataset", "fragments"),
    [
        ("mnist", ("key 'settings.dataset'", "'mnist' is not a built-in one",
                   "digits-stratified", "an .npz file")),
        ("missing.npz", ("key 'settings.dataset'", "missing.npz: no such file")),
        ("bad.npz", ("key 'settings.dataset'", "must hold 'x' and 'y'", "missing ['y']")),
    ],
)  # fmt: skip
def test_bad_data_sets_are_refused_when_the_spec_loads(
    tmp_path: Path, dataset: str, fragments: tuple[str, ...]
) -> None:
    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 64)))
    with pytest.raises(SpecError) as info:
        load_spec(_write(tmp_path, SWEEP.format(models='"digits_mlp"', dataset=dataset)))
    for fragment in fragments:
        assert fragment in str(info.value)


RECIPE = """
board = "mockchip://?seed=2&cores=8"
[[step]]
procedure = "infer"
model = "{model}"
dataset = "{dataset}"
drift = "25s"
samples = 20
"""


def test_recipe_files_are_found_next_to_the_recipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "bench"
    own = _own_npz(folder / "data" / "own.npz")
    shutil.copy(MODELS / "digits_mlp.onnx", folder / "net.onnx")
    recipe = _write(folder, RECIPE.format(model="net.onnx", dataset="data/own.npz"), "r.toml")
    monkeypatch.chdir(tmp_path)  # a user running the recipe from another folder
    (step,) = load_recipe(recipe).steps
    assert step.parameters["model"] == str((folder / "net.onnx").resolve())
    assert step.parameters["dataset"] == str(own.resolve())
    # Names that are not files are left alone: shipped models and built-in data sets.
    built_in = _write(folder, RECIPE.format(model="digits_mlp", dataset="digits"), "b.toml")
    (step,) = load_recipe(built_in).steps
    assert (step.parameters["model"], step.parameters["dataset"]) == ("digits_mlp", "digits")
    # A missing file is refused when the recipe loads, naming where it was looked for.
    missing = _write(folder, RECIPE.format(model="nets/none.onnx", dataset="digits"), "m.toml")
    with pytest.raises(RecipeError, match=r"key 'model': no such file .*bench/nets/none\.onnx"):
        load_recipe(missing)
