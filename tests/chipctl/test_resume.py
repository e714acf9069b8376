"""Resume: a SIGKILLed ``chipctl snapshot`` is finished by ``chipctl resume`` and then equals an
uninterrupted run of the same command, stream for stream."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from chipctl.cli import main
from chipctl.resume import ResumeError, resume_run
from chipctl.runfile import RunFile, RunFileError
from chipctl.runner import run_procedure
from drivers.board import Board
from procedures.snapshot import ConductanceSnapshot

ROOT = Path(__file__).resolve().parents[2]
# Every reply is held back 30 ms (fault injection touches no chip state), so the child is still
# running when the test sees its first checkpoints.
SLOW_URL = "mockchip://?seed=3&cores=8&delay_rate=1&delay_s=0.03"


def _chipctl(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "chipctl.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _checkpoints(path: Path) -> int:
    try:
        with RunFile.open(path, live=True) as run:
            return len(run.checkpoints)
    except RunFileError:
        return 0  # not created yet


def test_sigkilled_run_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    killed, reference = tmp_path / "killed.h5", tmp_path / "reference.h5"
    command = ["snapshot", "--board", SLOW_URL, "--cores", "0-7", "--no-progress"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [sys.executable, "-m", "chipctl.cli", *command, "--out", str(killed)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while _checkpoints(killed) < 2:
            assert child.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL

    with RunFile.open(killed) as run:
        assert run.status == "running"  # it never finished
        done = run.checkpoints[-1]["state"]["cores_done"]
        assert 2 <= done < 8, "killed too late to test a resume"

    result = _chipctl("resume", str(killed), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "success" in result.stdout and str(killed) in result.stdout
    result = _chipctl(*command, "--out", str(reference))
    assert result.returncode == 0, result.stderr

    with RunFile.open(killed) as resumed, RunFile.open(reference) as whole:
        assert resumed.status == "success"
        assert resumed.metadata["resume_count"] == 1
        assert resumed.start_time <= whole.start_time
        assert [c["state"] for c in resumed.checkpoints] == [{"cores_done": n} for n in range(1, 9)]
        assert resumed.streams == whole.streams
        for name in whole.streams:
            np.testing.assert_array_equal(resumed.stream(name), whole.stream(name), err_msg=name)


def test_resume_without_a_checkpoint_restarts_in_the_same_file(tmp_path: Path) -> None:
    url = "mockchip://?seed=5&cores=3"
    aborted, whole = tmp_path / "aborted.h5", tmp_path / "whole.h5"
    with Board(url) as board:
        summary = run_procedure(
            ConductanceSnapshot(cores="0-2"),
            board,
            aborted,
            progress=False,
            should_stop=lambda: True,
        )
    assert summary.status == "aborted"
    with RunFile.open(aborted) as run:
        assert run.checkpoints == [] and run.rows()["core"] == 0
    assert resume_run(aborted, progress=False).status == "success"
    with Board(url) as board:
        run_procedure(ConductanceSnapshot(cores="0-2"), board, whole, progress=False)
    with RunFile.open(aborted) as a, RunFile.open(whole) as b:
        assert a.status == "success"
        for name in b.streams:
            np.testing.assert_array_equal(a.stream(name), b.stream(name), err_msg=name)


def test_resume_of_a_finished_run_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "done.h5"
    with Board("mockchip://?seed=1&cores=1") as board:
        run_procedure(ConductanceSnapshot(), board, path, progress=False)
    with pytest.raises(ResumeError, match="already finished successfully"):
        resume_run(path, progress=False)
    assert main(["resume", str(path)]) == 1
    assert "done.h5: the run already finished successfully" in capsys.readouterr().err


def test_resume_of_a_non_hdf5_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    assert main(["resume", str(path)]) == 1
    assert "notes.txt: not an HDF5 file" in capsys.readouterr().err
    assert main(["resume", str(tmp_path / "gone.h5")]) == 1
    assert "gone.h5: no such run file" in capsys.readouterr().err


def _aborted_snapshot(path: Path) -> None:
    from chipctl.runner import run_procedure
    from drivers.board import Board
    from procedures.snapshot import ConductanceSnapshot

    calls = {"n": 0}

    def stop_after_first_core() -> bool:
        calls["n"] += 1
        return calls["n"] > 1

    with Board("mockchip://?seed=1&cores=2") as board:
        summary = run_procedure(
            ConductanceSnapshot(cores=[0, 1]), board, path, progress=False,
            should_stop=stop_after_first_core,
        )  # fmt: skip
    assert summary.status == "aborted"


def test_resume_refuses_another_chip(tmp_path: Path) -> None:
    from chipctl.resume import ResumeError, resume_run

    path = tmp_path / "snap.h5"
    _aborted_snapshot(path)
    with pytest.raises(ResumeError, match="SIM-HERMES-0002"):
        resume_run(path, board_url="mockchip://?seed=2&cores=2", progress=False)
    assert resume_run(path, progress=False).status == "success"


def test_resume_refuses_a_procedure_that_cannot_resume_before_touching_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chipctl.resume import ResumeError, resume_run
    from chipctl.runfile import RunFile
    from chipctl.runner import run_procedure
    from drivers.board import Board
    from procedures.drift import DriftMonitor
    from procedures.programming.iterative import program_core
    from procedures.programming.targets import weight_targets

    path = tmp_path / "drift.h5"
    with Board("mockchip://?seed=1&cores=1") as board:
        weights = np.random.default_rng(0).uniform(-1, 1, (256, 256))
        program_core(board, 0, weight_targets(weights))
        calls = {"n": 0}

        def stop_soon() -> bool:
            calls["n"] += 1
            return calls["n"] > 3

        run_procedure(
            DriftMonitor(cores=[0], until=3600.0, points=6, sample=64), board, path,
            progress=False, should_stop=stop_soon,
        )  # fmt: skip
    with RunFile.open(path) as run:
        before = (run.status, run.reason)
    monkeypatch.setattr(DriftMonitor, "resumable", False)  # every shipped procedure resumes
    with pytest.raises(ResumeError, match="cannot be resumed"):
        resume_run(path, progress=False)
    with RunFile.open(path) as run:
        assert (run.status, run.reason) == before
