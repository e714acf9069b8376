"""``chipctl tui [--station FILE] [--data-dir DIR]``: the terminal UI for bench operators.

Wired into :mod:`chipctl.cli` by :func:`add_tui_commands`; ``python -m chipctl.cli.tui`` runs it
directly. Without ``--station`` the fully simulated station is used.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chipctl.station import StationFileError, default_station, load_station


def _cmd_tui(args: argparse.Namespace) -> int:
    from chipctl.tui.app import ChipctlApp

    try:
        station = default_station() if args.station is None else load_station(args.station)
    except StationFileError as exc:
        print(f"chipctl tui: {exc}", file=sys.stderr)
        return 2
    # Log records would be drawn over the screen: keep only errors, on a file if asked.
    logging.getLogger().handlers.clear()
    if args.log_file:
        logging.basicConfig(filename=args.log_file, level=logging.INFO)
    else:
        logging.getLogger().addHandler(logging.NullHandler())
    ChipctlApp(station=station, data_dir=args.data_dir).run()
    return 0


def add_tui_commands(subparsers: Any) -> set[str]:
    """Add ``tui`` to chipctl's subparsers; returns the command names added."""
    tui = subparsers.add_parser("tui", help="terminal UI for bench operators")
    tui.add_argument(
        "--station",
        default=None,
        metavar="FILE",
        help="station file (TOML); default: the fully simulated station",
    )
    tui.add_argument(
        "--data-dir",
        type=Path,
        default=Path("runs"),
        metavar="DIR",
        help="folder of the run files, read and written (default: runs)",
    )
    tui.add_argument(
        "--log-file", default=None, metavar="FILE", help="write the log to FILE (default: none)"
    )
    tui.set_defaults(handler=_cmd_tui)
    return {"tui"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``chipctl tui`` on its own (``python -m chipctl.cli.tui``)."""
    parser = argparse.ArgumentParser(prog="chipctl")
    commands = parser.add_subparsers(dest="command")
    add_tui_commands(commands)
    args = parser.parse_args(["tui", *(sys.argv[1:] if argv is None else argv)])
    return int(args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
