"""Nothing the user has is ever lost: ``--out`` never replaces a file unless ``--overwrite``
says so (and then never a live run, a directory or a device), default names never collide, and
SIGTERM stops a run like Ctrl-C (file "aborted", resumable). Through the command line."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chipctl.cli import main
from chipctl.runfile import RunFile, RunFileError

URL = "mockchip://?seed=1&cores=1"
SNAPSHOT = ["snapshot", "--board", URL, "--cores", "0", "--no-progress"]


def _sum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refused(argv: list[str], path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``argv``: exit code 2, one line on stderr naming ``path``; returns the line."""
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0], captured.err
    assert "run file:" not in captured.out
    return lines[0]


def test_an_existing_run_file_of_another_procedure_is_refused_byte_for_byte(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.h5"
    assert main([*SNAPSHOT, "--out", str(out)]) == 0
    before = _sum(out)
    line = _refused(["drift", "--board", URL, "--cores", "0", "--out", str(out)], out, capsys)
    assert "(a chipctl run file of snapshot, success, " in line
    assert "give --overwrite to replace it" in line
    assert _sum(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.h5"], "temporary file left"
    # The recipe's step, power and demo: the same refusal, before anything runs.
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        f'board = "{URL}"\nout_dir = "."\n[[step]]\nprocedure = "snapshot"\nout = "x.h5"\n'
    )
    _refused(["run", str(recipe), "--no-progress"], out, capsys)
    _refused(["power", "up", "--out", str(out)], out, capsys)
    os.replace(out, tmp_path / "drift.h5")
    _refused(["demo", "--board", URL, "--out-dir", str(tmp_path)], tmp_path / "drift.h5", capsys)
    assert _sum(tmp_path / "drift.h5") == before
    # With --overwrite a finished run file is replaced.
    os.replace(tmp_path / "drift.h5", out)
    assert main(["run", str(recipe), "--no-progress", "--overwrite"]) == 0
    assert _sum(out) != before


def test_a_text_file_is_refused_unless_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    line = _refused([*SNAPSHOT, "--out", str(notes)], notes, capsys)
    assert line.endswith(
        f"{notes} exists and is not a chipctl run file; give --overwrite to replace it"
    )
    assert notes.read_text() == "my notes\n"
    assert main([*SNAPSHOT, "--out", str(notes), "--overwrite"]) == 0
    with RunFile.open(notes) as run:
        assert run.procedure == "snapshot"


@pytest.mark.parametrize("kind", ["directory", "fifo", "link to a fifo", "dangling link"])
def test_what_is_not_a_regular_file_is_refused_even_with_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    path = tmp_path / "out.h5"
    if kind == "directory":
        path.mkdir()
        (path / "keep").write_text("kept")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "link to a fifo":
        os.mkfifo(tmp_path / "fifo")
        path.symlink_to(tmp_path / "fifo")
    else:
        path.symlink_to(tmp_path / "nowhere")
    line = _refused([*SNAPSHOT, "--out", str(path), "--overwrite"], path, capsys)
    assert "is not a regular file" in line
    if kind == "directory":
        assert "(a directory)" in line and (path / "keep").read_text() == "kept"
    elif kind != "dangling link":
        assert "(a FIFO)" in line and os.path.lexists(path)
    assert not list(tmp_path.glob(".*.tmp"))


def test_default_names_made_in_the_same_second_differ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chipctl.cli.common import default_out
    from chipctl.recipe import load_recipe
    from chipctl.tui.app import run_file_path

    monkeypatch.chdir(tmp_path)
    names = [default_out("program") for _ in range(50)]
    names += [run_file_path(tmp_path, "program") for _ in range(50)]
    assert len({n.name for n in names}) == len(names)
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'board = "{URL}"\n[[step]]\nprocedure = "snapshot"\n')
    first, second = (load_recipe(recipe).steps[0].out for _ in range(2))
    assert first != second
    # Two runs of the same command one right after the other: two files.
    assert main(SNAPSHOT) == 0
    assert main(SNAPSHOT) == 0
    assert len(list((tmp_path / "runs").glob("snapshot-*.h5"))) == 2


def _cli(*argv: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "chipctl.cli", *argv],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_checkpoint(path: Path, process: subprocess.Popen[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            with RunFile.open(path, live=True) as run:
                if run.checkpoints:
                    return
        except RunFileError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint in {path} after {timeout_s} s")


def test_a_live_run_is_never_replaced_and_sigterm_stops_it_resumably(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real ``chipctl drift`` process (real-time clock, a few seconds) writes ``d.h5``:
    another command with the same ``--out`` is refused, with and without ``--overwrite``;
    SIGTERM ends the run "aborted" (exit 130, reason names SIGTERM); resume completes it."""
    out = tmp_path / "d.h5"
    drift = [
        "drift", "--board", "mockchip://?seed=1&cores=1&clock=real", "--cores", "0",
        "--sample", "64", "--min-counts", "0", "--start", "0.2s", "--until", "4s",
        "--points", "20", "--fit-from", "0.1", "--t0", "0.1", "--real-time",
        "--n-test", "16", "--n-readout", "4", "--no-progress", "--flush-interval", "0.1",
        "--out", str(out),
    ]  # fmt: skip
    writer = _cli(*drift, cwd=tmp_path)
    try:
        _wait_for_checkpoint(out, writer, timeout_s=20)
        inode = os.stat(out).st_ino
        for extra in ([], ["--overwrite"]):
            line = _refused([*SNAPSHOT, "--out", str(out), *extra], out, capsys)
            assert f"still being written by process {writer.pid}" in line
        with RunFile.open(out, live=True) as run:
            assert run.status == "running" and run.metadata["writer_pid"] == writer.pid
        assert os.stat(out).st_ino == inode
        writer.send_signal(signal.SIGTERM)
        _, err = writer.communicate(timeout=20)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert writer.returncode == 130, err
    assert "SIGTERM: stopping at the next safe point" in err
    with RunFile.open(out) as run:
        assert run.status == "aborted" and run.reason == "stopped by SIGTERM"
        done = len(run.checkpoints)
    assert 0 < done < 20
    resumed = _cli("resume", str(out), "--no-progress", cwd=tmp_path)
    stdout, err = resumed.communicate(timeout=30)
    assert resumed.returncode == 0, err
    assert f"chipctl resume: success; run file: {out}" in stdout
    with RunFile.open(out) as run:
        assert run.status == "success" and run.metadata["resume_count"] == 1
        # Every schedule point is measured or, when several passed at once on a loaded
        # machine, counted as skipped (drift's rule: the latest of them is measured once).
        assert len(run.checkpoints) + run.results.get("skipped_points", 0) == 20
