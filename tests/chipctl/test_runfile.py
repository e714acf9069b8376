"""The HDF5 run file: NeXus layout, parameters, checkpoints, SWMR live reading, reader errors."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from chipctl.runfile import (
    FORMAT,
    ResumeSource,
    RunFile,
    RunFileError,
    RunWriter,
    chunk_shape,
    seed_from_url,
)
from chipctl.runner import run_procedure
from drivers.board import Board
from procedures.base import Checkpoint, Data, Parameter, Start, Stop, StreamSpec
from procedures.snapshot import ConductanceSnapshot

URL = "mockchip://?seed=1&cores=2"

PARAMETERS = (
    Parameter("gain", 1.5, units="uS"),
    Parameter("count", 3, kind=int),
    Parameter("fast", True, kind=bool),
    Parameter("label", "x", kind=str),
    Parameter("cores", [0], kind="cores"),
    Parameter("weights", np.zeros((2, 3)), kind="array"),
)


def _start(**overrides: Any) -> Start:
    values = {
        "gain": 2.5,
        "count": 7,
        "fast": False,
        "label": "hello µS",
        "cores": [0, 2, 5],
        "weights": np.arange(6.0).reshape(2, 3) / 7,
    }
    values.update(overrides)
    return Start(
        procedure="testproc",
        parameters={p.name: p.validate(values[p.name]) for p in PARAMETERS},
        streams=(
            StreamSpec("step", (), "i4", "1", "step number"),
            StreamSpec("trace", (8,), "f4", "uS", "a trace"),
        ),
        default_plot=("trace", "step"),
        metadata={"board_url": "mockchip://?seed=7&cores=1", "chip_id": "C1"},
        total=3,
    )


@pytest.fixture(scope="module")
def snapshot_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("runs") / "snap.h5"
    with Board(URL) as board:
        summary = run_procedure(ConductanceSnapshot(cores=[0, 1]), board, path, progress=False)
    assert summary.status == "success", summary.reason
    return path


def test_nexus_layout(snapshot_run: Path) -> None:
    with h5py.File(snapshot_run, "r") as f:
        root = dict(f.attrs)
        assert root["NX_class"] == "NXroot" and root["default"] == "entry"
        assert root["chipctl_format"] == FORMAT
        assert root["creator"].startswith("chipctl ")
        for key in ("file_time", "HDF5_Version", "h5py_version"):
            assert root[key]
        entry = f["entry"]
        assert entry.attrs["NX_class"] == "NXentry" and entry.attrs["default"] == "data"
        assert entry.attrs["procedure"] == "snapshot"
        assert entry.attrs["chip_id"] == "SIM-HERMES-0001"
        assert entry.attrs["board_url"] == URL
        assert entry.attrs["seed"] == 1
        assert entry.attrs["calibration_set_id"] == ""
        assert "+" in entry.attrs["start_time"] or entry.attrs["start_time"].endswith("Z")
        assert entry["parameters"].attrs["NX_class"] == "NXparameters"
        assert entry["instrument"].attrs["NX_class"] == "NXinstrument"
        assert entry["instrument"].attrs["n_cores"] == 2
        for name, dataset in entry["streams"].items():
            assert "units" in dataset.attrs, name
            assert dataset.attrs["long_name"], name
            assert dataset.maxshape[0] is None and dataset.shape[0] == 2
            chunk_bytes = dataset.dtype.itemsize * int(np.prod(dataset.chunks))
            assert 64 * 1024 <= chunk_bytes <= 1024 * 1024, (name, dataset.chunks)
        assert entry["streams/conductance"].attrs["units"] == "counts"
        data = entry["data"]
        assert data.attrs["NX_class"] == "NXdata"
        assert data.attrs["signal"] == "mean_counts"
        assert list(data.attrs["axes"]) == ["core"]
        assert isinstance(data.get("mean_counts", getlink=True), h5py.SoftLink)
        np.testing.assert_array_equal(data["core"][()], [0, 1])
        assert entry["run/status"][()] == b"success"
        assert entry["end_time"][()]


def test_reader_api(snapshot_run: Path) -> None:
    with RunFile.open(snapshot_run) as run:
        assert run.status == "success" and run.reason == ""
        assert run.streams == ["core", "conductance", "mean_counts", "board_time"]
        array, units = run.read_stream("conductance")
        assert array.shape == (2, 256, 256, 4) and array.dtype == np.uint16
        assert units == "counts"
        assert run.default_plot == ("mean_counts", "core")
        checkpoints = run.checkpoints
        assert [c["state"] for c in checkpoints] == [{"cores_done": 1}, {"cores_done": 2}]
        assert checkpoints[0]["rows"] == {
            "core": 1,
            "conductance": 1,
            "mean_counts": 1,
            "board_time": 1,
        }
        assert checkpoints[0]["board_time_s"] > 0
        assert run.metadata["parameters"] == {"cores": [0, 1]}
        with pytest.raises(RunFileError, match="no stream 'nope'"):
            run.stream("nope")


def test_parameters_round_trip_with_an_array(tmp_path: Path) -> None:
    start = _start()
    writer = RunWriter(tmp_path / "p.h5")
    writer(start)
    writer(Stop("success"))
    with RunFile.open(tmp_path / "p.h5") as run:
        back = run.parameters
        meta = run.metadata
    assert set(back) == set(start.parameters)
    for name, value in start.parameters.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(back[name], value)
            assert back[name].dtype == np.float64
        else:
            assert back[name] == value and type(back[name]) is type(value), name
    assert meta["seed"] == 7 and meta["chip_id"] == "C1"
    with h5py.File(tmp_path / "p.h5", "r") as f:
        assert f["entry/parameters/weights"].shape == (2, 3)
        assert f["entry/parameters"].attrs["gain"] == 2.5


def test_rows_and_checkpoints_and_lossy_casts(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path / "r.h5")
    writer(_start())
    writer(Data("step", np.int64(1)))
    writer(Data("trace", np.ones((3, 8)), rows=True))
    writer(Checkpoint({"done": 1}))
    with pytest.raises(RunFileError, match="do not fit"):
        writer(Data("step", np.int64(2**40)))
    with pytest.raises(RunFileError, match="cannot store dtype float64 as int32"):
        writer(Data("step", 1.5))
    with pytest.raises(RunFileError, match="shape"):
        writer(Data("trace", np.ones(7)))
    with pytest.raises(RunFileError, match="undeclared stream"):
        writer(Data("other", 1))
    writer.finish("aborted", "stopped")
    with RunFile.open(tmp_path / "r.h5") as run:
        assert run.rows() == {"step": 1, "trace": 3}
        assert run.checkpoints[0]["rows"] == {"step": 1, "trace": 3}
        assert run.status == "aborted" and run.reason == "stopped"


def test_live_reader_follows_a_file_being_written(tmp_path: Path) -> None:
    path = tmp_path / "live.h5"
    writer = RunWriter(path, flush_interval_s=60.0)
    writer(_start())
    with RunFile.open(path, live=True) as reader:
        assert reader.live and reader.status == "running"
        assert reader.rows() == {"step": 0, "trace": 0}
        for i in range(3):
            writer(Data("trace", np.full(8, i, np.float32)))
            writer.flush()
            reader.refresh()
            assert reader.rows()["trace"] == i + 1
        np.testing.assert_array_equal(reader.stream("trace")[:, 0], [0, 1, 2])
        writer(Checkpoint({"i": 3}))
        reader.refresh()
        assert reader.checkpoints[-1]["state"] == {"i": 3}
        writer(Stop("success"))
        reader.refresh()
        assert reader.status == "success" and reader.end_time


def test_background_flush_publishes_rows_without_explicit_flush(tmp_path: Path) -> None:
    path = tmp_path / "bg.h5"
    writer = RunWriter(path, flush_interval_s=0.05)
    writer(_start())
    writer(Data("step", 5))
    with RunFile.open(path, live=True) as reader:
        counts = list(reader.follow(interval_s=0.02, timeout_s=2.0))
        assert counts[-1]["step"] == 1
    writer.finish("success")


def test_reader_errors_name_the_file(tmp_path: Path, snapshot_run: Path) -> None:
    missing = tmp_path / "missing.h5"
    with pytest.raises(RunFileError, match="missing.h5: no such run file"):
        RunFile.open(missing)
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5 at all\n" * 100)
    with pytest.raises(RunFileError, match="notes.h5: not an HDF5 file"):
        RunFile.open(text)
    truncated = tmp_path / "cut.h5"
    truncated.write_bytes(snapshot_run.read_bytes()[: snapshot_run.stat().st_size // 2])
    with pytest.raises(RunFileError, match="cut.h5: truncated or damaged"):
        RunFile.open(truncated)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(RunFileError, match="foreign.h5: an HDF5 file but not a chipctl run"):
        RunFile.open(foreign)


def test_resume_source_cuts_streams_back_to_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "cut.h5"
    writer = RunWriter(path)
    writer(_start())
    for i in range(3):
        writer(Data("step", i))
        writer(Checkpoint({"i": i + 1}))
    writer(Data("step", 99))  # after the last checkpoint: dropped on resume
    writer.close()
    resumed = RunWriter(path, resume=ResumeSource(path, {"step": 3, "trace": 0}, 3))
    resumed(_start())
    resumed(Data("step", 3))
    resumed(Stop("success"))
    with RunFile.open(path) as run:
        np.testing.assert_array_equal(run.stream("step"), [0, 1, 2, 3])
        assert len(run.checkpoints) == 3 and run.status == "success"
        assert run.metadata["resume_count"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.h5"]


def test_helpers() -> None:
    assert seed_from_url("mockchip://?seed=12&cores=4") == 12
    assert seed_from_url("mockchip://?cores=4") == -1
    assert seed_from_url("socket://127.0.0.1:5555") == -1
    assert chunk_shape((256, 256, 4), "u2") == (1, 256, 256, 4)
    assert chunk_shape((), "f8") == (32768,)
    big = chunk_shape((1024, 1024), "f8")
    assert big[0] == 1 and 8 * np.prod(big) <= 1024 * 1024


def test_shutil_copy_of_a_finished_run_is_readable(tmp_path: Path, snapshot_run: Path) -> None:
    copy = tmp_path / "copy.h5"
    shutil.copy(snapshot_run, copy)
    with RunFile.open(copy) as run:
        assert run.status == "success"


# -- never clobbering -------------------------------------------------------------------------


def test_a_writer_never_replaces_a_file_that_appears_after_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check passed, then someone else's file took the name: exclusive creation refuses."""
    import chipctl.runfile.writer as writer_module
    from chipctl.runfile import RunFileExistsError

    path = tmp_path / "r.h5"
    real_check = writer_module.check_out

    def late_arrival(p: Path, **kwargs: Any) -> None:
        if not kwargs.get("mine"):
            path.write_bytes(b"someone else's data")  # appears between check and creation
            return
        if path.exists():
            return  # let the exclusive creation find it
        real_check(p, **kwargs)

    monkeypatch.setattr(writer_module, "check_out", late_arrival)
    monkeypatch.setattr(writer_module, "claim", lambda p, overwrite: late_arrival(p))
    writer = RunWriter(path)
    with pytest.raises(RunFileExistsError, match="r.h5 exists"):
        writer.start(_start())
    assert path.read_bytes() == b"someone else's data"
    assert not writer.is_open
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.h5"], "temporary file left"


def test_a_writer_refuses_what_it_may_not_replace_and_leaves_no_temporary_file(
    tmp_path: Path,
) -> None:
    from chipctl.runfile import RunFileExistsError, check_out

    (tmp_path / "dir").mkdir()
    with pytest.raises(RunFileExistsError, match="is not a regular file \\(a directory\\)"):
        RunWriter(tmp_path / "dir", overwrite=True).start(_start())
    held = RunWriter(tmp_path / "held.h5")
    held.start(_start())
    try:  # the same process holds it: refused even with overwrite, also for a second writer
        with pytest.raises(RunFileExistsError, match="being written by another run"):
            check_out(tmp_path / "held.h5", overwrite=True)
        with pytest.raises(RunFileExistsError, match="being written by another run"):
            RunWriter(tmp_path / "held.h5", overwrite=True).start(_start())
    finally:
        held.finish("success")
    check_out(tmp_path / "held.h5", overwrite=True)  # released when finished
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "held.h5"]


def test_fresh_run_names_never_collide() -> None:
    from chipctl.runfile import new_run_path, run_stamp

    names = {new_run_path("runs", "program").name for _ in range(2000)}
    assert len(names) == 2000
    stamp = run_stamp()
    assert len(stamp) == len("20261206-100000.123-abcdef") and stamp[15] == "."


def test_a_running_file_of_another_host_is_never_replaced(tmp_path: Path) -> None:
    """Whether its writer lives cannot be checked from here: refused even with overwrite."""
    from chipctl.runfile import RunFileExistsError, check_out

    path = tmp_path / "nfs.h5"
    writer = RunWriter(path)
    writer.start(_start())
    writer.close()  # still "running", as a live or killed writer leaves it
    check_out(path, overwrite=True)  # this host, a writer that is gone: may be replaced
    with h5py.File(path, "r+") as f:
        f["entry"].attrs["writer_host"] = "elsewhere"
    with pytest.raises(RunFileExistsError, match="may still be written by process .* elsewhere"):
        check_out(path, overwrite=True)
