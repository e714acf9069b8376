"""Calibration sets: store, checks, CLI, and the shipped factory set."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from chipctl import catalog
from chipctl.calibration import (
    CalibrationError,
    CalibrationRecorder,
    CalibrationStore,
    apply_set,
    default_store_dir,
)
from chipctl.cli import build_parser
from chipctl.cli.calibration import add_calibration_commands
from chipctl.runner import run_procedure
from drivers.board import Board
from procedures.base import parse_duration
from procedures.calibrate import Calibrate


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[CalibrationStore, Path, Path]:
    root = tmp_path_factory.mktemp("store")
    store = CalibrationStore(root / "calibration")
    recorder = CalibrationRecorder(store)
    run = root / "calibrate.h5"
    with Board("mockchip://?seed=1&cores=2") as board:
        summary = run_procedure(
            Calibrate(cores=[0, 1], program_reference=True, n_inputs=512, n_validation=256),
            board, run,
            progress=False, subscribers=[recorder],
        )  # fmt: skip
    assert summary.status == "success" and recorder.saved is not None
    return store, recorder.saved, run


def test_set_is_stored_under_the_chip_with_metadata(stored: tuple) -> None:
    store, path, run = stored
    assert path.parent.name == "SIM-HERMES-0001" and path.suffix == ".npz"
    cal = CalibrationStore.read(path)
    meta = cal.metadata
    assert meta["id"] == path.stem and meta["chip_id"] == "SIM-HERMES-0001"
    assert meta["procedure"] == "calibrate" and meta["parameters"]["cores"] == [0, 1]
    assert meta["created"].endswith("+00:00") and len(meta["content_hash"]) == 64
    assert cal.arrays["gain_pos"].shape == (2, 256) and cal.cores == [0, 1]
    from chipctl.runfile import RunFile

    with RunFile.open(run) as f:
        assert f.metadata["calibration_set_id"] == cal.id


def test_load_applies_and_refuses_other_chips(stored: tuple) -> None:
    store, path, _ = stored
    cal = store.load("SIM-HERMES-0001", path.stem)
    with Board("mockchip://?seed=1&cores=2") as board:
        assert apply_set(board, cal) == [0, 1]
        assert board.read_ldpu(1) == cal.ldpu(1)
    with (
        Board("mockchip://?seed=2&cores=2") as board,
        pytest.raises(CalibrationError, match="SIM-HERMES-0001"),
    ):
        apply_set(board, cal)
    with pytest.raises(CalibrationError, match="not 'SIM-HERMES-0002'"):
        CalibrationStore.read(path, chip_id="SIM-HERMES-0002")


def test_tampered_and_truncated_files_are_refused(stored: tuple, tmp_path: Path) -> None:
    _, path, _ = stored
    with np.load(path) as z:
        data = dict(z)
    data["gain_pos"] = data["gain_pos"].copy()
    data["gain_pos"][0, 0] += np.float16(0.5)
    tampered = tmp_path / path.name
    np.savez(tampered, **data)
    with pytest.raises(CalibrationError, match=f"{tampered}.*hash mismatch"):
        CalibrationStore.read(tampered)
    truncated = tmp_path / "sub" / path.name
    truncated.parent.mkdir()
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CalibrationError, match=str(truncated)):
        CalibrationStore.read(truncated)
    with np.load(path) as z:
        data = dict(z)
    data["offset_neg"] = data["offset_neg"][:, :10]
    meta = json.loads(data["metadata"].tobytes())
    reshaped = tmp_path / "shape" / path.name
    reshaped.parent.mkdir()
    np.savez(reshaped, **data)
    with pytest.raises(CalibrationError, match="offset_neg has shape"):
        CalibrationStore.read(reshaped)
    assert meta["format"] == "chipctl-calibration/1"


def test_store_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CHIPCTL_CALIBRATION_DIR", str(tmp_path))
    assert default_store_dir() == tmp_path
    monkeypatch.delenv("CHIPCTL_CALIBRATION_DIR")
    assert default_store_dir().name == "calibration_data"


def test_factory_set_ships_and_fits_the_default_chip() -> None:
    store = CalibrationStore(Path(__file__).resolve().parents[2] / "calibration_data")
    cal = store.latest("SIM-HERMES-0001", mode=4)
    assert cal is not None and cal.cores == list(range(64))
    assert cal.metadata["results"]["gain_spread_after"] < 0.005
    # the simulated ADCs of a core do not depend on the core count: valid for cores=2 too
    with Board("mockchip://?seed=1&cores=2") as board:
        apply_set(board, cal, [0, 1])


def _parser() -> argparse.ArgumentParser:
    sub = argparse.ArgumentParser().add_subparsers(dest="command")
    assert add_calibration_commands(sub) == {"calibration"}
    return build_parser()


def test_cli_calibrate_list_show_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = _parser()
    store = str(tmp_path / "store")
    args = parser.parse_args([
        "calibrate", "--board", "mockchip://?seed=4&cores=1", "--cores", "0",
        "--program-reference", "--n-inputs", "256", "--n-validation", "128",
        "--out", str(tmp_path / "c.h5"), "--no-progress", "--calibration-dir", store,
    ])  # fmt: skip
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "stored in" in out and "SIM-HERMES-0004" in out
    args = parser.parse_args(["calibration", "list", "--calibration-dir", store])
    assert args.handler(args) == 0
    set_id = next((tmp_path / "store" / "SIM-HERMES-0004").glob("*.npz")).stem
    assert set_id in capsys.readouterr().out
    args = parser.parse_args(["calibration", "show", set_id, "--calibration-dir", store])
    assert args.handler(args) == 0 and "content_hash" in capsys.readouterr().out
    args = parser.parse_args(
        ["calibration", "load", "--board", "mockchip://?seed=4&cores=1", "--calibration-dir", store]
    )
    assert args.handler(args) == 0 and set_id in capsys.readouterr().out
    args = parser.parse_args(
        ["calibration", "load", "--board", "mockchip://?seed=5&cores=1", "--calibration-dir", store]
    )
    assert args.handler(args) == 1 and "no calibration set" in capsys.readouterr().err


def test_drift_durations() -> None:
    assert parse_duration("1d") == 86400.0 and parse_duration("25s") == 25.0
    assert parse_duration("1.5h") == 5400.0 and parse_duration("300") == 300.0
    assert parse_duration("2w") == 2 * 7 * 86400.0 and parse_duration("90min") == 5400.0
    for bad in ("a day", "1y", "-5s", "nan", "", "1e999"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)
    # The CLI keeps the text; the drift procedure's duration parameters convert it.
    args = _parser().parse_args(["drift", "--until", "1d", "--start", "25s", "--points", "5"])
    drift = catalog.build("drift", {"until": args.param_until, "start": args.param_start})
    assert drift.params["until"] == 86400.0 and drift.params["start"] == 25.0
