"""Resuming: continue a run that died or was stopped, from its last checkpoint, in its file.

``plan_resume(path)`` reads what resuming needs (and refuses a finished run, or one another
process is still writing); ``resume_run(path)`` rebuilds the procedure through the catalog
from the stored parameters, reconnects the board (or opens the station), brings a simulated
board's clock to the checkpoint and runs the rest through :func:`chipctl.runner.run_procedure`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chipctl import catalog
from chipctl.catalog import RunContext
from chipctl.runfile import ResumeSource, RunFile, RunFileError, writer_alive
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


def plan_resume(path: str | os.PathLike[str]) -> ResumePlan:
    """Read what resuming ``path`` needs; refuses a finished or still-running run."""
    path = Path(path)
    with RunFile.open(path) as run:
        status = run.status
        meta = run.metadata
        checkpoints = run.checkpoints
        streams = run.streams
    if status == "success":
        raise ResumeError(f"{path}: the run already finished successfully; nothing to resume")
    if status == "running" and writer_alive(meta):
        raise ResumeError(
            f"{path}: still being written by process {meta.get('writer_pid')} on this host"
        )
    last = checkpoints[-1] if checkpoints else None
    rows = {name: int(last["rows"].get(name, 0)) if last else 0 for name in streams}
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
) -> RunSummary:
    """Continue the run in ``path`` from its last checkpoint, appending to the same file.

    Streams are cut back to the rows recorded with the last checkpoint (a run without one
    restarts from the beginning). The board is reconnected at the stored URL unless
    ``board_url`` is given; a simulated board's virtual clock is advanced to the checkpoint's
    time, so a resumed simulation reproduces an uninterrupted one. Streams the procedure names
    in ``resume_streams`` come back to it in ``resume_from["streams"]``; the post-run steps of
    its catalog entry run as they would have (a resumed ``calibrate`` stores its set, in the
    store its checkpoint names). A procedure that needs a bench station runs on ``station``
    (a :class:`~chipctl.station.Station`; default: the simulated station around the board).
    """
    plan = plan_resume(path)
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
        if item.needs_station:
            from chipctl.station import default_station

            chosen = station if station is not None else default_station(board_url=url)
            opened = stack.enter_context(chosen.open(board_timeout_s=timeout_s))
            board = opened.board
        else:
            board = stack.enter_context(Board(url, timeout_s=timeout_s))
        procedure = catalog.build(plan.procedure, parameters, station=opened)
        _check_streams(plan.path, procedure)
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


def _check_streams(path: Path, procedure: Procedure) -> None:
    """Refuse a file whose streams do not hold what the procedure declares (row shape, dtype):
    the rows kept could not be continued. Streams the file lacks (added to the procedure since
    the file was written) are created empty by the writer."""
    declared = {spec.name: spec for spec in procedure.streams()}
    with RunFile.open(path) as run:
        stored = run.stream_info()
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
