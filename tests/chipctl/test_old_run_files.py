"""Run files written before the catalog and the package splits still open, show and resume.

``tests/data/calibrate-aa6e4b4-aborted.h5.gz`` is a calibrate run written by commit aa6e4b4
(before ``chipctl.catalog``, ``chipctl/runfile/`` and ``procedures/programming/``) on
``mockchip://?seed=7&cores=2`` with ``cores=0-1, n_inputs=256, n_validation=128,
cores_per_group=1, set_id="old-format-fixture"``, stopped after its second checkpoint (the
first core group done). Resumed now, it must end as an uninterrupted run of today's code does,
and store its calibration set.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from chipctl import catalog
from chipctl.calibration import CalibrationStore
from chipctl.cli import main
from chipctl.runfile import RunFile
from chipctl.runner import run_procedure
from drivers.board import Board

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "calibrate-aa6e4b4-aborted.h5.gz"
PARAMETERS = {
    "cores": "0-1",
    "program_reference": True,
    "n_inputs": 256,
    "n_validation": 128,
    "cores_per_group": 1,
    "set_id": "old-format-fixture",
}


def _unpack(tmp_path: Path) -> Path:
    path = tmp_path / "old-calibrate.h5"
    with gzip.open(FIXTURE, "rb") as source, open(path, "wb") as target:
        shutil.copyfileobj(source, target)
    return path


def test_an_old_run_file_opens_and_shows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _unpack(tmp_path)
    with RunFile.open(path) as run:
        assert run.status == "aborted" and run.procedure == "calibrate"
        assert len(run.checkpoints) == 2 and len(run.stream("fit_core")) == 1
    assert main(["show", str(path)]) == 0
    assert "old-format-fixture" in capsys.readouterr().out


def test_an_old_run_file_resumes_as_an_uninterrupted_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    monkeypatch.setenv("CHIPCTL_CALIBRATION_DIR", str(store))
    monkeypatch.setenv("CHIPCTL_MVM_KERNEL", "numpy")  # the kernel the file was recorded with
    old = _unpack(tmp_path)
    assert main(["resume", str(old), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "chipctl resume: success" in out and "calibration set old-format-fixture stored" in out
    assert CalibrationStore(store).latest("SIM-HERMES-0007") is not None

    whole = tmp_path / "whole.h5"
    with Board("mockchip://?seed=7&cores=2") as board:
        procedure = catalog.build("calibrate", PARAMETERS)
        assert run_procedure(procedure, board, whole, progress=False).status == "success"
    with RunFile.open(old) as resumed, RunFile.open(whole) as uninterrupted:
        assert resumed.status == "success"
        assert set(resumed.streams) == set(uninterrupted.streams)
        for name in uninterrupted.streams:
            np.testing.assert_array_equal(
                resumed.stream(name), uninterrupted.stream(name), err_msg=name
            )


def test_a_file_whose_stream_changed_type_is_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stream rewritten with another dtype cannot be continued: one line naming the stream,
    no traceback, and the file is left as it was."""
    import hashlib

    import h5py

    path = _unpack(tmp_path)
    with h5py.File(path, "r+") as f:
        group = f["entry/streams"]
        rows = group["fit_rms"][()]
        attrs = dict(group["fit_rms"].attrs)
        del group["fit_rms"]
        changed = group.create_dataset(
            "fit_rms", data=rows.astype(np.float32), maxshape=(None, *rows.shape[1:])
        )
        changed.attrs.update(attrs)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    assert main(["resume", str(path), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "stream fit_rms" in err and "float32" in err and "Traceback" not in err
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
