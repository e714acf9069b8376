"""The ``chipctl`` command line: one module per command group, a common part they share.

``build_parser`` collects the groups' commands, then generates one subcommand per catalogued
procedure (:mod:`chipctl.cli.procedures`) whose name is still free.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from chipctl import __version__
from chipctl.errors import ChipctlError
from drivers.errors import DriverError

log = logging.getLogger("chipctl")


def build_parser() -> argparse.ArgumentParser:
    """The ``chipctl`` argument parser with every subcommand (procedures included)."""
    # The groups are imported here, not at the top: `python -m chipctl.cli.tui` then runs the
    # tui module once, as __main__, without the package having imported it first.
    from chipctl.cli.analysis import add_analysis_commands
    from chipctl.cli.board import add_board_commands
    from chipctl.cli.calibration import add_calibration_commands
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
    taken |= add_tui_commands(commands)
    taken |= add_analysis_commands(commands)
    taken |= add_sweep_commands(commands)
    add_procedure_commands(commands, taken)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``chipctl`` with ``argv`` (default: the process arguments); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args))
    except DriverError as exc:
        print(f"chipctl {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except ChipctlError as exc:
        code = 2 if isinstance(exc, ValueError) and not isinstance(exc, OSError) else 1
        print(f"chipctl {args.command}: {exc}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
