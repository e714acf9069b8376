"""Bad input as a user types it: a real ``chipctl`` process per row (issue 18, item 10).

Each row is a command line run by ``python -m chipctl.cli`` in a working folder holding the
user's files (run files, a text file, recipes, station files). The row asserts the exit code,
that the one error line names the offending input, that no traceback is printed, and that no
file the user had was changed, added or removed (checksums of the folder before and after).

The in-process tables (``test_bad_user_input.py``) cover every variant; these rows are one or
more of each kind, through the real entry point. ``docs/reliability.md`` lists the same rows:
``test_the_reliability_page_lists_every_row`` keeps the two in step.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from chipctl.runner import run_procedure
from chipctl.station import DEFAULT_STATION_TOML
from drivers.board import Board
from procedures.snapshot import ConductanceSnapshot

REPO = Path(__file__).resolve().parents[2]
RELIABILITY = REPO / "docs" / "reliability.md"
OUT = "--no-progress --out {dir}/out.h5"


def _run_file(folder: Path) -> None:
    """A finished snapshot run (the user's), and damaged copies of it."""
    path = folder / "snapshot.h5"
    with Board("mockchip://?seed=1&cores=1") as board:
        run_procedure(ConductanceSnapshot(cores=[0]), board, path, progress=False)
    truncated = folder / "truncated.h5"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    garbled = folder / "garbled.h5"
    shutil.copy(path, garbled)
    with h5py.File(garbled, "r+") as f:
        f["entry"].attrs["parameters"] = "{not json"


def _files(folder: Path) -> None:
    _run_file(folder)
    (folder / "notes.txt").write_text("measurement notes\n", encoding="utf-8")
    shutil.copy(folder / "snapshot.h5", folder / "another.h5")
    (folder / "csv").mkdir()
    (folder / "csv" / "core.csv").write_text("the user's own core.csv\n", encoding="utf-8")
    (folder / "csv" / "run.json").write_text('{"mine": true}\n', encoding="utf-8")
    (folder / "latin1.toml").write_bytes('board = "caf\xe9"\n'.encode("latin-1"))
    (folder / "station-binary.toml").write_bytes(bytes(range(256)) * 4)
    rated = DEFAULT_STATION_TOML.replace("smu_max_current_a = 1e-3", "smu_max_current_a = 100.0")
    assert rated != DEFAULT_STATION_TOML
    (folder / "station-100A.toml").write_text(rated, encoding="utf-8")
    np.save(folder / "w.npy", np.zeros((256, 256)))
    np.save(folder / "w-nan.npy", np.full((256, 256), np.nan))
    (folder / "w-text.npy").write_text("0 1 2\n", encoding="utf-8")


Row = tuple[str, str, int, tuple[str, ...]]
"""(name, command line with {dir} for the working folder, exit code, fragments of the error)."""

ROWS: list[Row] = [
    ("show-truncated-run", "show {dir}/truncated.h5", 1, ("truncated.h5", "truncated")),
    ("resume-garbled-metadata", "resume {dir}/garbled.h5", 1, ("garbled.h5", "not valid JSON")),
    ("plot-garbled-metadata", "plot {dir}/garbled.h5", 1, ("garbled.h5", "damaged run file")),
    (
        "out-onto-another-run",
        "snapshot --cores 0 --no-progress --out {dir}/snapshot.h5",
        2,
        ("snapshot.h5 exists", "--overwrite"),
    ),
    (
        "out-onto-a-text-file",
        "snapshot --cores 0 --no-progress --out {dir}/notes.txt",
        2,
        ("notes.txt exists and is not a chipctl run file",),
    ),
    (
        "out-onto-a-directory",
        "snapshot --cores 0 --no-progress --overwrite --out {dir}",
        2,
        ("is not a regular file",),
    ),
    (
        "export-onto-its-own-run",
        "export {dir}/snapshot.h5 --netcdf {dir}/snapshot.h5 --overwrite",
        2,
        ("{dir}/snapshot.h5 is the run file being read",),
    ),
    (
        "export-onto-another-run",
        "export {dir}/snapshot.h5 --netcdf {dir}/another.h5 --overwrite",
        2,
        ("{dir}/another.h5 exists", "a run file is never replaced"),
    ),
    (
        "export-onto-a-text-file",
        "export {dir}/snapshot.h5 --netcdf {dir}/notes.txt",
        2,
        ("{dir}/notes.txt exists", "give --overwrite"),
    ),
    (
        "export-csv-onto-existing-files",
        "export {dir}/snapshot.h5 --csv {dir}/csv",
        2,
        ("{dir}/csv already holds", "core.csv", "run.json", "give --overwrite"),
    ),
    (
        "plot-onto-its-own-run",
        "plot {dir}/snapshot.h5 --out {dir}/snapshot.h5 --overwrite",
        2,
        ("{dir}/snapshot.h5 is the run file being read",),
    ),
    (
        "plot-onto-another-run",
        "plot {dir}/snapshot.h5 --out {dir}/another.h5 --overwrite",
        2,
        ("{dir}/another.h5 exists", "a run file is never replaced"),
    ),
    ("recipe-not-utf8", "run {dir}/latin1.toml", 2, ("latin1.toml", "not a UTF-8 text file")),
    (
        "station-not-utf8",
        "station check --station {dir}/station-binary.toml",
        2,
        ("station-binary.toml", "not a UTF-8 text file"),
    ),
    (
        "station-limit-above-rating",
        "station check --station {dir}/station-100A.toml",
        2,
        ("smu_max_current_a", "100 A", "1.05 A"),
    ),
    (
        "url-port-out-of-range",
        "identify --board socket://127.0.0.1:99999",
        2,
        ("socket://127.0.0.1:99999", "port 99999 is out of range"),
    ),
    ("url-port-missing", "identify --board socket://host", 2, ("socket://host", "has no port")),
    ("cores-negative", "snapshot --cores -1 " + OUT, 2, ("core id -1 is negative",)),
    ("cores-word", "snapshot --cores abc " + OUT, 2, ("'abc' is not a core id",)),
    ("duration-word", "drift --until soon " + OUT, 2, ("parameter until", "'soon'")),
    (
        "weights-nan",
        "program --weights {dir}/w-nan.npy " + OUT,
        2,
        ("parameter weights", "NaN"),
    ),
    (
        "weights-text-file",
        "program --weights {dir}/w-text.npy " + OUT,
        2,
        ("w-text.npy", "not a .npy array file"),
    ),
    (
        "infer-model-does-not-fit-data",
        "infer --model digits_mlp --dataset mnist1d " + OUT,
        2,
        ("digits_mlp", "mnist1d"),
    ),
]


@pytest.fixture(scope="module")
def user_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("user")
    _files(folder)
    return folder


def _checksums(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.mark.parametrize(
    ("line", "code", "fragments"),
    [pytest.param(line, code, fragments, id=name) for name, line, code, fragments in ROWS],
)
def test_bad_input_typed_at_the_command_line(
    user_files: Path, line: str, code: int, fragments: tuple[str, ...]
) -> None:
    before = _checksums(user_files)
    argv = [part.format(dir=user_files) for part in shlex.split(line)]
    env = {**os.environ, "COLUMNS": "200", "CHIPCTL_LOG_DIR": str(user_files.parent / "logs")}
    done = subprocess.run(
        [sys.executable, "-m", "chipctl.cli", *argv],
        cwd=user_files,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("chipctl ")]
    assert len(errors) == 1, done.stderr
    assert done.returncode == code, done.stderr
    for fragment in fragments:
        assert fragment.format(dir=user_files) in errors[0], errors[0]
    assert _checksums(user_files) == before, "a file the user had was changed, added or removed"


def _documented_rows() -> dict[str, int]:
    """Row name → exit code from the table of docs/reliability.md's bad-input section."""
    text = RELIABILITY.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([a-z0-9-]+)` \|.*\| (\d) \|", text, re.MULTILINE)
    return {name: int(code) for name, code in rows}


def test_the_reliability_page_lists_every_row() -> None:
    documented = _documented_rows()
    expected = {name: code for name, _, code, _ in ROWS}
    assert documented == expected
