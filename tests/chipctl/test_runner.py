"""The runner on the simulated board: success, failure, abort, real Ctrl-C, forced Ctrl-C."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from chipctl.runfile import RunFile
from chipctl.runner import run_procedure
from drivers.board import Board
from procedures.base import Checkpoint, Data, Parameter, Procedure, Progress, Record, StreamSpec
from procedures.snapshot import ConductanceSnapshot

URL = "mockchip://?seed=1&cores=2"


class Pulsing(Procedure):
    """Enables the write heads (one SET pulse), then does ``steps`` short units of work."""

    name: ClassVar[str] = "pulsing"
    parameters: ClassVar[tuple[Parameter, ...]] = (
        Parameter("steps", 5, kind=int, minimum=1),
        Parameter("sleep_s", 0.0, units="s", minimum=0.0),
        Parameter("check", True, kind=bool),
        Parameter("fail_at", -1, kind=int),
        Parameter("error", "TypeError", kind=str),
    )

    def streams(self) -> tuple[StreamSpec, ...]:
        return (StreamSpec("value", (), "f8", "uS", "a value per step"),)

    def total(self) -> int:
        return int(self.params["steps"])

    def execute(
        self, board: Board, *, resume_from: dict[str, Any] | None = None
    ) -> Iterator[Progress | Data | Checkpoint]:
        board.apply_pulses(0, 0, 0, 0, "set", 100, 100)
        for step in range(self.params["steps"]):
            if self.params["check"]:
                self.check_stop()
            if step == self.params["fail_at"]:
                raise {"TypeError": TypeError, "ValueError": ValueError}[self.params["error"]](
                    f"boom at step {step}"
                )
            time.sleep(self.params["sleep_s"])
            yield Data("value", float(step))
            yield Checkpoint({"done": step + 1})
            yield Progress(step + 1, self.params["steps"])


def _heads(board: Board) -> bool:
    return bool(board.link.port.board.write_heads_enabled)  # type: ignore[attr-defined]


def test_snapshot_succeeds_and_other_subscribers_see_every_record(tmp_path: Path) -> None:
    seen: list[Record] = []
    with Board(URL) as board:
        summary = run_procedure(
            ConductanceSnapshot(cores=[0, 1]),
            board,
            tmp_path / "s.h5",
            progress=False,
            subscribers=[seen.append],
        )
    assert summary.status == "success" and summary.reason == ""
    assert summary.path == tmp_path / "s.h5" and summary.elapsed_s > 0
    kinds = [type(r).__name__ for r in seen]
    assert kinds[0] == "Start" and kinds[-1] == "Stop" and kinds.count("Checkpoint") == 2
    with RunFile.open(summary.path) as run:
        assert run.status == "success"
        assert run.stream("conductance").shape == (2, 256, 256, 4)
        np.testing.assert_array_equal(run.stream("core"), [0, 1])


@pytest.mark.parametrize("error", ["TypeError", "ValueError"])
def test_a_procedure_that_raises_ends_failed_with_the_text(tmp_path: Path, error: str) -> None:
    with Board(URL) as board:
        summary = run_procedure(
            Pulsing(fail_at=2, error=error), board, tmp_path / "f.h5", progress=False
        )
        assert not _heads(board), "cleanup did not run"
    assert summary.status == "failed"
    assert f"{error}: boom at step 2" in summary.reason
    with RunFile.open(tmp_path / "f.h5") as run:
        assert run.status == "failed" and "boom at step 2" in run.reason
        np.testing.assert_array_equal(run.stream("value"), [0.0, 1.0])


def test_should_stop_aborts_and_cleanup_runs(tmp_path: Path) -> None:
    calls = {"n": 0}

    def stop_after_two() -> bool:
        calls["n"] += 1
        return calls["n"] > 2

    with Board(URL) as board:
        summary = run_procedure(
            Pulsing(steps=10), board, tmp_path / "a.h5", progress=False, should_stop=stop_after_two
        )
        assert not _heads(board), "write heads still enabled: cleanup did not run"
    assert summary.status == "aborted"
    with RunFile.open(tmp_path / "a.h5") as run:
        assert run.status == "aborted" and "operator" in run.reason
        assert run.rows() == {"value": 2}


def _send_sigint(after_s: float, times: int = 1, gap_s: float = 0.1) -> threading.Thread:
    def _kill() -> None:
        time.sleep(after_s)
        for _ in range(times):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(gap_s)

    thread = threading.Thread(target=_kill, daemon=True)
    thread.start()
    return thread


def test_a_real_sigint_aborts_at_the_next_safe_point(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGINT)
    with Board(URL) as board:
        thread = _send_sigint(0.2)
        summary = run_procedure(
            Pulsing(steps=500, sleep_s=0.01), board, tmp_path / "i.h5", progress=False
        )
        thread.join()
        assert not _heads(board)
    assert summary.status == "aborted"
    assert signal.getsignal(signal.SIGINT) is before, "SIGINT handler not restored"
    with RunFile.open(tmp_path / "i.h5") as run:
        assert run.status == "aborted"
        assert 0 < run.rows()["value"] < 500


def test_a_second_sigint_forces_and_the_file_still_ends_aborted(tmp_path: Path) -> None:
    with Board(URL) as board:
        thread = _send_sigint(0.2, times=2)
        with pytest.raises(KeyboardInterrupt):
            run_procedure(
                Pulsing(steps=500, sleep_s=0.01, check=False),
                board,
                tmp_path / "k.h5",
                progress=False,
            )
        thread.join()
        assert not _heads(board), "cleanup did not run after a forced stop"
    with RunFile.open(tmp_path / "k.h5") as run:
        assert run.status == "aborted" and run.reason == "forced"


def test_no_sigint_handler_outside_the_main_thread(tmp_path: Path) -> None:
    result: dict[str, str] = {}

    def _run() -> None:
        with Board(URL) as board:
            result["status"] = run_procedure(
                Pulsing(steps=2), board, tmp_path / "t.h5", progress=False
            ).status

    thread = threading.Thread(target=_run)
    thread.start()
    thread.join()
    assert result["status"] == "success"


def test_a_subscriber_failing_on_the_stop_record_fails_the_run_file(tmp_path: Path) -> None:
    """E.g. a calibration set that cannot be stored: the file must not say "success"."""
    from chipctl.runfile import RunFile
    from chipctl.runner import run_procedure
    from drivers.board import Board
    from procedures.base import Stop
    from procedures.snapshot import ConductanceSnapshot

    def fails_on_stop(record: object) -> None:
        if isinstance(record, Stop):
            raise OSError("disk full")

    path = tmp_path / "snap.h5"
    with Board("mockchip://?seed=1&cores=1") as board:
        summary = run_procedure(
            ConductanceSnapshot(cores=[0]), board, path, progress=False, subscribers=[fails_on_stop]
        )
    assert summary.status == "failed" and "disk full" in summary.reason
    with RunFile.open(path) as run:
        assert run.status == "failed"


def _send(signum: int, after_s: float, times: int = 1, gap_s: float = 0.1) -> threading.Thread:
    def _kill() -> None:
        time.sleep(after_s)
        for _ in range(times):
            os.kill(os.getpid(), signum)
            time.sleep(gap_s)

    thread = threading.Thread(target=_kill, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_like_ctrl_c_and_name_the_signal(tmp_path: Path, name: str) -> None:
    signum = getattr(signal, name)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    with Board(URL) as board:
        thread = _send(signum, 0.2)
        summary = run_procedure(
            Pulsing(steps=500, sleep_s=0.01), board, tmp_path / "t.h5", progress=False
        )
        thread.join()
        assert not _heads(board), "cleanup did not run"
    assert summary.status == "aborted" and summary.reason == f"stopped by {name}"
    after = {s: signal.getsignal(s) for s in before}
    assert after == before, "signal handlers not restored"
    with RunFile.open(tmp_path / "t.h5") as run:
        assert run.status == "aborted" and run.reason == f"stopped by {name}"
        assert 0 < run.rows()["value"] < 500


def test_a_second_sigterm_forces(tmp_path: Path) -> None:
    with Board(URL) as board:
        thread = _send(signal.SIGTERM, 0.2, times=2)
        with pytest.raises(KeyboardInterrupt):
            run_procedure(
                Pulsing(steps=500, sleep_s=0.01, check=False),
                board,
                tmp_path / "f.h5",
                progress=False,
            )
        thread.join()
        assert not _heads(board), "cleanup did not run after a forced stop"
    with RunFile.open(tmp_path / "f.h5") as run:
        assert run.status == "aborted" and run.reason == "forced by SIGTERM"


def test_an_existing_path_is_refused_before_the_procedure_starts(tmp_path: Path) -> None:
    from chipctl.runfile import RunFileExistsError

    path = tmp_path / "keep.h5"
    path.write_bytes(b"not a run file")
    with Board(URL) as board:
        with pytest.raises(RunFileExistsError, match="keep.h5 exists and is not a chipctl run"):
            run_procedure(Pulsing(steps=2), board, path, progress=False)
        assert not _heads(board), "the procedure reached the board"
        assert path.read_bytes() == b"not a run file"
        summary = run_procedure(Pulsing(steps=2), board, path, progress=False, overwrite=True)
    assert summary.status == "success"
    with RunFile.open(path) as run:
        assert run.procedure == "pulsing"
    assert not list(tmp_path.glob(".*.tmp")), "temporary file left behind"
