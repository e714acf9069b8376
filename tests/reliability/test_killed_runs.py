"""Killed runs (issue 8; harder in issue 18.9): SIGKILL a procedure's ``chipctl`` command in
every stretch of its run; the run file must always open, and ``chipctl resume`` must finish it
with exactly the result of an uninterrupted run (every stream, the results, the stored
calibration set).

Every procedure runs long enough for ≥ 8 checkpoints (:data:`MIN_CHECKPOINTS`) and short
enough to be killed a dozen times. The uninterrupted reference run records when each
checkpoint appears in its file; then one kill is planned before the run file exists and one
in each stretch between checkpoints (k checkpoints in the file, then a fixed-seed random
fraction of that stretch), after the last one included. Where each kill landed is read from
the killed file (its checkpoint count), and a stretch no planned kill landed in gets a kill
right after its checkpoint appears (:data:`RETRIES`): the test asserts that kills landed in
every stretch between the first and the last checkpoint and before the first one (a procedure
that checkpoints as it starts, ``calibrate``: after the last one instead), and prints where
each kill landed. ``compensate`` has no
checkpoint (one idempotent step, restarted in the same file): its kills are spread by time
over the run. A killed file that does not open fails the test.

The commands run in processes forked from a forkserver (:mod:`tests.reliability.forked`).
The board of a killed ``mockchip://`` run dies with the process, so a resume runs on a fresh
simulated chip of the same seed (the runner restores the virtual clock); procedures resume from
a checkpoint with work that only touches cores not touched before (per-core random streams;
program, calibrate: per group of cores). A drift run follows the same programmed cores
throughout, so it runs against a simulator server (``socket://``; the chip state outlives the
command, like non-volatile PCM). The killed server's chip is rebuilt for the resume as a fresh
server of the same seed plus the same setup, replayed to the killed run's last checkpoint (the
simulator is deterministic; a real chip would simply still be there). Then ``chipctl resume
RUN.h5 --board URL``. :func:`test_drift_resumed_late_on_the_surviving_server` resumes a killed
drift run on the server that outlived it, after its clock moved on.

One table entry per procedure (:data:`CASES`): its command, board, setup and what to compare.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from chipctl.runfile import RunFile, RunFileError
from drivers.board import Board
from tests.reliability import forked

MIN_CHECKPOINTS = 8
"""Checkpoints of every checkpointing procedure's run (issue 18.9)."""
RETRIES = 3
"""Extra kills per stretch that no planned kill landed in (each right after its checkpoint)."""
KILL_SEED = 2026
TIME_KILLS = 5
"""Kills of a procedure without checkpoints (compensate), spread by time over its run."""


# -- the table --------------------------------------------------------------------------------


def _pulse_setup(board: Board) -> None:
    """Drift's programmed cores: SET pulses on 4096 random devices of cores 0 and 1."""
    rng = np.random.default_rng(3)
    for core in (0, 1):
        rows, cols = rng.integers(0, 256, (2, 4096))
        board.apply_pulses(core, rows, cols, rng.integers(0, 4, 4096), "set", 300, 1000)


@dataclass(frozen=True)
class KillCase:
    """One procedure under SIGKILL.

    Attributes:
        name: the ``chipctl`` subcommand (= procedure name).
        args: its options, space-separated (``--board`` and ``--out`` are added); ``{work}``
            is the work folder.
        seed: simulated chip seed (``mockchip://?seed=N&cores=C`` or a server of that seed).
        cores: cores of the simulated chip.
        server_setup: if set, the board is a simulator server (the chip outlives the command)
            prepared by this function; the resume gets a fresh server, the same setup and a
            replay of the procedure to the killed run's last checkpoint.
        ignore_results: result keys that differ between any two runs (timestamps).
        ignore_streams: streams that differ between any two runs (measured wall-clock rates).
        calibration_set: compare the calibration set the run stored (``calibrate``).
        prepare: writes input files into the work folder (given the case).
        checkpoint_at_start: the procedure's first checkpoint comes as it starts, so there is
            no stretch worth killing in before it (``calibrate``).
    """

    name: str
    args: str
    seed: int
    cores: int = 8
    server_setup: Callable[[Board], None] | None = None
    ignore_results: tuple[str, ...] = ()
    ignore_streams: tuple[str, ...] = ()
    calibration_set: str = ""
    prepare: Callable[[Path, KillCase], None] = field(default=lambda work, case: None)
    checkpoint_at_start: bool = False


def _weights(work: Path, case: KillCase) -> None:
    """A layer's weights with 90 % zeros (zero cells converge at once: a short run)."""
    rng = np.random.default_rng(1)
    weights = rng.uniform(-1, 1, (256, 256)) * (rng.random((256, 256)) < 0.1)
    np.save(work / "w.npy", weights)


COMPENSATE_READOUT = "--readout sum --repeats 1024"
"""Compensate's readout: 1024 MVMs of all-127 inputs per core (a run long enough to kill)."""


def _gdc_reference(work: Path, case: KillCase) -> None:
    """A GDC reference measured by ``compensate`` (empty reference) on the case's chip: the
    killed runs then compensate against it and load the LDPU."""
    from chipctl import catalog
    from procedures.base import Data

    raw = {"cores": "0-1", "readout": "sum", "repeats": "1024"}
    with Board(f"mockchip://?seed={case.seed}&cores={case.cores}") as board:
        records = list(catalog.build("compensate", raw).run(board))
    (reference,) = [r.values for r in records if isinstance(r, Data) and r.stream == "reference"]
    np.save(work / "reference.npy", reference)


CASES = [
    KillCase(
        "program",
        "--weights {work}/w.npy --cores 0-7 --cores-per-group 1 --max-iterations 3",
        seed=21,
        prepare=_weights,
    ),
    KillCase(
        "calibrate",
        "--cores 0-6 --cores-per-group 1 --n-inputs 64 --n-validation 64 --verify-reads 1 "
        "--program-reference --reference-mode odp --set-id cal-killed",
        seed=22,
        ignore_results=("created",),
        calibration_set="cal-killed",
        checkpoint_at_start=True,
    ),
    KillCase(
        "drift",
        "--cores 0-1 --until 1d --points 9 --sample 256 --n-test 64 --n-readout 16 "
        "--verify-reads 2",
        seed=23,
        cores=2,
        server_setup=_pulse_setup,
    ),
    # A fresh simulated chip deploys the model again identically (per-core streams, MVM noise
    # keyed to the clock, the clock wound back to the run's start) and evaluates only the drift
    # times the killed run lacks.
    KillCase(
        "infer",
        "--model digits_mlp --dataset digits --drift 25s,1m,10m,1h,6h,1d,3d,1w "
        "--compensation none,gdc --samples 100 --cores 0-1",
        seed=24,
        cores=2,
        ignore_results=("inferences_per_s",),
        ignore_streams=("inferences_per_s",),
    ),
    KillCase(
        "characterize",
        "--weights {work}/w.npy --cores 0-7 --n-inputs 256",
        seed=25,
        prepare=_weights,
    ),
    KillCase("snapshot", "--cores 0-7", seed=26),
    KillCase(
        "compensate",
        f"--cores 0-1 --reference {{work}}/reference.npy {COMPENSATE_READOUT}",
        seed=27,
        cores=2,
        prepare=_gdc_reference,
    ),
]


# -- one attempt --------------------------------------------------------------------------------


class _Board:
    """The board of one attempt: a ``mockchip://`` URL, or a simulator server thread."""

    def __init__(self, case: KillCase) -> None:
        self.case = case
        self.server: Any = None
        if case.server_setup is None:
            self.url = f"mockchip://?seed={case.seed}&cores={case.cores}"
            return
        from drivers.sim.board_model import BoardOptions
        from drivers.sim.server import SimServer

        self.server = SimServer(BoardOptions(seed=case.seed, cores=case.cores)).start()
        self.url = self.server.url
        with Board(self.url) as board:
            case.server_setup(board)

    def replay_to(self, path: Path) -> None:
        """Bring a fresh server's chip to the state at ``path``'s last checkpoint."""
        if self.server is None:
            return
        from chipctl import catalog
        from chipctl.resume import plan_resume
        from procedures.base import Checkpoint

        plan = plan_resume(path)
        if not plan.checkpoints:
            return
        seen = 0
        with Board(self.url) as board:
            records = catalog.build(plan.procedure, plan.parameters).run(board)
            for record in records:
                seen += isinstance(record, Checkpoint)
                if seen == plan.checkpoints:
                    break
            records.close()  # type: ignore[attr-defined]
        assert seen == plan.checkpoints, "the replay did not reach the checkpoint"

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()


def _argv(case: KillCase, work: Path, out: Path, board: _Board) -> list[str]:
    argv = [case.name, "--board", board.url, "--out", str(out), "--no-progress"]
    argv += [a.replace("{work}", str(work)) for a in case.args.split()]
    if case.calibration_set:
        argv += ["--calibration-dir", str(out.with_suffix(".cal"))]
    return argv


def _result(path: Path, case: KillCase) -> dict[str, Any]:
    """Everything an uninterrupted and a resumed run must have in common."""
    with RunFile.open(path) as run:
        assert run.status == "success", (path, run.status, run.reason)
        results = {k: v for k, v in run.results.items() if k not in case.ignore_results}
        out: dict[str, Any] = {
            "results": json.dumps(results, sort_keys=True),
            "streams": {
                name: run.stream(name) for name in run.streams if name not in case.ignore_streams
            },
            "checkpoints": len(run.checkpoints),
        }
    if case.calibration_set:
        store = path.with_suffix(".cal") / f"SIM-HERMES-{case.seed:04d}"
        with np.load(store / f"{case.calibration_set}.npz") as stored:
            out["set"] = {k: stored[k] for k in stored.files if k != "metadata"}
    return out


def _assert_same(got: dict[str, Any], want: dict[str, Any], what: str) -> None:
    assert got["results"] == want["results"], what
    assert got["streams"].keys() == want["streams"].keys(), what
    for name, array in want["streams"].items():
        np.testing.assert_array_equal(got["streams"][name], array, err_msg=f"{what}: {name}")
    for name, array in want.get("set", {}).items():
        np.testing.assert_array_equal(got["set"][name], array, err_msg=f"{what}: set {name}")


def _opens(path: Path) -> tuple[str, int, int]:
    """Status, checkpoints and stored rows of a killed run's file (which must open)."""
    with RunFile.open(path) as run:
        rows = sum(info.rows for info in run.stream_info())
        return run.status, len(run.checkpoints), rows


@dataclass(frozen=True)
class Timeline:
    """When an uninterrupted run wrote what, s after its process started.

    Attributes:
        file_s: the run file appears.
        checkpoint_s: checkpoint k+1 appears in the file (k = 0, 1, ...).
        end_s: the process has ended.
    """

    file_s: float
    checkpoint_s: tuple[float, ...]
    end_s: float

    def stretch(self, k: int) -> tuple[float, float]:
        """(start, length) in s of the stretch with k checkpoints in the file."""
        starts = (self.file_s, *self.checkpoint_s, self.end_s)
        return starts[k], max(starts[k + 1] - starts[k], 0.0)


def _reference(case: KillCase, ctx: Any, work: Path) -> tuple[dict[str, Any], Timeline]:
    """The uninterrupted run's result, and when its file and each checkpoint appeared."""
    path = work / "reference.h5"
    board = _Board(case)
    try:
        process = forked.start(ctx, _argv(case, work, path, board), path)
        started = time.monotonic()
        forked.wait_for(path.exists, process)
        file_s = time.monotonic() - started
        seen: list[float] = []
        while process.is_alive():
            count = forked.checkpoints_in(path)
            seen += [time.monotonic() - started] * (count - len(seen))
            time.sleep(0.002)
        process.join()
        end_s = time.monotonic() - started
    finally:
        board.close()
    assert process.exitcode == 0, (process.exitcode, forked.log_text(path))
    want = _result(path, case)
    seen += [end_s] * (want["checkpoints"] - len(seen))
    return want, Timeline(file_s, tuple(seen[: want["checkpoints"]]), end_s)


@dataclass(frozen=True)
class Kill:
    """One kill: when it was planned, where it landed, whether the run was resumed.

    ``landed``: "no file" (before the run file existed), "cp K" (K checkpoints in the file, the
    run unfinished: killed in stretch K), "finished" (the run had completed) or "unopenable".
    """

    planned: str
    landed: str
    checkpoints: int = -1
    rows: int = -1

    @property
    def resumed(self) -> bool:
        return self.landed.startswith("cp ")


def _kill_once(
    case: KillCase, ctx: Any, work: Path, want: dict[str, Any], k: int, after: int, delay: float
) -> Kill:
    """Start the command, wait for ``after`` checkpoints in its file (-1: do not wait for the
    file) and ``delay`` s more, SIGKILL it; resume the killed run and compare with ``want``."""
    planned = "before the file" if after < 0 else f"{after} cp + {delay:.3f} s"
    path = work / f"killed-{k}.h5"
    board = _Board(case)
    try:
        process = forked.start(ctx, _argv(case, work, path, board), path)
        if after >= 0:
            forked.wait_for(path.exists, process)
        if after > 0:
            forked.wait_for(lambda: forked.checkpoints_in(path) >= after, process)
        time.sleep(delay)
        code = forked.kill(process)
    finally:
        board.close()
    if code == 0:
        return Kill(planned, "finished")
    assert code == -9, (code, forked.log_text(path))
    if not path.exists():
        return Kill(planned, "no file")
    try:
        status, checkpoints, rows = _opens(path)
    except RunFileError as exc:  # the main promise broken: reported with the others
        return Kill(planned, f"unopenable: {exc}")
    if status == "success":  # killed after its file was complete: nothing to resume
        _assert_same(_result(path, case), want, f"kill {k} ({planned}, complete)")
        return Kill(planned, "finished", checkpoints, rows)
    assert status == "running", (status, path)
    board = _Board(case)
    try:
        board.replay_to(path)
        argv = ["resume", str(path), "--board", board.url, "--no-progress"]
        code = forked.run(ctx, argv, path)
    finally:
        board.close()
    what = f"kill {k} ({planned}, landed with {checkpoints} checkpoints, {rows} rows)"
    assert code == 0, f"{what}: resume exited {code}: {forked.log_text(path)}"
    _assert_same(_result(path, case), want, what)
    return Kill(planned, f"cp {checkpoints}", checkpoints, rows)


def _plan(timeline: Timeline, rng: np.random.Generator) -> Iterator[tuple[int, float]]:
    """(checkpoints to wait for, then s): one kill before the run file exists (-1), then one
    in each stretch at a fixed-seed random fraction of its length in the reference run; a run
    without checkpoints gets :data:`TIME_KILLS` kills spread by time over it."""
    yield -1, 0.5 * timeline.file_s
    n = len(timeline.checkpoint_s)
    if n == 0:
        _, length = timeline.stretch(0)
        for j in range(TIME_KILLS):
            yield 0, length * (j + float(rng.uniform(0.0, 1.0))) / TIME_KILLS
        return
    for k in range(n + 1):
        _, length = timeline.stretch(k)
        yield k, length * float(rng.uniform(0.1, 0.9))


def _table(kills: list[Kill]) -> str:
    return "; ".join(
        f"{k.planned} -> {k.landed}" + (f" ({k.rows} rows)" if k.resumed else "") for k in kills
    )


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_sigkilled_run_resumes_to_the_uninterrupted_result(
    case: KillCase, forkserver: Any, tmp_path: Path
) -> None:
    case.prepare(tmp_path, case)
    want, timeline = _reference(case, forkserver, tmp_path)
    n = want["checkpoints"]
    rng = np.random.default_rng([KILL_SEED, CASES.index(case)])
    kills = [
        _kill_once(case, forkserver, tmp_path, want, k, after, delay)
        for k, (after, delay) in enumerate(_plan(timeline, rng))
    ]
    required = set(range(1, n + 1) if case.checkpoint_at_start else range(n))
    for _ in range(RETRIES):
        missing = sorted(required - {k.checkpoints for k in kills if k.resumed})
        for after in missing:  # right after the stretch's checkpoint appears
            kills.append(_kill_once(case, forkserver, tmp_path, want, len(kills), after, 0.0))
    landed = sorted({k.checkpoints for k in kills if k.resumed})
    print(
        f"\n{case.name}: {n} checkpoints, run {timeline.end_s:.2f} s (file after "
        f"{timeline.file_s:.2f} s); {len(kills)} kills, {sum(k.resumed for k in kills)} resumed "
        f"identically, landed in stretches {landed}: {_table(kills)}"
    )
    unopenable = [k for k in kills if k.landed.startswith("unopenable")]
    assert not unopenable, f"killed run files that do not open: {_table(unopenable)}"
    if n == 0:  # compensate: killed while running, at times spread over its run
        assert sum(k.resumed for k in kills) >= 2, _table(kills)
        return
    assert n >= MIN_CHECKPOINTS, f"{case.name}: only {n} checkpoints per run"
    missing = sorted(required - set(landed))
    assert not missing, f"no kill landed in stretches {missing}: {_table(kills)}"


# -- drift resumed late, on the server that outlived the kill ----------------------------------

LATE_AFTER = 3
"""Checkpoints of the drift run before its kill (then its clock moves on)."""


@pytest.mark.slow
def test_drift_resumed_late_on_the_surviving_server(forkserver: Any, tmp_path: Path) -> None:
    """Kill a drift run, let the surviving chip's clock run on past two more of its schedule
    points and half-way to the next, resume it there: it measures once, now, at the true time
    (flagged ``moved``, the two passed points skipped), then the rest on schedule; its rows
    before the kill are those of an uninterrupted run (procedures/drift.py, "time is what was
    measured")."""
    from chipctl.resume import plan_resume
    from procedures.drift import moved_tolerance_s, schedule

    (case,) = [c for c in CASES if c.name == "drift"]
    want, _ = _reference(case, forkserver, tmp_path)
    path = tmp_path / "late.h5"
    board = _Board(case)  # the server (the chip) outlives the killed command
    try:
        process = forked.start(forkserver, _argv(case, tmp_path, path, board), path)
        forked.wait_for(lambda: forked.checkpoints_in(path) >= LATE_AFTER, process)
        assert forked.kill(process) == -9, forked.log_text(path)
        status, done, _ = _opens(path)
        plan = plan_resume(path)
        p = plan.parameters
        times = schedule(float(p["start"]), float(p["until"]), int(p["points"]))
        points = len(times)
        assert status == "running" and LATE_AFTER <= done <= points - 4, (status, done)
        t_start = float(plan.state["t_start_s"])
        with Board(board.url) as chip:  # time moves on: between schedule points done+2 and +3
            now = chip.board_time_s() - t_start
            late = 0.5 * (times[done + 2] + times[done + 3])
            chip.advance_clock(late - now)
        argv = ["resume", str(path), "--board", board.url, "--no-progress"]
        code = forked.run(forkserver, argv, path)
    finally:
        board.close()
    assert code == 0, forked.log_text(path)

    got = _result(path, case)
    streams, ref = got["streams"], want["streams"]
    measured = [*range(done), done + 2, *range(done + 3, points)]
    assert len(streams["time"]) == len(measured) == points - 2
    np.testing.assert_array_equal(streams["scheduled_time"], times[measured])
    np.testing.assert_array_equal(streams["moved"], [k == done + 2 for k in measured])
    moved_time = streams["time"][done]
    assert late - 1e-6 <= moved_time < times[done + 3], (late, moved_time)  # the true time
    assert moved_time - times[done + 2] > moved_tolerance_s(times[done + 2])
    np.testing.assert_array_equal(
        np.delete(streams["time"], done), times[np.delete(measured, done)]
    )
    results = json.loads(got["results"])
    assert (results["moved_points"], results["skipped_points"]) == (1, 2), results
    # before the kill: the uninterrupted run's rows; one row per measured point
    for name, array in ref.items():
        if len(array) == points:
            np.testing.assert_array_equal(streams[name][:done], array[:done], err_msg=name)
            assert len(streams[name]) == points - 2, name
    mean_g = streams["conductance"].mean(axis=(1, 2))
    assert mean_g[done] < mean_g[done - 1]  # the chip drifted on while the run was dead
    print(
        f"\ndrift resumed late: killed after {done} points; clock moved to {late:.0f} s; "
        f"times {streams['time'].round(1).tolist()}, moved {streams['moved'].tolist()}"
    )
