"""Resuming: continue a run that died or was stopped, from its last checkpoint, in its file.

``plan_resume(path)`` reads what resuming needs (and refuses a finished run, or one another
process is still writing); ``resume_run(path)`` rebuilds the procedure through the catalog
from the stored parameters, reconnects the board (or opens the station), brings a simulated
board's clock to the checkpoint and runs the rest through :func:`chipctl.runner.run_procedure`.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chipctl import catalog
from chipctl.catalog import RunContext
from chipctl.runfile import ResumeSource, RunFile, RunFileError, StreamInfo, writer_alive
from chipctl.runfile.paths import held_here, process_alive
from chipctl.runner import RunSummary, Subscriber, run_procedure
from drivers.board import Board
from drivers.errors import LimitError
from procedures.base import Procedure


class ResumeError(RunFileError):
    """A run file cannot be resumed (finished, still running, or unreadable)."""


@dataclass(frozen=True)
class ResumePlan:
    """What resuming ``path`` will do: procedure, parameters, state and rows to keep."""

    path: Path
    procedure: str
    parameters: dict[str, Any]
    board_url: str
    state: dict[str, Any] | None
    rows: dict[str, int]
    checkpoints: int
    board_time_s: float | None
    chip_id: str = ""
    n_cores: int = 0
    stored: tuple[StreamInfo, ...] = ()
    """The file's streams as stored (row shape, dtype), read with the rest."""


def plan_resume(path: str | os.PathLike[str], *, force: bool = False) -> ResumePlan:
    """Read what resuming ``path`` needs; refuses a finished run, and one that may still be
    being written: by a live process of this host, by this very process, or (unless
    ``force``: the user knows that run is dead) by a process of another host, which cannot be
    checked from here."""
    path = Path(path)
    with RunFile.open(path) as run:
        status = run.status
        meta = run.metadata
        checkpoints = run.checkpoints
        stored = tuple(run.stream_info())
    if status == "success":
        raise ResumeError(f"{path}: the run already finished successfully; nothing to resume")
    if held_here(path):
        raise ResumeError(f"{path}: this process is writing it (a run or a resume is going)")
    if status == "running" and writer_alive(meta):
        raise ResumeError(
            f"{path}: still being written by process {meta.get('writer_pid')} on this host"
        )
    host = str(meta.get("writer_host", "") or "")
    if status == "running" and host and host != socket.gethostname() and not force:
        raise ResumeError(
            f"{path}: marked running by process {meta.get('writer_pid')} on host {host}, "
            "which cannot be checked from here; if that run is dead, resume with --force"
        )
    last = checkpoints[-1] if checkpoints else None
    rows = {s.name: int(last["rows"].get(s.name, 0)) if last else 0 for s in stored}
    return ResumePlan(
        path=path,
        procedure=str(meta["procedure"]),
        parameters=dict(meta["parameters"]),
        board_url=str(meta.get("board_url", "")),
        state=dict(last["state"]) if last else None,
        rows=rows,
        checkpoints=len(checkpoints),
        board_time_s=_restore_time(last),
        chip_id=str(meta.get("chip_id", "")),
        n_cores=int(meta.get("n_cores", 0) or 0),
        stored=stored,
    )


def _restore_time(checkpoint: dict[str, Any] | None) -> float | None:
    """Where a simulated board's clock goes before a resume: the checkpoint's board time, or
    the earlier ``restore_board_time_s`` a procedure puts in its state when it deploys again
    from that time on a fresh chip (``infer``)."""
    if checkpoint is None:
        return None
    state = checkpoint.get("state") or {}
    chosen = state.get("restore_board_time_s", checkpoint.get("board_time_s"))
    return None if chosen is None else float(chosen)


def resume_run(
    path: str | os.PathLike[str],
    *,
    board_url: str | None = None,
    timeout_s: float = 5.0,
    progress: bool = True,
    log: logging.Logger | None = None,
    should_stop: Callable[[], bool] | None = None,
    flush_interval_s: float = 1.0,
    subscribers: Sequence[Subscriber] = (),
    station: Any = None,
    force: bool = False,
) -> RunSummary:
    """Continue the run in ``path`` from its last checkpoint, appending to the same file.

    Streams are cut back to the rows recorded with the last checkpoint (a run without one
    restarts from the beginning). The board is reconnected at the stored URL unless
    ``board_url`` is given; a simulated board's virtual clock is advanced to the checkpoint's
    time, so a resumed simulation reproduces an uninterrupted one. Streams the procedure names
    in ``resume_streams`` come back to it in ``resume_from["streams"]``; the post-run steps of
    its catalog entry run as they would have (a resumed ``calibrate`` stores its set, in the
    store its checkpoint names). With ``station`` (a :class:`~chipctl.station.Station`) the
    run continues on that station's board, behind its limits and programming interlock; a
    procedure that needs a station gets the simulated one around the board if none is given.

    One resume at a time: a lock file beside the run (``.NAME.resume.lock``, created
    exclusively) keeps a second resume, in this or another process, from continuing the same
    run; a lock left by a dead process of this host is taken over. ``force`` resumes a file
    marked running on another host (see :func:`plan_resume`).
    """
    with _resume_lock(Path(path), force=force):
        _remove_stale_temporaries(Path(path))
        return _resume(
            Path(path),
            board_url=board_url,
            timeout_s=timeout_s,
            progress=progress,
            log=log,
            should_stop=should_stop,
            flush_interval_s=flush_interval_s,
            subscribers=subscribers,
            station=station,
            force=force,
        )


@contextlib.contextmanager
def _resume_lock(path: Path, *, force: bool) -> Iterator[None]:
    """Hold ``.NAME.resume.lock`` beside ``path`` (exclusive creation) while resuming."""
    lock = path.with_name(f".{path.name}.resume.lock")
    me = f"{os.getpid()} {socket.gethostname()}"
    for _ in range(2):
        try:
            handle = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            owner = _lock_owner(lock)
            if owner is None or (not owner[1] and not force):
                who = owner[0] if owner is not None else "a live process of this host"
                raise ResumeError(
                    f"{path}: another resume of this run is going ({lock.name}: {who}); "
                    "if it is dead, remove the lock file"
                ) from None
            lock.unlink(missing_ok=True)  # left by a dead process
            continue
        try:
            os.write(handle, me.encode())
        finally:
            os.close(handle)
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)
        return
    raise ResumeError(f"{path}: could not take the resume lock {lock.name}")


def _remove_stale_temporaries(path: Path) -> None:
    """Remove the hidden temporary files a killed run or resume of ``path`` left beside it
    (``.NAME.new-PID-xxxxxx.tmp``, ``.NAME.resume-PID-xxxxxx.tmp``) whose process is gone; a
    resume copy is as large as the run."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:new|resume)-(\d+)-[0-9a-f]+\.tmp")
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        match = pattern.fullmatch(candidate.name)
        if match is None or int(match.group(1)) == os.getpid():
            continue
        if not process_alive(int(match.group(1))):
            candidate.unlink(missing_ok=True)
            logging.getLogger(__name__).info("removed %s, left by a killed run", candidate)


def _lock_owner(lock: Path) -> tuple[str, bool] | None:
    """(who, dead) of a lock file: ``dead`` when its process no longer exists on this host;
    None when the lock is held by a live process (or this process)."""
    try:
        pid_text, _, host = lock.read_text(encoding="utf-8").strip().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError):
        return ("unreadable", False)
    if host != socket.gethostname():
        return (f"{pid} on {host}", False)
    if pid == os.getpid() or process_alive(pid):
        return None
    return (str(pid), True)


def _resume(
    path: Path,
    *,
    board_url: str | None,
    timeout_s: float,
    progress: bool,
    log: logging.Logger | None,
    should_stop: Callable[[], bool] | None,
    flush_interval_s: float,
    subscribers: Sequence[Subscriber],
    station: Any,
    force: bool,
) -> RunSummary:
    plan = plan_resume(path, force=force)
    try:
        item = catalog.entry(plan.procedure)
        cls = item.cls
    except catalog.CatalogError as exc:
        raise ResumeError(f"{plan.path}: {exc}") from None
    if not cls.resumable:
        raise ResumeError(
            f"{plan.path}: the {plan.procedure} procedure cannot be resumed; run it again"
        )
    try:
        parameters = cls.validate(plan.parameters)
    except LimitError as exc:
        raise ResumeError(f"{plan.path}: stored parameters are not valid now: {exc}") from None
    url = board_url or plan.board_url
    if not url:
        raise ResumeError(f"{plan.path}: no board URL stored; give one")
    state = _resume_state(plan, cls)
    context = RunContext(resumed=True, state=plan.state)
    with contextlib.ExitStack() as stack:
        opened = None
        if item.needs_station or station is not None:
            from chipctl.station import default_station

            chosen = station if station is not None else default_station(board_url=url)
            opened = stack.enter_context(chosen.open(board_timeout_s=timeout_s))
            board = opened.board
        else:
            board = stack.enter_context(Board(url, timeout_s=timeout_s))
        procedure = catalog.build(plan.procedure, parameters, station=opened)
        _check_streams(plan, procedure)
        ident = board.identity
        stored = (str(plan.chip_id), int(plan.n_cores))
        if stored != (ident.chip_id, ident.n_cores):
            raise ResumeError(
                f"{plan.path}: recorded on chip {stored[0]} ({stored[1]} cores), but the board at "
                f"{url} carries chip {ident.chip_id} ({ident.n_cores} cores); refusing to mix them"
            )
        if plan.board_time_s is not None and board.identity.clock_control:
            behind = float(plan.board_time_s) - board.board_time_s()
            if behind > 0:
                board.advance_clock(behind)
        return run_procedure(
            procedure,
            board,
            plan.path,
            progress=progress,
            log=log,
            should_stop=should_stop,
            flush_interval_s=flush_interval_s,
            subscribers=subscribers,
            resume_from=state,
            resume=ResumeSource(plan.path, plan.rows, plan.checkpoints),
            context=context,
        )


def _check_streams(plan: ResumePlan, procedure: Procedure) -> None:
    """Refuse a file whose streams do not hold what the procedure declares (row shape, dtype):
    the rows kept could not be continued. Streams the file lacks (added to the procedure since
    the file was written) are created empty by the writer."""
    path, stored = plan.path, plan.stored
    declared = {spec.name: spec for spec in procedure.streams()}
    for info in stored:
        spec = declared.get(info.name)
        if spec is None:
            continue
        if tuple(info.shape) != tuple(spec.shape) or np.dtype(info.dtype) != np.dtype(spec.dtype):
            raise ResumeError(
                f"{path}: stream {info.name} holds rows of shape {tuple(info.shape)} and dtype "
                f"{info.dtype}, but {procedure.name} writes {tuple(spec.shape)} {spec.dtype}; "
                "the file cannot be continued"
            )


def _resume_state(plan: ResumePlan, cls: type[Procedure]) -> dict[str, Any] | None:
    """The checkpoint state, plus the rows (up to the checkpoint) of the streams the procedure
    names in ``resume_streams`` under ``"streams"``: data too large for a checkpoint row."""
    names = cls.resume_streams
    if plan.state is None or not names:
        return plan.state
    with RunFile.open(plan.path) as run:
        streams = {name: run.stream(name)[: plan.rows.get(name, 0)] for name in names}
    return {**plan.state, "streams": streams}
