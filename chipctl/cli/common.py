"""What every ``chipctl`` command group shares: board and run options, one option per declared
procedure parameter, running a procedure into a run file, and how a run's end is reported."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chipctl import DEFAULT_BOARD_URL, catalog
from procedures.base import Parameter, Procedure, parse_duration

if TYPE_CHECKING:
    from chipctl.runner import RunSummary, Subscriber

EXIT_CODES = {"success": 0, "failed": 1, "aborted": 130}
"""Process exit code per final run status."""

RUNNER_OPTIONS = (
    "--board",
    "--timeout",
    "--out",
    "--overwrite",
    "--overwrite-cores",
    "--no-progress",
    "--flush-interval",
)
"""Options of every generated procedure command that a parameter may not take over."""


def positive_seconds(text: str) -> float:
    """argparse type: a finite duration > 0 in s (NaN, inf, 0 and negatives refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number of seconds > 0")
    return value


def duration(text: str) -> float:
    """argparse type: a duration like 25s, 90min, 1h, 1d, 2w or seconds (:func:`parse_duration`)."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_board_option(parser: argparse.ArgumentParser) -> None:
    """``--board URL`` and ``--timeout S``."""
    parser.add_argument(
        "--board",
        default=DEFAULT_BOARD_URL,
        metavar="URL",
        help=(
            "board URL: mockchip://?seed=N (built-in simulated chip), socket://HOST:PORT "
            f"(simulator server or networked board), /dev/ttyUSB0 (default: {DEFAULT_BOARD_URL})"
        ),
    )
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        default=5.0,
        metavar="S",
        help="reply timeout per attempt in s",
    )


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """``--no-progress`` and ``--flush-interval S``."""
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (also off when not a TTY)"
    )
    parser.add_argument(
        "--flush-interval",
        type=positive_seconds,
        default=1.0,
        metavar="S",
        help="longest time in s that measured rows stay unflushed in the run file (default 1)",
    )


def add_calibration_dir_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--calibration-dir DIR``."""
    parser.add_argument("--calibration-dir", type=Path, default=None, metavar="DIR", help=help_text)


def add_overwrite_option(parser: argparse.ArgumentParser, what: str = "--out") -> None:
    """``--overwrite``: a run may replace an existing run file (or other regular file)."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help=(
            f"replace an existing file at {what} (never a run file another process is still "
            "writing, nor a directory, device or other non-regular file); without it an "
            "existing file is refused before anything reaches the board"
        ),
    )


def default_out(procedure: str) -> Path:
    """``runs/<procedure>-YYYYmmdd-HHMMSS.mmm-xxxxxx.h5``: unique even for commands started in
    the same second (:func:`chipctl.runfile.new_run_path`)."""
    from chipctl.runfile import new_run_path

    return new_run_path("runs", procedure)


def out_path(args: argparse.Namespace, procedure: str) -> Path:
    """``--out`` (default :func:`default_out`), checked: :class:`RunFileExistsError` (exit 2)
    if it exists and ``--overwrite`` does not allow replacing it. Call it before a board or
    station is opened."""
    from chipctl.runfile import check_out

    out = Path(args.out) if getattr(args, "out", None) else default_out(procedure)
    check_out(out, overwrite=getattr(args, "overwrite", False))
    return out


def parameter_help(parameter: Parameter) -> str:
    """The ``--help`` text of a parameter: description, kind, units, default, limits."""
    parts = [parameter.description or parameter.name.replace("_", " ")]
    if parameter.kind == "array":
        parts.append("path of a .npy file")
    elif parameter.kind == "cores":
        parts.append("core ids like 0-3,8")
    elif parameter.kind == "duration":
        parts.append("a duration like 25s, 90min, 1h, 1d, 2w or seconds")
    if parameter.units:
        parts.append(f"units: {parameter.units}")
    if parameter.kind != "array":
        default = parameter.default
        if parameter.kind == "cores" and isinstance(default, list):
            default = ",".join(str(c) for c in default)
        parts.append(f"default: {default}")
    if parameter.minimum is not None or parameter.maximum is not None:
        low = "-inf" if parameter.minimum is None else f"{parameter.minimum:g}"
        high = "inf" if parameter.maximum is None else f"{parameter.maximum:g}"
        parts.append(f"limits: {low} to {high}")
    if parameter.choices is not None:
        parts.append(f"one of: {', '.join(str(c) for c in parameter.choices)}")
    return "; ".join(parts).replace("%", "%%")


METAVARS = {int: "N", float: "X", str: "TEXT", "cores": "CORES", "duration": "DURATION"}


def add_parameter_options(
    parser: argparse.ArgumentParser,
    cls: type[Procedure],
    *,
    option_names: dict[str, str] | None = None,
) -> None:
    """One option per declared parameter of ``cls`` (``--name-with-dashes``), stored raw as
    ``param_<name>`` (None when not given); values are checked when the procedure is built.
    ``option_names`` gives some parameters a different option name."""
    group = parser.add_argument_group("procedure parameters")
    for parameter in cls.parameters:
        option = (option_names or {}).get(parameter.name) or "--" + parameter.name.replace("_", "-")
        if option in RUNNER_OPTIONS:
            continue  # a parameter never hides a runner option
        kwargs: dict[str, Any] = {
            "dest": f"param_{parameter.name}",
            "default": None,
            "help": parameter_help(parameter),
        }
        if parameter.kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif parameter.kind == "array":
            kwargs["metavar"] = "FILE.npy"
        else:
            kwargs["metavar"] = METAVARS.get(parameter.kind, "VALUE")
        group.add_argument(option, **kwargs)


def raw_parameters(args: argparse.Namespace, cls: type[Procedure]) -> dict[str, Any]:
    """The parameter values given on the command line (``param_<name>`` not None)."""
    values = {}
    for parameter in cls.parameters:
        value = getattr(args, f"param_{parameter.name}", None)
        if value is not None:
            values[parameter.name] = value
    return values


def add_overwrite_cores_option(parser: argparse.ArgumentParser) -> None:
    """``--overwrite-cores``: a run may overwrite cores the chip ledger says hold something."""
    parser.add_argument(
        "--overwrite-cores",
        action="store_true",
        help=(
            "overwrite cores that the chip ledger says hold programmed weights (and the chip "
            "still shows them); without it such a run is refused before anything reaches "
            "the board (see `chipctl chip status`)"
        ),
    )


def run_context(args: argparse.Namespace) -> catalog.RunContext:
    """The run-context options given on the command line (``--overwrite-cores`` off unless
    given: the chip-ledger guard is on)."""
    return catalog.RunContext(
        calibration_dir=getattr(args, "calibration_dir", None),
        overwrite_cores=bool(getattr(args, "overwrite_cores", False)),
    )


def run_into(
    procedure: Procedure,
    board: Any,
    out: Path,
    args: argparse.Namespace,
    subscribers: Sequence[Subscriber] = (),
) -> RunSummary:
    """Run ``procedure`` into ``out`` with the runner options of ``args`` and its catalog
    post-run steps (their messages in the summary's ``notes``)."""
    from chipctl.runner import run_procedure

    return run_procedure(
        procedure,
        board,
        out,
        progress=not getattr(args, "no_progress", False),
        flush_interval_s=getattr(args, "flush_interval", 1.0),
        subscribers=subscribers,
        context=run_context(args),
        overwrite=getattr(args, "overwrite", False),
    )


def run_on_board(
    args: argparse.Namespace, procedure: Procedure, subscribers: Sequence[Subscriber] = ()
) -> RunSummary:
    """Run ``procedure`` on ``--board`` into ``--out`` (default runs/<name>-TIME.h5); an
    existing ``--out`` is refused (see :func:`out_path`) before the board is opened."""
    from drivers.board import Board

    out = out_path(args, procedure.name)
    with Board(args.board, timeout_s=args.timeout) as board:
        return run_into(procedure, board, out, args, subscribers)


def report(prog: str, summary: RunSummary, procedure: Procedure | None = None) -> int:
    """Print what the post-run steps did, how the run ended and the procedure's own summary
    of its results; the exit code."""
    for note in summary.notes:
        print(note)
    text = f"{prog}: {summary.status}"
    if summary.reason:
        text += f" ({summary.reason})"
    print(f"{text}; run file: {summary.path}")
    if procedure is not None and summary.results:
        described = procedure.summary_text(summary.results)
        if described:
            print(described)
    return EXIT_CODES.get(summary.status, 1)
