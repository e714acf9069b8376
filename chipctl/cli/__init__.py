"""The ``chipctl`` command line: one module per command group, a common part they share.

``build_parser`` collects the groups' commands, then generates one subcommand per catalogued
procedure (:mod:`chipctl.cli.procedures`) whose name is still free.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from chipctl import __version__
from chipctl.errors import ChipctlError
from drivers.errors import DriverError, LimitError

log = logging.getLogger("chipctl")


def build_parser() -> argparse.ArgumentParser:
    """The ``chipctl`` argument parser with every subcommand (procedures included)."""
    # The groups are imported here, not at the top: `python -m chipctl.cli.tui` then runs the
    # tui module once, as __main__, without the package having imported it first.
    from chipctl.cli.analysis import add_analysis_commands
    from chipctl.cli.board import add_board_commands
    from chipctl.cli.calibration import add_calibration_commands
    from chipctl.cli.chip import add_chip_commands
    from chipctl.cli.procedures import add_procedure_commands
    from chipctl.cli.runs import add_run_commands
    from chipctl.cli.station import add_station_commands
    from chipctl.cli.sweep import add_sweep_commands
    from chipctl.cli.tui import add_tui_commands

    parser = argparse.ArgumentParser(
        prog="chipctl",
        description="Control stack for the 64-core PCM in-memory-computing test chip.",
    )
    parser.add_argument("--version", action="version", version=f"chipctl {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    taken = add_board_commands(commands)
    taken |= add_station_commands(commands)
    taken |= add_run_commands(commands)
    taken |= add_calibration_commands(commands)
    taken |= add_chip_commands(commands)
    taken |= add_tui_commands(commands)
    taken |= add_analysis_commands(commands)
    taken |= add_sweep_commands(commands)
    add_procedure_commands(commands, taken)
    return parser


EXIT_BAD_INPUT = 2
"""Exit code of a command refused for bad input (a value, file or URL the user gave)."""
EXIT_FAILED = 1
"""Exit code of a link, board, file or run failure, and of an internal error."""
EXIT_INTERRUPTED = 130

OUR_PACKAGES = ("chipctl", "drivers", "procedures")
"""Top-level packages whose builtin exceptions (``ValueError``, ``OSError``, ...) are reported
as errors, not as bugs (:func:`report_error`)."""

LOG_DIR_ENV = "CHIPCTL_LOG_DIR"
"""Environment variable naming the folder for tracebacks of internal errors."""

_BAD_INPUT_BUILTINS: tuple[type[Exception], ...] = (ValueError, LookupError)
_FAILURE_BUILTINS: tuple[type[Exception], ...] = (OSError, RuntimeError, ImportError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``chipctl`` with ``argv`` (default: the process arguments); returns the exit code.

    Every error is one line on stderr (``chipctl COMMAND: ...``) and an exit code, never a
    traceback (see :func:`report_error`).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 (every error becomes one line and an exit code)
        return report_error(f"chipctl {args.command}", exc)


def report_error(prefix: str, exc: Exception) -> int:
    """Print ``exc`` as one line on stderr after ``prefix``; returns the exit code.

    * :class:`~drivers.errors.DriverError`: ``<prefix>: <type>: <message>``; exit 2 for a
      :class:`~drivers.errors.LimitError` (refused on the host: bad input), else 1 (link,
      board).
    * :class:`~chipctl.errors.ChipctlError`: ``<prefix>: <message>``; exit 2 if it is a
      ``ValueError`` (bad input) and not an ``OSError``, else 1 (files, runs).
    * a builtin ``ValueError``/``LookupError`` (exit 2) or ``OSError``/``RuntimeError``/
      ``ImportError`` (exit 1) raised in chipctl, procedures or drivers, and any ``OSError``
      carrying an errno (a file the system refused): ``<prefix>: <type>: <message>``.
    * anything else is a bug: one line naming it and the log file its full traceback was
      written to (:func:`write_traceback`), exit 1.
    """
    if isinstance(exc, DriverError):
        code = EXIT_BAD_INPUT if isinstance(exc, LimitError) else EXIT_FAILED
        print(f"{prefix}: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        return code
    if isinstance(exc, ChipctlError):
        bad_input = isinstance(exc, ValueError) and not isinstance(exc, OSError)
        print(f"{prefix}: {_one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT if bad_input else EXIT_FAILED
    ours = _raised_by(exc, OUR_PACKAGES)
    system = isinstance(exc, OSError) and exc.errno is not None
    if (ours and isinstance(exc, _BAD_INPUT_BUILTINS + _FAILURE_BUILTINS)) or system:
        print(f"{prefix}: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT if isinstance(exc, _BAD_INPUT_BUILTINS) else EXIT_FAILED
    where = write_traceback(exc)
    told = f"full traceback in {where}" if where else "no log file could be written"
    print(
        f"{prefix}: internal error (a bug): {type(exc).__name__}: {_one_line(exc)} ({told})",
        file=sys.stderr,
    )
    return EXIT_FAILED


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        text = exc.args[0]  # not repr()'d in quotes
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__


def _raised_by(exc: BaseException, packages: Sequence[str]) -> bool:
    """True if the innermost frame of ``exc``'s traceback is in one of ``packages``."""
    frame = None
    tb = exc.__traceback__
    while tb is not None:
        frame, tb = tb.tb_frame, tb.tb_next
    if frame is None:
        return False
    module = str(frame.f_globals.get("__name__", ""))
    return module.split(".", 1)[0] in packages


def log_dir() -> Path:
    """The folder for internal-error tracebacks: ``$CHIPCTL_LOG_DIR``, else the user's cache
    folder (``$XDG_CACHE_HOME/chipctl``, ``~/.cache/chipctl``; ``%LOCALAPPDATA%\\chipctl``)."""
    chosen = os.environ.get(LOG_DIR_ENV)
    if chosen:
        return Path(chosen)
    cache = os.environ.get("XDG_CACHE_HOME") or os.environ.get("LOCALAPPDATA")
    return (Path(cache) if cache else Path.home() / ".cache") / "chipctl"


def write_traceback(exc: BaseException) -> Path | None:
    """Write ``exc``'s full traceback to ``chipctl-error-<time>.log`` in :func:`log_dir` (or
    the temporary folder if that cannot be written); the file, or None if none could be."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    text = f"chipctl {__version__}, {datetime.now().isoformat()}\nargv: {sys.argv!r}\n\n" + "".join(
        traceback.format_exception(exc)
    )
    for folder in (log_dir(), Path(tempfile.gettempdir())):
        path = folder / f"chipctl-error-{stamp}.log"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError:
            continue
        log.debug("traceback of %s written to %s", type(exc).__name__, path)
        return path
    return None
