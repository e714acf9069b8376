"""The runner: drives a procedure and fans its records out to the run file, screen and log.

``run_procedure(procedure, board, path)`` iterates ``procedure.run(board, ...)`` and hands every
record to each subscriber in turn: the :class:`~chipctl.runfile.RunWriter` first, then a rich
progress bar (only on a terminal), the stdlib log, and any callables passed in ``subscribers``
(the TUI adds one). A run never replaces an existing file unless asked to (``overwrite``; see
:func:`chipctl.runfile.check_out`), checked before the procedure starts.

Ctrl-C (SIGINT), SIGTERM (systemd, Docker, batch schedulers) and SIGHUP, while a run is going
in the main thread (the previous handlers come back afterwards):

* the first asks the procedure to stop at its next safe point (``should_stop`` becomes true,
  ``Procedure.check_stop`` raises ``Aborted``); cleanup runs and the file ends "aborted" (reason
  "stopped by SIGTERM" / "stopped by SIGHUP"; Ctrl-C keeps the procedure's own reason);
* the second forces: ``KeyboardInterrupt`` propagates (deferred until a write into the run file
  is complete), the procedure's cleanup still runs, the file ends "aborted" with reason "forced"
  ("forced by SIGTERM").

An exception ends the file "failed" with the error text. :mod:`chipctl.resume` continues a run
that died or was stopped, from its last checkpoint, in the same file.
"""

from __future__ import annotations

import contextlib
import dataclasses
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
from chipctl.runfile import ResumeSource, RunFileExistsError, RunWriter, check_out
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


# -- Ctrl-C, SIGTERM, SIGHUP -------------------------------------------------------------------

STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
"""Signals that stop a run like Ctrl-C: SIGINT (Ctrl-C), SIGTERM (systemd, Docker, batch
schedulers, ``kill``) and SIGHUP (the terminal went away), where the platform has them."""


class _Interrupts:
    """Stop-signal handling for one run: the first signal requests a stop, the second forces."""

    def __init__(self) -> None:
        self.stop_requested = threading.Event()
        self.forced = False
        self.signal_name = ""
        self._critical = 0
        self._pending = False
        self._previous: dict[int, Any] = {}

    def handler(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if not self.stop_requested.is_set():
            self.signal_name = name
            self.stop_requested.set()
            again = "Ctrl-C again" if signum == signal.SIGINT else f"{name} again"
            with contextlib.suppress(OSError, ValueError):  # SIGHUP: the terminal may be gone
                print(
                    f"\n{name}: stopping at the next safe point ({again} to force)",
                    file=sys.stderr,
                    flush=True,
                )
            return
        if not self.forced:
            self.signal_name = name
        if self.forced or self._critical:
            # Already forcing (cleanup and the final status are running) or inside a write:
            # remember it, never split cleanup or leave the file saying "running".
            self.forced = True
            self._pending = True
            return
        self.forced = True
        raise KeyboardInterrupt

    @property
    def stop_reason(self) -> str:
        """The reason of a run stopped by the first signal ("" if none or Ctrl-C, whose
        stop keeps the procedure's own reason)."""
        if not self.signal_name or self.signal_name == "SIGINT":
            return ""
        return f"stopped by {self.signal_name}"

    @property
    def forced_reason(self) -> str:
        """The reason of a forced stop: "forced" (Ctrl-C) or "forced by SIGTERM"."""
        if not self.forced:
            return "interrupted"
        if self.signal_name and self.signal_name != "SIGINT":
            return f"forced by {self.signal_name}"
        return "forced"

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
        """Handle the stop signals (only in the main thread, where Python delivers them)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self.handler)

    def restore(self) -> None:
        """Put the handlers back that were there before :meth:`install`."""
        while self._previous:
            signum, previous = self._previous.popitem()
            signal.signal(signum, previous)


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
    if board.identity.clock_control:
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
    overwrite: bool = False,
) -> RunSummary:
    """Run ``procedure`` on ``board``, writing the run file ``path``; returns how it ended.

    ``path`` must not exist, unless ``overwrite``; even then it must be a regular file that no
    live writer holds (:func:`chipctl.runfile.check_out`). Otherwise
    :class:`~chipctl.runfile.RunFileExistsError` is raised before the procedure starts, and
    nothing is written.

    Args:
        procedure: a configured procedure instance.
        board: an open board.
        path: the run file to write.
        progress: show a progress bar (only when stderr is a terminal).
        log: logger for start/stop lines (default ``chipctl.runner``).
        should_stop: polled at every safe point; true stops the run ("aborted").
        flush_interval_s: longest time in s written rows stay unflushed.
        subscribers: more callables that receive every record.
        resume_from / resume: used by :func:`resume_run` (which appends to its own file).
        context: run as a front end does: with the post-run steps of the procedure's catalog
            entry (``calibrate`` stores its calibration set), whose messages end up in the
            summary's ``notes``. Without it (scripts), only ``subscribers`` run. With
            ``context.overwrite_cores`` false, the chip-ledger guard runs first.
        overwrite: replace an existing run file (or other regular file) at ``path``.

    The chip ledger (:mod:`chipctl.ledger`): a catalogued procedure whose entry ``overwrites``
    cores always appends to the ledger of the board's chip (in the default calibration store,
    :func:`chipctl.calibration.default_store_dir`, whatever store a calibration set goes to:
    one ledger per chip), scripts without ``context`` included: the runner
    is the one place holding both the board (for the fingerprint reads) and the records, and
    an unrecorded reprogramming is exactly what the ledger is there to catch. The guard is
    the front ends' choice: with ``context.overwrite_cores`` false, a run that would overwrite
    cores holding what the ledger recorded (and the chip still shows) raises
    :class:`~chipctl.ledger.CoresHoldDataError` before anything is written to the board or
    to ``path``.
    """
    from chipctl.ledger import LedgerRecorder, check_overwrite

    procedure.check_board(board)  # before the run file exists: a refusal leaves nothing
    if resume is None:
        check_out(path, overwrite=overwrite)
    cores = catalog.overwritten_cores(procedure)
    if cores and context is not None and not context.overwrite_cores and resume is None:
        check_overwrite(board, cores, run_file=path)
    ledger_steps: list[Subscriber] = []
    if cores:
        ledger_steps.append(
            LedgerRecorder(
                board,
                procedure,
                cores,
                Path(path),
                catalog.describe_cores(procedure),
                board_clock=_board_clock(board),
            )
        )
    post_steps = catalog.post_steps(procedure, context) if context is not None else []
    summary = _run(
        procedure,
        board,
        Path(path),
        progress=progress,
        log=log,
        should_stop=should_stop,
        flush_interval_s=flush_interval_s,
        subscribers=[*ledger_steps, *post_steps, *subscribers],
        resume_from=resume_from,
        resume=resume,
        overwrite=overwrite,
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
    overwrite: bool,
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
        overwrite=overwrite,
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
                if record.status == "aborted" and interrupts.stop_reason:
                    record = dataclasses.replace(record, reason=interrupts.stop_reason)
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
        try:
            with interrupts.critical():
                _close(records)  # runs the procedure's cleanup
        finally:
            _end(writer, "aborted", interrupts.forced_reason, started)
        raise
    except RunFileExistsError:
        # Someone took the path between the check and the file's creation: nothing was
        # written; the procedure got no further than its Start record.
        with contextlib.suppress(Exception):
            _close(records)
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
