"""What ``chipctl resume`` refuses so that no run is continued twice or behind the user's back:
a file another host may still be writing, a second resume of the same run, a file this
process is writing; and that ``--station`` keeps its interlock on a resumed run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from chipctl import catalog
from chipctl.cli import main
from chipctl.resume import ResumeError, plan_resume
from chipctl.runfile import RunFile
from chipctl.runfile.paths import hold, release
from chipctl.runner import run_procedure
from drivers.board import Board

BOARD = "mockchip://?seed=1&cores=2"


def _aborted_snapshot(path: Path) -> Path:
    with Board(BOARD) as board:
        procedure = catalog.build("snapshot", {"cores": "0-1"})
        summary = run_procedure(procedure, board, path, progress=False, should_stop=lambda: True)
    assert summary.status == "aborted"
    return path


def _mark_running(path: Path, *, host: str, pid: int) -> None:
    with h5py.File(path, "r+") as f:
        del f["entry/run/status"]
        f["entry/run"].create_dataset("status", data=b"running", dtype="S16")
        f["entry"].attrs["writer_host"] = host
        f["entry"].attrs["writer_pid"] = pid


def test_a_file_running_on_another_host_needs_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _aborted_snapshot(tmp_path / "snap.h5")
    _mark_running(path, host="labpc-2", pid=4242)
    assert main(["resume", str(path), "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert "host labpc-2" in err and "--force" in err
    with RunFile.open(path) as run:
        assert run.status == "running", "the refused resume left the file alone"
    assert main(["resume", str(path), "--no-progress", "--force"]) == 0
    with RunFile.open(path) as run:
        assert run.status == "success"


def test_a_second_resume_of_the_same_run_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _aborted_snapshot(tmp_path / "snap.h5")
    lock = tmp_path / ".snap.h5.resume.lock"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket

        lock.write_text(f"{sleeper.pid} {socket.gethostname()}", encoding="utf-8")
        assert main(["resume", str(path), "--no-progress"]) != 0
        assert "another resume of this run is going" in capsys.readouterr().err
        with RunFile.open(path) as run:
            assert run.status == "aborted"
    finally:
        sleeper.kill()
        sleeper.wait()
    # The lock of a dead process is taken over; the lock is gone after the resume.
    assert main(["resume", str(path), "--no-progress"]) == 0
    assert not lock.exists()


def test_a_file_this_process_is_writing_is_not_resumed(tmp_path: Path) -> None:
    path = _aborted_snapshot(tmp_path / "snap.h5")
    hold(path)
    try:
        with pytest.raises(ResumeError, match="this process is writing it"):
            plan_resume(path)
    finally:
        release(path)
    assert plan_resume(path).procedure == "snapshot"


def test_resume_with_a_station_keeps_its_interlock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A killed program run resumed with --station runs behind that station: with its rails
    off, the interlock refuses the pulses (the run fails, naming the rail)."""
    import numpy as np

    from chipctl.station import DEFAULT_STATION_TOML

    station = tmp_path / "station.toml"
    text = DEFAULT_STATION_TOML.replace("time_scale = 1.0", "time_scale = 0.0")
    station.write_text(text.replace('"mockchip://?seed=1"', f'"{BOARD}"'), encoding="utf-8")
    weights = np.random.default_rng(0).normal(size=(256, 256))
    path = tmp_path / "program.h5"
    polls = {"n": 0}

    def stop_soon() -> bool:
        polls["n"] += 1
        return polls["n"] > 2

    with Board(BOARD) as board:
        procedure = catalog.build(
            "program", {"weights": weights, "cores": "0-1", "cores_per_group": 1}
        )
        run_procedure(procedure, board, path, progress=False, should_stop=stop_soon)
    assert main(["resume", str(path), "--no-progress", "--station", str(station)]) == 1
    out = capsys.readouterr().out
    assert "failed" in out and "SafetyLimitError" in out


def test_a_resume_removes_the_temporaries_of_killed_runs(tmp_path: Path) -> None:
    path = _aborted_snapshot(tmp_path / "snap.h5")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".snap.h5.resume-{dead.pid}-abc123.tmp"
    stale.write_bytes(b"x" * 1000)
    other = tmp_path / ".other.h5.new-1-abc123.tmp"
    other.write_bytes(b"y")
    assert main(["resume", str(path), "--no-progress"]) == 0
    assert not stale.exists() and other.exists()
