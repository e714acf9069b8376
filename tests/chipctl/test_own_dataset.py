"""``chipctl infer --dataset FILE.npz`` as a hostile user types it (issue 15, item 4).

Every refused file is refused before a board or run file exists, with exit code 2 and one line
that names the file and the problem; a good file scores exactly what the built-in set scores
when it holds the same samples; without ``x_cal`` the calibration rows are left out of
scoring and the run says so; ``--input-layout`` reorders channels-last samples.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from chipctl.cli import main
from chipctl.datasets import load_dataset
from chipctl.inference import InferModel, inference_data
from chipctl.runfile import RunFile
from drivers.board import Board
from drivers.errors import LimitError

RUN = ["--board", "mockchip://?seed=1", "--drift", "25s", "--compensation", "none"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The user's folder: a good digits file, and bad ones of every kind."""
    folder = tmp_path_factory.mktemp("own")
    d = load_dataset("digits")
    x, y = d.x_test, d.y_test
    np.savez(folder / "digits.npz", x=x, y=y, x_cal=d.x_train)
    np.savez(folder / "no-cal.npz", x=np.concatenate([x, d.x_train]),
             y=np.concatenate([y, d.y_train]))  # fmt: skip
    with_nan = x.copy()
    with_nan[7, 3] = np.nan
    np.savez(folder / "nan.npz", x=with_nan, y=y, x_cal=d.x_train)
    np.savez(folder / "labels-15.npz", x=x, y=y + 5, x_cal=d.x_train)
    np.savez(folder / "negative.npz", x=x, y=y - 1, x_cal=d.x_train)
    np.savez(folder / "short-y.npz", x=x, y=y[:-1], x_cal=d.x_train)
    np.savez(folder / "cal-40.npz", x=x, y=y, x_cal=d.x_train[:, :40])
    np.savez(folder / "onehot.npz", x=x, y=np.eye(10)[y], x_cal=d.x_train)
    np.savez(folder / "half-labels.npz", x=x, y=y + 0.5, x_cal=d.x_train)
    np.savez(folder / "strings.npz", x=np.array([["a"], ["b"]]), y=np.array([0, 1]))
    np.savez(folder / "objects.npz", x=np.array([x[0], "a"], dtype=object), y=y[:2])
    np.savez(folder / "split-names.npz", x_test=x, y_test=y)
    np.savez(folder / "images.npz", x=x.reshape(-1, 8, 8), y=y, x_cal=d.x_train.reshape(-1, 8, 8))
    (folder / "text.npz").write_text("0.1,0.2,3\n", encoding="utf-8")
    np.save(folder / "array.npy", x)
    (folder / "array.npz").write_bytes((folder / "array.npy").read_bytes())
    m = load_dataset("mnist1d")
    np.savez(folder / "mnist1d-lc.npz", x=m.x_test[:, :, None], y=m.y_test,
             x_cal=m.x_train[:, :, None])  # fmt: skip
    return folder


REFUSED = [
    ("nan.npz", "digits_mlp", (), ("nan.npz", "'x' has NaN or infinite values", "sample 7")),
    ("labels-15.npz", "digits_mlp", (), ("10 outputs", "labels up to 14")),
    ("negative.npz", "digits_mlp", (), ("negative.npz", "label -1 is negative")),
    ("short-y.npz", "digits_mlp", (), ("'x' has 359 samples but 'y' has 358 labels",)),
    ("cal-40.npz", "digits_mlp", (), ("'x_cal' samples have shape (40,), 'x' samples (64,)",)),
    ("onehot.npz", "digits_mlp", (), ("shape (359, 10)", "y.argmax(axis=1)")),
    ("half-labels.npz", "digits_mlp", (), ("y[0] = 6.5 is not a whole number",)),
    ("strings.npz", "digits_mlp", (), ("strings.npz", "dtype <U1", "numbers")),
    ("objects.npz", "digits_mlp", (), ("objects.npz", "pickled Python objects")),
    ("split-names.npz", "digits_mlp", (), ("missing ['x', 'y']", "unexpected ['x_test'")),
    ("text.npz", "digits_mlp", (), ("text.npz is not an .npz archive",)),
    ("array.npz", "digits_mlp", (), ("array.npz is a single .npy array",)),
    ("no-such.npz", "digits_mlp", (), ("no-such.npz: no such file",)),
    ("no-cal.npz", "digits_mlp", ("--calibration-samples", "1000"),
     ("1000 of the 1797 samples", "more than half", "x_cal")),
    ("images.npz", "digits_mlp", (), ("(64,)", "shape (8, 8)", "x.reshape(len(x), -1)")),
    ("mnist1d-lc.npz", "mnist1d_cnn", (),
     ("shape (1, 40)", "shape (40, 1)", "--input-layout", "channels-last")),
    ("mnist1d-lc.npz", "mnist1d_cnn", ("--input-layout", "HWC->CHW"),
     ("'HWC->CHW' names 3 axes", "shape (40, 1)")),
    ("mnist1d-lc.npz", "mnist1d_cnn", ("--input-layout", "LC->CX"),
     ("same axes",)),
]  # fmt: skip


@pytest.mark.parametrize(("name", "model", "extra", "fragments"), REFUSED)
def test_a_bad_file_is_refused_before_the_board(
    files: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    model: str,
    extra: tuple[str, ...],
    fragments: tuple[str, ...],
) -> None:
    out = files / "refused.h5"
    code = main(["infer", "--model", model, "--dataset", str(files / name), *extra, *RUN,
                 "--no-progress", "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    assert not out.exists()


def test_a_renamed_text_file_through_the_real_command(files: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "chipctl.cli", "infer", "--model", "digits_mlp",
         "--dataset", str(files / "text.npz"), "--no-progress", "--out", str(files / "t.h5")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "text.npz is not an .npz archive" in done.stderr and "Traceback" not in done.stderr


def _results(path: Path) -> dict:
    with RunFile.open(path) as run:
        return dict(run.results)


def test_the_built_in_set_saved_as_npz_scores_the_same(
    files: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    scores = {}
    for k, dataset in enumerate(("digits", str(files / "digits.npz"))):
        # A chip ledger of its own per run: the ledger guard reads the cores an earlier run
        # on the same (simulated) chip id programmed, and those reads move the chip's noise.
        monkeypatch.setenv("CHIPCTL_CALIBRATION_DIR", str(files / f"store-{k}"))
        out = files / f"run-{k}.h5"
        args = ["infer", "--model", "digits_mlp", "--dataset", dataset, "--samples", "200"]
        assert main([*args, *RUN, "--no-progress", "--out", str(out)]) == 0
        scores[dataset] = _results(out)
    built_in, own = scores.values()
    assert own["accuracy"] == built_in["accuracy"]
    assert own["software_accuracy"] == built_in["software_accuracy"] > 0.97
    assert "80/20" in built_in["data_note"]
    assert "all 359 samples of x scored" in own["data_note"]
    assert "x_cal" in capsys.readouterr().out  # the printed table says where the data came from


def test_without_x_cal_the_calibration_rows_are_not_scored(files: Path) -> None:
    data = inference_data(str(files / "no-cal.npz"), calibration_samples=500)
    assert data.x_calibration.shape == (500, 64) and data.x_test.shape == (1297, 64)
    rows = {r.tobytes() for r in data.x_calibration}
    assert not any(r.tobytes() in rows for r in data.x_test[:200])  # (digits has duplicates)
    assert "500 samples of x calibrate" in data.note and "not scored" in data.note
    assert "the other 1297" in data.note
    # Spread over the file: the first 359 rows (the digits test split) are not all skipped.
    assert 50 < sum(r.tobytes() in rows for r in load_dataset("digits").x_test) < 200


def test_channels_last_samples_with_input_layout_equal_the_built_in(files: Path) -> None:
    built_in = InferModel(model="mnist1d_cnn", dataset="mnist1d", compensation="none")
    for layout in ("channels-last", "LC->CL", "NLC->NCL"):
        own = InferModel(
            model="mnist1d_cnn", dataset=str(files / "mnist1d-lc.npz"), input_layout=layout,
            compensation="none",
        )  # fmt: skip
        assert own.x_test.shape == (1000, 1, 40)
        np.testing.assert_array_equal(own.x_test.reshape(1000, 40), built_in.x_test)
        np.testing.assert_array_equal(own.x_cal.reshape(-1, 40), built_in.x_cal)
        assert "reordered by input_layout" in own.data.note


def test_unknown_name_and_help_text(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(LimitError, match="not a built-in data set .*digits-stratified"):
        InferModel(model="digits_mlp", dataset="cifar10")
    with pytest.raises(LimitError, match="data set '': not a built-in data set"):
        InferModel(model="digits_mlp", dataset="")
    with pytest.raises(SystemExit):
        main(["infer", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for fragment in ("80/20", "NOT the usual split", "digits-stratified", "FILE.npz", "x_cal",
                     "--input-layout", "channels-last"):  # fmt: skip
        assert fragment in text, fragment


def test_a_resume_refuses_a_data_file_changed_since_the_run_began(files: Path) -> None:
    from chipctl import catalog
    from chipctl.resume import resume_run
    from chipctl.runner import run_procedure

    data = files / "resumed.npz"
    data.write_bytes((files / "digits.npz").read_bytes())
    params = {"model": "digits_mlp", "dataset": str(data), "drift": "25s,1h",
              "compensation": "none", "samples": 100}  # fmt: skip
    path = files / "resumed.h5"
    with Board("mockchip://?seed=1&cores=2") as board:
        start = board.board_time_s()

        def stop_at_the_second_drift_time() -> bool:  # 25 s scored, the clock then at 1 h
            return board.board_time_s() > start + 3000

        cut = run_procedure(catalog.procedure_class("infer")(**params), board, path,
                            progress=False, should_stop=stop_at_the_second_drift_time)  # fmt: skip
    assert cut.status == "aborted"
    d = load_dataset("digits")
    np.savez(data, x=d.x_test[::-1], y=d.y_test[::-1], x_cal=d.x_train)  # same name, new data
    resumed = resume_run(path, progress=False)
    assert resumed.status == "failed"
    assert "the data changed since the run began" in str(resumed.reason)
