"""The runner: drives a procedure and fans its records out to the run file, screen and log.

``run_procedure(procedure, board, path)`` iterates ``procedure.run(board, ...)`` and hands every
record to each subscriber in turn: the :class:`~chipctl.runfile.RunWriter` first, then a rich
progress bar (only on a terminal), the stdlib log, and any callables passed in ``subscribers``
(the TUI adds one). Ctrl-C, while a run is going in the main thread:

* the first asks the procedure to stop at its next safe point (``should_stop`` becomes true,
  ``Procedure.check_stop`` raises ``Aborted``); cleanup runs and the file ends "aborted";
* the second forces: ``KeyboardInterrupt`` propagates (deferred until a write into the run file
  is complete), the procedure's cleanup still runs, the file ends "aborted" with reason "forced".

An exception ends the file "failed" with the error text. :mod:`chipctl.resume` continues a run
that died or was stopped, from its last checkpoint, in the same file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from chipctl import catalog
from chipctl.catalog import RunContext
from chipctl.runfile import ResumeSource, RunWriter
from drivers.board import Board
from procedures.base import Checkpoint, Procedure, Progress, Record, Start, Stop

log = logging.getLogger(__name__)

Subscriber = Callable[[Record], None]


@dataclass
class RunSummary:
    """How a run ended.

    Attributes:
        status: "success", "aborted" or "failed".
        reason: why it stopped ("" on success).
        path: the run file.
        elapsed_s: wall time of this run segment in s.
        results: the procedure's results.
        notes: what the procedure's post-run steps say (e.g. where the calibration set went).
    """

    status: str
    reason: str
    path: Path
    elapsed_s: float
    results: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# -- Ctrl-C -----------------------------------------------------------------------------------


class _Interrupts:
    """SIGINT handling for one run: first press requests a stop, the second forces."""

    def __init__(self) -> None:
        self.stop_requested = threading.Event()
        self.forced = False
        self._critical = 0
        self._pending = False
        self._previous: Any = None
        self._installed = False

    def handler(self, signum: int, frame: FrameType | None) -> None:
        if not self.stop_requested.is_set():
            self.stop_requested.set()
            print(
                "\nstopping at the next safe point (Ctrl-C again to force)",
                file=sys.stderr,
                flush=True,
            )
            return
        if self.forced or self._critical:
            # Already forcing (cleanup and the final status are running) or inside a write:
            # remember it, never split cleanup or leave the file saying "running".
            self.forced = True
            self._pending = True
            return
        self.forced = True
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        """A section (a write into the run file) that a forced interrupt must not split."""
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1
            if self._pending and not self._critical:
                self._pending = False
                raise KeyboardInterrupt

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self.handler)
            self._installed = True

    def restore(self) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False


# -- subscribers ------------------------------------------------------------------------------


class _ProgressBar:
    """A rich progress bar (fraction done, rate, ETA) on stderr."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import (
            Progress as RichProgress,
        )

        self._bar = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[message]}"),
            console=Console(stderr=True),
            transient=False,
        )
        self._task: Any = None
        self._started = 0.0
        self._first_done = 0

    def __call__(self, record: Record) -> None:
        if isinstance(record, Start):
            self._bar.start()
            self._started = time.monotonic()
            self._task = self._bar.add_task(
                record.procedure, total=max(record.total, 1), rate="", message=""
            )
        elif isinstance(record, Progress) and self._task is not None:
            if not self._first_done:
                self._first_done = record.done - 1 if record.done > 0 else 0
            elapsed = time.monotonic() - self._started
            done_here = record.done - self._first_done
            rate = f"{done_here / elapsed:.3g}/s" if elapsed > 0 else ""
            self._bar.update(
                self._task,
                completed=record.done,
                total=max(record.total, 1),
                rate=rate,
                message=record.message,
            )
        elif isinstance(record, Stop):
            self.close()

    def close(self) -> None:
        if self._task is not None:
            self._bar.stop()
            self._task = None


def _log_subscriber(logger: logging.Logger, path: Path) -> Subscriber:
    def _log(record: Record) -> None:
        if isinstance(record, Start):
            logger.info(
                "%s %s on %s -> %s",
                "resuming" if record.resumed else "starting",
                record.procedure,
                record.metadata.get("board_url", "?"),
                path,
            )
        elif isinstance(record, Progress):
            logger.debug("%d/%d %s", record.done, record.total, record.message)
        elif isinstance(record, Checkpoint):
            logger.debug("checkpoint %s", record.state)
        elif isinstance(record, Stop):
            level = logging.INFO if record.status == "success" else logging.WARNING
            logger.log(
                level,
                "run %s: %s %s (%.3g s)",
                path,
                record.status,
                record.reason,
                record.elapsed_s,
            )

    return _log


def _board_clock(board: Board) -> Callable[[], float] | None:
    """The board's virtual clock, if it has one (the simulator), else None."""
    if getattr(board.identity, "clock_control", False):
        return board.board_time_s
    return None


# -- running ----------------------------------------------------------------------------------


def run_procedure(
    procedure: Procedure,
    board: Board,
    path: str | os.PathLike[str],
    *,
    progress: bool = True,
    log: logging.Logger | None = None,
    should_stop: Callable[[], bool] | None = None,
    flush_interval_s: float = 1.0,
    subscribers: Sequence[Subscriber] = (),
    resume_from: dict[str, Any] | None = None,
    resume: ResumeSource | None = None,
    context: RunContext | None = None,
) -> RunSummary:
    """Run ``procedure`` on ``board``, writing the run file ``path``; returns how it ended.

    Args:
        procedure: a configured procedure instance.
        board: an open board.
        path: the run file to write.
        progress: show a progress bar (only when stderr is a terminal).
        log: logger for start/stop lines (default ``chipctl.runner``).
        should_stop: polled at every safe point; true stops the run ("aborted").
        flush_interval_s: longest time in s written rows stay unflushed.
        subscribers: more callables that receive every record.
        resume_from / resume: used by :func:`resume_run`.
        context: run as a front end does: with the post-run steps of the procedure's catalog
            entry (``calibrate`` stores its calibration set), whose messages end up in the
            summary's ``notes``. Without it (scripts), only ``subscribers`` run.
    """
    post_steps = catalog.post_steps(procedure, context) if context is not None else []
    summary = _run(
        procedure,
        board,
        Path(path),
        progress=progress,
        log=log,
        should_stop=should_stop,
        flush_interval_s=flush_interval_s,
        subscribers=[*post_steps, *subscribers],
        resume_from=resume_from,
        resume=resume,
    )
    summary.notes.extend(catalog.messages(post_steps))
    return summary


def _run(
    procedure: Procedure,
    board: Board,
    path: Path,
    *,
    progress: bool,
    log: logging.Logger | None,
    should_stop: Callable[[], bool] | None,
    flush_interval_s: float,
    subscribers: Sequence[Subscriber],
    resume_from: dict[str, Any] | None,
    resume: ResumeSource | None,
) -> RunSummary:
    logger = log or logging.getLogger(__name__)
    interrupts = _Interrupts()

    def stop() -> bool:
        return interrupts.stop_requested.is_set() or bool(should_stop and should_stop())

    writer = RunWriter(
        path,
        instrument=asdict(board.identity),
        flush_interval_s=flush_interval_s,
        board_clock=_board_clock(board),
        resume=resume,
    )
    bar = _ProgressBar() if progress and sys.stderr.isatty() else None
    others: list[Subscriber] = [_log_subscriber(logger, path)]
    if bar is not None:
        others.append(bar)
    others.extend(subscribers)

    started = time.monotonic()
    records = procedure.run(board, should_stop=stop, resume_from=resume_from)
    stop_record: Stop | None = None
    interrupts.install()
    try:
        for record in records:
            if isinstance(record, Stop):
                # Subscribers first: if one fails on the final record (e.g. storing a
                # calibration set), the file must end "failed", not "success".
                for subscriber in others:
                    subscriber(record)
                with interrupts.critical():
                    writer(record)
                stop_record = record
                continue
            with interrupts.critical():
                writer(record)
            for subscriber in others:
                subscriber(record)
    except KeyboardInterrupt:
        reason = "forced" if interrupts.forced else "interrupted"
        try:
            with interrupts.critical():
                _close(records)  # runs the procedure's cleanup
        finally:
            _end(writer, "aborted", reason, started)
        raise
    except Exception as exc:
        logger.exception("run %s failed", path)
        with contextlib.suppress(Exception):
            _close(records)
        reason = f"{type(exc).__name__}: {exc}"
        _end(writer, "failed", reason, started)
        return RunSummary("failed", reason, path, time.monotonic() - started)
    finally:
        interrupts.restore()
        if bar is not None:
            bar.close()
    if stop_record is None:
        reason = "the procedure ended without a Stop record"
        _end(writer, "failed", reason, started)
        return RunSummary("failed", reason, path, time.monotonic() - started)
    return RunSummary(
        stop_record.status,
        stop_record.reason,
        path,
        stop_record.elapsed_s,
        dict(stop_record.results),
    )


def _close(records: Iterator[Record]) -> None:
    """Close a procedure's record generator, which runs its cleanup if it was mid-run."""
    close = getattr(records, "close", None)
    if callable(close):
        close()


def _end(writer: RunWriter, status: str, reason: str, started: float) -> None:
    """Close the run file with ``status`` if the run did not get that far by itself."""
    if not writer.is_open:
        if writer.status == "running":
            log.error("run file %s was never created: %s", writer.path, reason)
        return
    try:
        writer.finish(status, reason, elapsed_s=time.monotonic() - started)
    except Exception:
        log.exception("could not record status %s in %s", status, writer.path)
        writer.close()
