"""A killed sweep (issue 18.9): ``chipctl sweep`` SIGKILLed twice, once before any point
finished and once in the middle of a later point, then run again to its end. The result file
must open after every kill, keep the points that finished (their rows untouched by the
re-runs), compute only the rest, and end with exactly the rows of an uninterrupted sweep (but
for where and how long each point ran).

The command runs in a process forked from the forkserver (:mod:`tests.reliability.forked`),
on a Dask cluster inside that process (``chipctl.sweep.execute.dask_client`` replaced by an
in-process client, as ``tests/chipctl/test_sweep.py`` passes ``client=``): it starts in a
fraction of a local process cluster's time, and the SIGKILL of the one process kills the whole
sweep, scheduler and worker included.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from chipctl.sweep import read_rows, read_summary
from tests.reliability import forked

SPEC = """
name = "killed"
kind = "mvm"

[grid]
seeds = "1-4"
mode = ["odp"]
compensation = ["none", "gdc"]
drift = ["25s", "1d"]

[settings]
cores = 1
inputs = 256
"""
POINTS = 4
VOLATILE = ("worker", "wall_s")
"""Columns that say where and how long a point ran: they differ between any two sweeps."""
POINT_LINE = re.compile(r"^\[(\d+)/(\d+)\] seed \d+ ", re.MULTILINE)


def _argv(spec: Path, out: Path) -> list[str]:
    return ["sweep", str(spec), "--out", str(out), "--no-progress"]


def _points_logged(out: Path, offset: int) -> int:
    """Points the command reported finished in its log after ``offset`` characters."""
    return len(POINT_LINE.findall(forked.log_text(out)[offset:]))


def _sorted_rows(out: Path) -> dict[str, np.ndarray]:
    """The result file's rows, in a fixed order (point key, drift, compensation)."""
    rows = read_rows(out)
    order = np.lexsort((rows["compensation"], rows["drift"], rows["key"]))
    return {name: values[order] for name, values in rows.items()}


def _keys(out: Path) -> set[str]:
    return set(read_rows(out)["key"].tolist()) if out.exists() else set()


def _kill_after(ctx: Any, spec: Path, out: Path, points: int, delay: float) -> tuple[int, set[str]]:
    """Run the sweep on ``out`` until it reported ``points`` more points (0: until the result
    file exists), ``delay`` s more, SIGKILL it; (points it reported, point keys in the file)."""
    offset = len(forked.log_text(out))
    process = forked.start(ctx, _argv(spec, out), out, dask_in_process=True)
    if points:
        forked.wait_for(lambda: _points_logged(out, offset) >= points, process)
    else:
        forked.wait_for(out.exists, process)
    time.sleep(delay)
    assert forked.kill(process) == -9, f"the sweep ended before the kill: {forked.log_text(out)}"
    return _points_logged(out, offset), _keys(out)  # the file must open


@pytest.mark.slow
def test_sigkilled_sweep_keeps_finished_points_and_completes_identically(
    forkserver: Any, tmp_path: Path
) -> None:
    spec = tmp_path / "killed.toml"
    spec.write_text(SPEC, encoding="utf-8")

    # the uninterrupted sweep, timing its points
    reference = tmp_path / "reference.h5"
    process = forked.start(forkserver, _argv(spec, reference), reference, dask_in_process=True)
    finished: list[float] = []
    while process.is_alive():
        finished += [time.monotonic()] * (_points_logged(reference, 0) - len(finished))
        time.sleep(0.005)
    process.join()
    assert process.exitcode == 0, forked.log_text(reference)
    want = _sorted_rows(reference)
    assert len(want["key"]) == POINTS * 2 * 2 and set(want["status"]) == {"ok"}
    point_s = float(np.median(np.diff(finished)))

    out = tmp_path / "killed.h5"
    landed = []
    # kill 1: the result file exists, no point has finished
    points, keys = _kill_after(forkserver, spec, out, 0, 0.1 * point_s)
    landed.append(("file created + 0.1 point", points, len(keys)))
    assert points == 0 and not keys, landed
    # kill 2: the re-run finished one point and is half-way through the next
    points, keys = _kill_after(forkserver, spec, out, 1, 0.5 * point_s)
    landed.append(("1 point + 0.5 point", points, len(keys)))
    assert 1 <= points <= len(keys) < POINTS, landed  # a point stored, not yet reported
    kept = _sorted_rows(out)

    # the last re-run: only the missing points
    offset = len(forked.log_text(out))
    assert forked.run(forkserver, _argv(spec, out), out, dask_in_process=True) == 0
    log = forked.log_text(out)[offset:]
    done = f"{POINTS - len(keys)} point(s) run, {len(keys)} already in the file"
    print(f"\nsweep: {POINTS} points of ~{point_s:.2f} s; (kill, points reported, points in the "
          f"file): {landed}; the re-run: {done}: {done in log}")  # fmt: skip
    assert done in log, log

    got = _sorted_rows(out)
    assert got.keys() == want.keys()
    for name in want:
        if name not in VOLATILE:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    # the points that finished before the kill were kept as they were, not computed again
    before = np.isin(got["key"], sorted(keys))
    assert before.sum() == len(kept["key"])
    for name in kept:
        np.testing.assert_array_equal(got[name][before], kept[name], err_msg=name)
    summary, summary_want = read_summary(out), read_summary(reference)
    for name in summary_want:
        np.testing.assert_array_equal(summary[name], summary_want[name], err_msg=name)
