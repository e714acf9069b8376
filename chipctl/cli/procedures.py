"""One ``chipctl`` subcommand per catalogued procedure, with an option per declared parameter.

``chipctl program --weights w.npy --cores 0-3`` builds the procedure through the catalog,
runs it on ``--board`` into ``--out`` with its post-run steps (``calibrate`` stores its set),
and prints the procedure's own summary. Entries with ``needs_station`` get ``--station FILE``
(default: the simulated station around ``--board``); every other command takes
``--station FILE`` too, to run behind a real bench's limits and programming interlock.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from chipctl import catalog
from chipctl.cli import common
from drivers.errors import LimitError

log = logging.getLogger(__name__)

OPTION_HELP = {
    "calibration_dir": (
        "where the calibration set is stored (default: $CHIPCTL_CALIBRATION_DIR or the "
        "checkout's calibration_data/)"
    ),
}
"""``--help`` of the run-context options an entry may declare."""


def add_procedure_command(commands: Any, item: catalog.Entry, taken: set[str]) -> None:
    """The generated subcommand of catalog entry ``item`` (skipped, with a debug log line, if
    its name is taken by a built-in command or its module does not load)."""
    name = item.command_name
    if name is None:
        return
    if name in taken:
        log.debug("procedure %s: name taken by a built-in command; no subcommand", name)
        return
    try:
        cls = item.cls
    except catalog.CatalogError as exc:  # a broken procedure module must not break the CLI
        log.debug("procedure %s not available on the command line: %s", name, exc)
        return
    parser = commands.add_parser(
        name,
        help=f"run the {cls.title or name} procedure into a run file",
        description=(cls.__doc__ or cls.title or name).strip().splitlines()[0],
    )
    common.add_board_option(parser)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="RUN.h5",
        help=f"run file (default: runs/{item.name}-YYYYmmdd-HHMMSS.mmm-xxxxxx.h5)",
    )
    common.add_overwrite_option(parser)
    if item.may_overwrite:
        common.add_overwrite_cores_option(parser)
    common.add_run_options(parser)
    parser.add_argument(
        "--station",
        default=None,
        metavar="FILE",
        help=(
            "run on the bench station of this file (TOML; its board replaces --board), with "
            "its safety limits and programming interlock; "
            + (
                "default: the simulated station around --board"
                if item.needs_station
                else "default: the board alone (simulated boards only; programming a hardware "
                "board needs a station)"
            )
        ),
    )
    for option in item.options:
        parser.add_argument(
            "--" + option.replace("_", "-"),
            type=Path,
            default=None,
            metavar="DIR",
            help=OPTION_HELP.get(option, option),
        )
    common.add_parameter_options(parser, cls)
    parser.set_defaults(handler=_cmd_procedure, procedure=item.name)


def add_procedure_commands(commands: Any, taken: set[str]) -> set[str]:
    """A subcommand for every catalogued procedure whose name is free; the names added."""
    added: set[str] = set()
    for item in catalog.entries():
        name = item.command_name
        if name is not None and name not in taken:
            add_procedure_command(commands, item, taken | added)
            added.add(name)
    return added


def _cmd_procedure(args: argparse.Namespace) -> int:
    item = catalog.entry(args.procedure)
    prog = f"chipctl {args.command}"
    # Every value is checked before a board or station is opened.
    try:
        parameters = catalog.convert(item.cls, common.raw_parameters(args, item.cls))
    except (LimitError, catalog.CatalogError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    args.out = common.out_path(args, item.name)  # an existing --out is refused here
    if item.needs_station or args.station is not None:
        return _run_on_station(args, item, parameters, prog)
    procedure = catalog.build(item.name, parameters)
    summary = common.run_on_board(args, procedure)
    return common.report(prog, summary, procedure)


def _run_on_station(
    args: argparse.Namespace, item: catalog.Entry, parameters: dict[str, Any], prog: str
) -> int:
    """Open the station (``--station FILE``, else the simulated one around ``--board``) and
    run on its board, behind its interlock."""
    from chipctl.station import StationFileError, default_station, load_station

    try:
        station = (
            default_station(board_url=args.board)
            if args.station is None
            else load_station(args.station)
        )
    except StationFileError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    with station.open(board_timeout_s=args.timeout) as opened:
        procedure = catalog.build(item.name, parameters, station=opened)
        summary = common.run_into(procedure, opened.board, args.out, args)
    return common.report(prog, summary, procedure)
