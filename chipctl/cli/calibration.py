"""``chipctl calibration list|show|load``: the stored calibration sets.

(``chipctl calibrate`` is the generated command of the calibrate procedure; its catalog entry
stores the set it fits.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from chipctl.calibration import CalibrationError, CalibrationStore, apply_set
from chipctl.cli import common


def _store(args: argparse.Namespace) -> CalibrationStore:
    return CalibrationStore(args.calibration_dir)


def _cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    store = _store(args)
    table = Table(title=f"Calibration sets in {store.root}")
    for column in ("id", "chip", "created", "mode", "cores", "spread before → after"):
        table.add_column(column)
    for path, meta in store.list(args.chip):
        if isinstance(meta, str):
            table.add_row(path.name, "", "", "", "", f"[red]unreadable[/]: {meta}")
            continue
        res = meta.get("results", {})
        cores = meta.get("cores", [])
        table.add_row(
            meta["id"],
            meta["chip_id"],
            meta["created"],
            str(meta["mode"]),
            f"{len(cores)} ({cores[0]}–{cores[-1]})" if cores else "-",
            f"{res.get('gain_spread_before', float('nan')):.2%} → "
            f"{res.get('gain_spread_after', float('nan')):.2%}",
        )
    Console(width=140).print(table)
    return 0


def _find(store: CalibrationStore, ref: str, chip: str | None) -> Any:
    path = Path(ref)
    if path.suffix == ".npz" and path.exists():
        return CalibrationStore.read(path, chip_id=chip)
    for found, meta in store.list(chip):
        if found.stem == ref:
            if isinstance(meta, str):
                raise CalibrationError(meta)
            return CalibrationStore.read(found)
    raise CalibrationError(f"no calibration set {ref!r} in {store.root}")


def _cmd_show(args: argparse.Namespace) -> int:
    import json

    calibration = _find(_store(args), args.set, args.chip)
    print(f"{calibration.path}")
    print(json.dumps(calibration.metadata, indent=1, sort_keys=True))
    for name, array in sorted(calibration.arrays.items()):
        values = array.astype(float)
        print(f"{name:14s} {array.shape} {array.dtype} min {values.min():.5g} "
              f"mean {values.mean():.5g} max {values.max():.5g}")  # fmt: skip
    return 0


def _cmd_load(args: argparse.Namespace) -> int:
    from drivers.board import Board

    store = _store(args)
    with Board(args.board, timeout_s=args.timeout) as board:
        chip = board.identity.chip_id
        calibration = _find(store, args.set, chip) if args.set else store.latest(chip)
        if calibration is None:
            raise CalibrationError(f"no calibration set for chip {chip} in {store.root}")
        cores = None
        if args.cores:
            from procedures.base import parse_cores

            cores = parse_cores(args.cores)
        loaded = apply_set(board, calibration, cores)
    print(f"loaded calibration set {calibration.id} onto {len(loaded)} core(s) of {chip}")
    return 0


def _calibration_main(args: argparse.Namespace) -> int:
    try:
        return int(args.calibration_handler(args))
    except CalibrationError as exc:
        print(f"chipctl calibration: {exc}", file=sys.stderr)
        return 1


def add_calibration_commands(subparsers: Any) -> set[str]:
    """Add ``calibration``; returns its name."""
    calibration = subparsers.add_parser("calibration", help="list, show and load calibration sets")
    sub = calibration.add_subparsers(dest="calibration_command", required=True, metavar="ACTION")
    for name, help_text, handler in (
        ("list", "list the stored calibration sets", _cmd_list),
        ("show", "metadata and arrays of one set", _cmd_show),
        ("load", "load a set onto the board's LDPUs (default: the chip's newest)", _cmd_load),
    ):
        parser = sub.add_parser(name, help=help_text)
        parser.add_argument(
            "--calibration-dir", type=Path, default=None, metavar="DIR",
            help="store (default: $CHIPCTL_CALIBRATION_DIR or the checkout's calibration_data/)",
        )  # fmt: skip
        parser.add_argument("--chip", default=None, help="only this chip id")
        if name == "show":
            parser.add_argument("set", metavar="SET", help="set id or .npz path")
        if name == "load":
            parser.add_argument("set", nargs="?", default=None, metavar="SET")
            parser.add_argument("--cores", default=None, metavar="CORES", help="e.g. 0-3,8")
            common.add_board_option(parser)
        parser.set_defaults(handler=_calibration_main, calibration_handler=handler)

    return {"calibration"}
